"""`hwnas deploy check`: predicted vs measured on a deployment, refusals, tampering, exit status.

The profile is written by the test itself: one row per part of the tiny
network with made-up batch times and an affine calibration, so the
prediction is computed here independently. The measurement is real
(ONNX Runtime on this CPU); no assertion depends on how fast it is.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pandas as pd
import pytest

from hwnas.cli.main import main
from hwnas.latency.device import cpu_info, library_versions
from hwnas.latency.profile import PART_COLUMNS, Profile
from hwnas.models.spaces.base import get_space
from hwnas.latency.kernels import kernels_for

TINY = ("SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,2,8,1)SuperResK1K3K1(16,32,2,8,1)"
        "SuperConvK1BNRELU(32,64,1,1)")


def _profile(path, *, batch=1, precision="fp32", backend="onnxruntime", device=None, space="cifar32",
             settings=None):
    sp = get_space(space)
    parts = kernels_for(sp).parts(sp.parse(TINY))
    unique = list(dict.fromkeys(parts))  # a kernel may occur twice in the network: one row, counted twice
    value = {part: 0.05 * (i + 1) * batch for i, part in enumerate(unique)}
    rows = []
    for part in unique:
        ms = value[part]
        rows.append({**dataclasses.asdict(part), "median_ms": ms, "p10_ms": ms * 0.9, "p90_ms": ms * 1.1,
                     "repeats": 5, "raw_median_ms": ms})
    table = pd.DataFrame(rows)
    meta = {"name": path.name, "space": space, "backend": backend,
            "settings": settings or {"device": "cpu", "threads": 1, "batch": batch, "precision": precision},
            "device": device or cpu_info(), "versions": library_versions(), "date": "2026-01-01",
            "grid": "test", "calibration": {"form": "affine", "coef": [2.0, 0.5], "predictor_version": 2},
            "resolution": sp.resolution}
    Profile(table=table[PART_COLUMNS + ["median_ms", "p10_ms", "p90_ms", "repeats", "raw_median_ms"]],
            metadata=meta).save(path)
    # The affine calibration by hand: batch ms = 2 * (sum of part batch ms) + 0.5.
    return (2.0 * sum(value[p] for p in parts) + 0.5) / batch


def _run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    run = root / "run"
    run.mkdir()
    profile = root / "prof"
    predicted = _profile(profile)
    (run / "best.txt").write_text(TINY + "\n")
    (run / "config.json").write_text(json.dumps({"space": "cifar32", "profile": str(profile)}))
    with pytest.raises(SystemExit) as exc:
        main(["deploy", str(run), "--batch", "1", "--out", str(root / "out")])
    assert exc.value.code == 0
    return {"root": root, "out": root / "out", "profile": profile, "predicted": predicted}


def test_check_reports_predicted_measured_and_exit_status(deployed, capsys):
    args = ["deploy", "check", str(deployed["out"]), "--profile", str(deployed["profile"]), "--repeats", "3",
            "--json"]
    code, out, _ = _run(args + ["--tolerance", "1e6"], capsys)
    result = json.loads(out)
    assert code == 0 and result["within_tolerance"] is True
    assert result["predicted_ms"] == pytest.approx(deployed["predicted"], rel=1e-9)
    assert result["measured_ms"] > 0
    assert result["rel_error"] == pytest.approx(result["measured_ms"] / result["predicted_ms"] - 1, rel=1e-12)
    assert result["measured_ms"] == pytest.approx(result["measured_batch_ms"]["p10_ms"] / result["batch"])
    code, out, _ = _run(args + ["--tolerance", "1e-12"], capsys)
    assert code == 1 and json.loads(out)["within_tolerance"] is False


def test_check_defaults_to_the_search_runs_profile_and_prints_a_table(deployed, capsys):
    code, out, _ = _run(["deploy", "check", str(deployed["out"]), "--repeats", "3", "--tolerance", "1e6"], capsys)
    assert code == 0
    assert "predicted_ms" in out and "measured_ms" in out and "rel_error" in out


@pytest.mark.parametrize("change, expected", [
    ({"batch": 2}, "static batch 1"),
    ({"precision": "fp16"}, "the profile is fp16"),
    ({"backend": "torch"}, "measured with torch"),
    ({"device": {"kind": "cpu", "name": "Some Other CPU"}}, "Some Other CPU"),
])
def test_check_refuses_a_profile_with_other_settings(deployed, change, expected, tmp_path, capsys):
    profile = tmp_path / "other"
    _profile(profile, **change)
    code, _, err = _run(["deploy", "check", str(deployed["out"]), "--profile", str(profile)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "cannot be checked" in err and expected in err


def test_check_refuses_a_changed_artifact(deployed, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(deployed["out"], out)
    data = bytearray((out / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (out / "model.onnx").write_bytes(bytes(data))
    code, _, err = _run(["deploy", "check", str(out), "--profile", str(deployed["profile"])], capsys)
    assert code == 2 and "changed since it was deployed" in err
    (out / "model.onnx").unlink()
    code, _, err = _run(["deploy", "check", str(out), "--profile", str(deployed["profile"])], capsys)
    assert code == 2 and "missing" in err
    code, _, err = _run(["deploy", "check", str(tmp_path), "--profile", str(deployed["profile"])], capsys)
    assert code == 2 and "deploy.json" in err


def _tensorrt_missing() -> str | None:
    import importlib.util

    import torch

    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed"
    return None if torch.cuda.is_available() else "no CUDA GPU"


@pytest.mark.gpu
@pytest.mark.skipif(_tensorrt_missing() is not None, reason=f"needs TensorRT and an NVIDIA GPU: {_tensorrt_missing()}")
def test_check_times_a_tensorrt_engine_like_every_network(tmp_path, capsys):
    import torch

    settings = {"device": "cuda", "precision": "fp16", "batch": 8}
    profile = tmp_path / "trt"
    predicted = _profile(profile, batch=8, precision="fp16", backend="tensorrt", settings=settings,
                         device={"kind": "gpu", "name": torch.cuda.get_device_name()})
    out = tmp_path / "engine"
    code, _, _ = _run(["deploy", TINY, "--space", "cifar32", "--format", "tensorrt", "--precision", "fp16",
                       "--batch", "8", "--dynamic-batch", "--timing-cache", str(tmp_path / "cache"), "--out",
                       str(out)], capsys)
    assert code == 0
    code, stdout, _ = _run(["deploy", "check", str(out), "--profile", str(profile), "--repeats", "5",
                            "--tolerance", "1e6", "--json"], capsys)
    result = json.loads(stdout)
    assert code == 0 and result["runtime"].startswith("tensorrt ")
    assert result["predicted_ms"] == pytest.approx(predicted, rel=1e-9)
    assert result["measured_ms"] == pytest.approx(result["measured_batch_ms"]["p10_ms"] / 8)
    assert result["measured_batch_ms"]["repeats"] >= 5
