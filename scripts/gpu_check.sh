#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, in about 10 minutes, run the GPU tests, build a torch-CUDA FP16
# batch-64 profile of that GPU (cifar32 space, coarse grid, 40 calibration networks), validate it on 30 fresh
# networks, export one network through torch -> ONNX -> TensorRT (where importable) and check its latency, and write
# one JSON report. Without a GPU it says so in one line and exits 2.
#
# Usage: scripts/gpu_check.sh [OUT]      (OUT defaults to runs/gpu-check; run from the repository root after
#                                          `make setup`, and `.venv/bin/pip install '.[tensorrt]'` for TensorRT)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu-check}
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no NVIDIA GPU visible to torch (torch.cuda.is_available() is False): run it on a GPU machine" >&2
  exit 2
fi
mkdir -p "$OUT"
GPU=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0))")
HAS_TRT=$("$PY" -c "import importlib.util as u; print(int(u.find_spec('tensorrt') is not None))")
step() {  # step NAME SECONDS COMMAND... : run with a time limit, keep its output and exit status
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
  echo "$? $(( $(date +%s) - t0 ))" > "$OUT/$name.rc"
}
step tests 150 "$PY" -m pytest -q -rs tests/test_latency_gpu.py tests/test_deploy_check.py tests/test_deploy_export.py
step profile 360 "$BIN/profile-device" --gpu "$GPU" --backend torch --precision fp16 --batch 64 --space cifar32 \
  --grid coarse --networks 40 --out "$OUT/profile" --no-progress --json
step validate 120 "$BIN/hwnas" latency validate --profile "$OUT/profile" --samples 30 --seed 1 \
  --plot "$OUT/validate.png" --no-progress --json
NET=zennet_cifar10_model_size05M_res32
step deploy_onnx 60 "$BIN/hwnas" deploy "$NET" --format onnx --precision fp16 --batch 64 --out "$OUT/deploy-onnx"
if [ "$HAS_TRT" = 1 ]; then
  step deploy_trt 120 "$BIN/hwnas" deploy "$NET" --format tensorrt --precision fp16 --batch 64 --out "$OUT/deploy-trt"
fi
"$PY" - "$OUT" "$GPU" "$HAS_TRT" <<'EOF'
import json, sys
from pathlib import Path

out, gpu, has_trt = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
report = {"gpu": gpu, "tensorrt_importable": has_trt, "steps": {}}
for rc in sorted(out.glob("*.rc")):
    code, seconds = rc.read_text().split()
    text = (out / f"{rc.stem}.out").read_text()
    step = {"exit": int(code), "seconds": int(seconds), "stderr_tail": (out / f"{rc.stem}.err").read_text()[-800:]}
    try:
        step["result"] = json.loads(text)
    except json.JSONDecodeError:
        step["stdout_tail"] = text[-1500:]
    report["steps"][rc.stem] = step
(out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
print(json.dumps({k: {"exit": v["exit"], "seconds": v["seconds"]} for k, v in report["steps"].items()}))
EOF
