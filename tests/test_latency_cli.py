"""Error paths of the latency CLI and backends: one line, exit status 2."""

from types import SimpleNamespace

import pytest

from hwnas.errors import BackendUnavailable, HwnasError
from hwnas.latency.backends import get_backend, probe
from hwnas.latency.device import gpu_info


@pytest.fixture
def run(capsys):
    """Run a console entry point in-process: (exit status, stdout, stderr)."""

    def call(entry, *args):
        with pytest.raises(SystemExit) as exc:
            entry(list(args))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=exc.value.code, stdout=out.out, stderr=out.err)

    return call


def _run_main(run, *args):
    from hwnas.cli.main import main

    return run(main, *args)


def test_unknown_backend():
    with pytest.raises(HwnasError, match="unknown latency backend 'nope'"):
        get_backend("nope")


def test_fp16_on_cpu_is_refused_not_downgraded():
    assert "fp32" in probe("onnxruntime", device="cpu", precision="fp16")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_backends_unavailable_without_gpu():
    with pytest.raises(BackendUnavailable, match="no CUDA GPU"):
        get_backend("torch", device="cuda", precision="fp16")
    assert probe("tensorrt") is not None


@pytest.mark.skipif(any("V100" in g["name"] for g in gpu_info()), reason="a V100 is present")
def test_profile_device_gpu_v100_absent_exits_2_naming_what_was_found(run):
    from hwnas.cli.main import profile_device_main

    r = run(profile_device_main, "--gpu", "v100", "--space", "nb201")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "'v100' is not present; GPUs found:" in lines[0]
    found = [g["name"] for g in gpu_info()]
    for name in found or ["none"]:
        assert name in lines[0]


def test_unknown_profile_exits_2(run):
    r = _run_main(run, "latency", "predict", "SuperConvK3BNRELU(3,8,2,1)", "--profile", "no-such-profile")
    assert r.returncode == 2 and "no profile 'no-such-profile'" in r.stderr
    assert "Traceback" not in r.stderr


def test_zoo_network_of_another_resolution_is_refused_by_name(run):
    r = _run_main(run, "latency", "predict", "zennet_cifar10_model_size1M_res32")  # default profile: 224x224
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "32x32 network" in r.stderr and "imagenet224 at 224x224" in r.stderr


def test_published_refused_for_a_cpu_profile(tmp_path, run):
    from test_latency_profile import _profile

    _profile().save(tmp_path / "toy")
    r = _run_main(run, "latency", "validate", "--profile", str(tmp_path / "toy"), "--published")
    assert r.returncode == 2
    assert "not a V100" in r.stderr and "not fp16" in r.stderr and "not 64" in r.stderr


def test_help_has_examples(run):
    for args in (["latency", "predict", "--help"], ["latency", "validate", "--help"], ["profiles", "list", "--help"],
                 ["profile-device", "--help"], ["latency", "recalibrate", "--help"]):
        r = _run_main(run, *args)
        assert r.returncode == 0 and "Example" in r.stdout


def test_recalibrate_refits_in_place_and_refuses_to_remeasure_on_another_device(tmp_path, run):
    import json
    import shutil

    from hwnas.latency.calibration import CALIBRATION_FORMS
    from hwnas.latency.profile import Profile

    src = Profile.load("ort-cpu1-b1-cifar32")
    shutil.copytree(src.path, tmp_path / "p")
    r = _run_main(run, "latency", "recalibrate", "--profile", str(tmp_path / "p"), "--json", "--no-progress")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["form"] in CALIBRATION_FORMS and out["networks"] == len(src.calibration["networks"])
    refit = Profile.load(tmp_path / "p").calibration  # same table, networks and predictor: the same calibration
    assert refit["form"] == src.calibration["form"]
    assert refit["coef"] == pytest.approx(src.calibration["coef"], rel=1e-9)
    moved = Profile.load(tmp_path / "p")
    moved.metadata["device"] = {**moved.metadata["device"], "name": "Some Other CPU"}
    moved.save(tmp_path / "p")
    r = _run_main(run, "latency", "recalibrate", "--profile", str(tmp_path / "p"), "--remeasure")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "Some Other CPU" in r.stderr and "cannot be re-measured here" in r.stderr
    r = _run_main(run, "latency", "validate", "--profile", str(tmp_path / "p"), "--samples", "2")
    assert r.returncode == 2 and "Some Other CPU" in r.stderr and "cannot be measured here" in r.stderr
