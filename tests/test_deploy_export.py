"""`hwnas deploy` export: ONNX end to end on CPU, deploy.json, weights, bad input, atomicity.

References are independent of the deploy code: the network is rebuilt with
the builder, weights are loaded with torch, the ONNX file is run with a fresh
ONNX Runtime session at batch sizes the deploy step did not verify, and
hashes are recomputed with hashlib.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from hwnas.cli.main import main
from hwnas.errors import DeployError
from hwnas import deploy
from hwnas.deploy import artifact
from hwnas.models.builder import build
from hwnas.models.spaces.base import get_space

TINY = ("SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,2,8,1)SuperResK1K3K1(16,32,2,8,1)"
        "SuperConvK1BNRELU(32,64,1,1)")


def _tiny():
    space = get_space("cifar32")
    return space, space.parse(TINY)


def _trained_state(num_classes: int = 10, seed: int = 123) -> dict:
    """A state_dict with random weights and random BN statistics (unlike PyTorch's default init)."""
    g = torch.Generator().manual_seed(seed)
    net = build(TINY, num_classes=num_classes)
    state = net.state_dict()
    for key, value in state.items():
        if value.is_floating_point():
            fresh = torch.randn(value.shape, generator=g) * 0.3
            if key.endswith("running_var"):
                fresh = fresh.abs() + 0.5
            state[key] = fresh
    return state


def _reference(state: dict, x: np.ndarray, num_classes: int = 10) -> np.ndarray:
    net = build(TINY, num_classes=num_classes).eval()
    net.load_state_dict(state)
    with torch.no_grad():
        return net(torch.from_numpy(x.astype(np.float32))).numpy()


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def _one_line_error(code: int, err: str) -> str:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hwnas: error: ")
    return lines[0]


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def weighted(tmp_path_factory):
    """One fp32 dynamic-batch deployment of TINY with trained-looking weights, made through the CLI."""
    root = tmp_path_factory.mktemp("deploy")
    state = _trained_state()
    ckpt = root / "ckpt.pt"
    torch.save({"state_dict": state, "epoch": 7}, ckpt)
    out = root / "out"
    with pytest.raises(SystemExit) as exc:
        main(["deploy", TINY, "--space", "cifar32", "--format", "onnx", "--batch", "4", "--dynamic-batch",
              "--weights", str(ckpt), "--out", str(out)])
    assert exc.value.code == 0
    return {"root": root, "out": out, "ckpt": ckpt, "state": state}


def test_dynamic_batch_onnx_matches_torch_at_two_new_batch_sizes(weighted):
    path = weighted["out"] / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    rng = np.random.default_rng(5)
    for n in (3, 5):
        x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
        y = session.run(None, {"input": x})[0]
        ref = _reference(weighted["state"], x)
        assert y.shape == (n, 10)
        assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max()
    # The weights were used: PyTorch's default initialisation gives other logits.
    untrained = build(TINY, num_classes=10).eval()
    with torch.no_grad():
        other = untrained(torch.from_numpy(x)).numpy()
    assert np.abs(other - ref).max() > 1e-2 * np.abs(ref).max()


def test_manifest_records_shapes_versions_hashes_and_errors(weighted):
    out = weighted["out"]
    manifest = json.loads((out / "deploy.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["deploy.json", "model.onnx"]
    model = onnx.load(str(out / "model.onnx"))
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 17 and manifest["opset"] == opset
    assert manifest["format"] == "onnx" and manifest["precision"] == "fp32"
    assert manifest["batch"] == 4 and manifest["dynamic_batch"] is True
    assert manifest["input"] == {"name": "input", "shape": ["batch", 3, 32, 32], "dtype": "float32"}
    assert manifest["output"] == {"name": "logits", "shape": ["batch", 10], "dtype": "float32"}
    assert manifest["structure"] == TINY and manifest["space"] == "cifar32"
    assert manifest["num_classes"] == 10 and manifest["resolution"] == 32
    assert manifest["params"] == sum(p.numel() for p in build(TINY, num_classes=10).parameters())
    digest = hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    assert manifest["artifacts"]["model.onnx"] == {"sha256": digest, "bytes": (out / "model.onnx").stat().st_size}
    assert manifest["weights"]["sha256"] == hashlib.sha256(weighted["ckpt"].read_bytes()).hexdigest()
    assert manifest["versions"]["torch"] == importlib.metadata.version("torch")
    assert manifest["versions"]["onnxruntime"] == ort.__version__
    assert manifest["versions"]["onnx"] == onnx.__version__
    check = manifest["verification"]["onnx"]
    assert check["passed"] and check["batch_sizes"] == [1, 4]
    assert 0 <= check["max_rel_error"] <= check["tolerance"] == deploy.MAX_ERROR["fp32"]
    assert check["max_abs_error"] == pytest.approx(check["max_rel_error"] * check["reference_max_abs"], rel=1e-9)
    assert deploy.read_manifest(out) == manifest  # hashes re-check


def test_deployed_graph_is_the_profiling_exporters_graph(weighted, tmp_path):
    """deploy ships the graph the profiles' networks were timed as: the one the onnxruntime backend times."""
    from hwnas.latency.export import export_onnx

    net = build(TINY, num_classes=10).eval()
    net.load_state_dict(weighted["state"])
    export_onnx(net, (3, 32, 32), 4, tmp_path / "profiled.onnx", dynamic_batch=True, output_name="logits")
    deployed, profiled = onnx.load(str(weighted["out"] / "model.onnx")), onnx.load(str(tmp_path / "profiled.onnx"))
    assert [n.op_type for n in deployed.graph.node] == [n.op_type for n in profiled.graph.node]
    assert deployed.opset_import == profiled.opset_import
    weights = lambda m: [onnx.numpy_helper.to_array(t) for t in m.graph.initializer]  # noqa: E731
    assert all(np.array_equal(a, b) for a, b in zip(weights(deployed), weights(profiled), strict=True))


def test_run_dir_fp16_static_export(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.txt").write_text(TINY + "\n")
    (run / "config.json").write_text(json.dumps({"space": "cifar32", "profile": "some-profile",
                                                 "resolution": 32, "num_classes": 10}))
    out = tmp_path / "fp16"
    code, stdout, _ = _run(["deploy", "export", str(run), "--precision", "fp16", "--batch", "2", "--json",
                            "--out", str(out)], capsys)
    assert code == 0
    manifest = json.loads(stdout)
    assert manifest == json.loads((out / "deploy.json").read_text())
    assert manifest["source"]["kind"] == "run" and manifest["source"]["profile"] == "some-profile"
    assert manifest["structure"] == TINY and manifest["space"] == "cifar32"
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float16)" and session.get_inputs()[0].shape == [2, 3, 32, 32]
    assert manifest["input"]["dtype"] == "float16" and manifest["output"]["dtype"] == "float16"
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float16)
    y = session.run(None, {"input": x})[0]
    with torch.no_grad():
        torch.manual_seed(0)
        ref = build(TINY, num_classes=10).eval()(torch.from_numpy(x.astype(np.float32))).numpy()
    assert y.dtype == np.float16
    assert np.abs(y.astype(np.float32) - ref).max() <= 1e-2 * np.abs(ref).max()
    assert manifest["verification"]["onnx"]["tolerance"] == deploy.MAX_ERROR["fp16"]


def test_failed_verification_writes_nothing_and_keeps_an_earlier_deployment(weighted, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(weighted["out"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(DeployError, match="does not match PyTorch"):
        deploy.export(*_tiny(), out, batch=2, tolerance=1e-15)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path) == []
    fresh = tmp_path / "fresh"
    with pytest.raises(DeployError):
        deploy.export(*_tiny(), fresh, batch=2, tolerance=1e-15)
    assert not fresh.exists() and _leftovers(tmp_path) == []


def test_crash_after_a_partial_file_leaves_no_artifact(tmp_path, monkeypatch):
    def half_written(module, input_shape, batch, path, **kw):
        Path(path).write_bytes(b"\x08\x07partial")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(artifact, "export_onnx", half_written)
    with pytest.raises(RuntimeError):
        deploy.export(*_tiny(), tmp_path / "out", batch=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["missing", "corrupt", "classes", "keys", "resolution", "not-a-state-dict"])
def test_bad_weights_are_one_line_errors(kind, tmp_path, capsys):
    ckpt = tmp_path / "ckpt.pt"
    if kind == "corrupt":
        ckpt.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    elif kind == "classes":
        torch.save(_trained_state(num_classes=100), ckpt)
    elif kind == "keys":
        torch.save(build("SuperConvK3BNRELU(3,8,1,1)SuperConvK1BNRELU(8,64,1,1)", num_classes=10).state_dict(), ckpt)
    elif kind == "resolution":
        torch.save({"model": _trained_state(), "resolution": 64}, ckpt)
    elif kind == "not-a-state-dict":
        torch.save([1, 2, 3], ckpt)
    out = tmp_path / "out"
    code, _, err = _run(["deploy", TINY, "--space", "cifar32", "--batch", "1", "--weights", str(ckpt),
                         "--out", str(out)], capsys)
    line = _one_line_error(code, err)
    expected = {"missing": "does not exist", "corrupt": "cannot read weights", "classes": "--num-classes 100",
                "keys": "does not fit this structure", "resolution": "resolution=64",
                "not-a-state-dict": "holds no state_dict"}[kind]
    assert expected in line
    assert not out.exists() and _leftovers(tmp_path) == []


def test_unwritable_output_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(artifact.tempfile, "mkdtemp", refuse)
    code, _, err = _run(["deploy", TINY, "--space", "cifar32", "--batch", "1", "--out", str(tmp_path / "o")], capsys)
    assert "cannot write to" in _one_line_error(code, err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders, so permissions cannot refuse")
def test_read_only_parent_is_a_one_line_error(tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        code, _, err = _run(["deploy", TINY, "--space", "cifar32", "--batch", "1", "--out", str(parent / "o")],
                            capsys)
    finally:
        parent.chmod(0o700)
    assert "not writable" in _one_line_error(code, err)


def test_output_that_is_not_a_deployment_is_refused(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    code, _, err = _run(["deploy", TINY, "--space", "cifar32", "--out", str(other)], capsys)
    assert "not an earlier deployment" in _one_line_error(code, err)
    assert (other / "notes.txt").read_text() == "keep me"
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = _run(["deploy", TINY, "--space", "cifar32", "--out", str(afile)], capsys)
    assert "is a file" in _one_line_error(code, err)


def test_bad_structure_space_and_source(tmp_path, capsys):
    code, _, err = _run(["deploy", "SuperConvK3BNRELU(3,8,1", "--out", str(tmp_path / "o")], capsys)
    assert "invalid structure" in _one_line_error(code, err)
    code, _, err = _run(["deploy", TINY, "--space", "nope", "--out", str(tmp_path / "o")], capsys)
    assert "unknown space" in _one_line_error(code, err)
    code, _, err = _run(["deploy", "no_such_zoo_model", "--out", str(tmp_path / "o")], capsys)
    assert "no_such_zoo_model" in _one_line_error(code, err)
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    code, _, err = _run(["deploy", str(empty_run), "--out", str(tmp_path / "o")], capsys)
    assert "best.txt" in _one_line_error(code, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def _tensorrt_missing() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "tensorrt is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    return None


@pytest.mark.skipif(_tensorrt_missing() is None, reason="TensorRT and a GPU are present: nothing is missing")
def test_tensorrt_unavailable_is_a_one_line_error_naming_what_is_missing(tmp_path, capsys):
    code, _, err = _run(["deploy", TINY, "--space", "cifar32", "--format", "tensorrt", "--out", str(tmp_path / "o")],
                        capsys)
    line = _one_line_error(code, err)
    assert ("tensorrt is not installed" in line) or ("no CUDA GPU" in line)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.gpu
@pytest.mark.skipif(_tensorrt_missing() is not None, reason=f"TensorRT export needs TensorRT and an NVIDIA GPU: "
                                                            f"{_tensorrt_missing()}")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_is_built_verified_and_reuses_the_timing_cache(precision, tmp_path):
    cache = tmp_path / "timing.cache"
    first = deploy.export(*_tiny(), tmp_path / "a", fmt="tensorrt", precision=precision, batch=8,
                          dynamic_batch=True, timing_cache=cache)
    assert (tmp_path / "a" / "model.plan").is_file() and cache.is_file()
    assert first["tensorrt"]["profile"] == {"min": [1, 3, 32, 32], "opt": [8, 3, 32, 32], "max": [8, 3, 32, 32]}
    assert first["verification"]["tensorrt"]["passed"]
    second = deploy.export(*_tiny(), tmp_path / "b", fmt="tensorrt", precision=precision, batch=8,
                           timing_cache=cache)
    assert second["tensorrt"]["timing_cache_reused"] is True


def test_help_has_examples_and_both_spellings_route(capsys):
    for args in (["deploy", "--help"], ["deploy", "export", "--help"], ["deploy", "check", "--help"]):
        code, out, _ = _run(args, capsys)
        assert code == 0 and "Example:" in out
    # `hwnas deploy SOURCE` is `hwnas deploy export SOURCE`: same one-line error for the same bad input.
    short = _run(["deploy", "nope(", "--out", "x"], capsys)[2]
    long = _run(["deploy", "export", "nope(", "--out", "x"], capsys)[2]
    assert short == long and "invalid structure" in short
