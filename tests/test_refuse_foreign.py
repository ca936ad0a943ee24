"""Every command that measures on this machine refuses, in one line and before any work, a profile whose device is
not this machine; `search --measure auto` (the demo's path) searches anyway and says why it did not measure.

The foreign profile is a shipped one re-saved (so its hash is valid) with this machine's identity except one ISA
extension: the same CPU model string with another ISA is another device.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from hwnas.cli.main import main
from hwnas.latency.device import cpu_info, library_versions
from hwnas.latency.profile import Profile

SHIPPED = "ort-cpu1-b1-cifar32"
FLAG = "avx512f"  # toggled: present on one of the two devices only


def _copy(dest, device: dict, networks: list[dict] | None = None):
    profile = Profile.load(SHIPPED)
    profile.metadata["device"] = device
    profile.metadata["versions"] = {**profile.metadata["versions"], **library_versions()}
    if networks is not None:
        profile.metadata["calibration"]["networks"] = networks
    profile.save(dest)
    return dest


@pytest.fixture(scope="module")
def timed_here():
    """Three small calibration networks of the shipped profile timed on this machine now, as the speed check
    times them (a copy of a profile made elsewhere carries another machine's times)."""
    from hwnas.latency.backends import get_backend
    from hwnas.latency.timing import measure_networks, network_ms
    from hwnas.models.spaces.base import get_space

    profile = Profile.load(SHIPPED)
    nets = sorted(profile.calibration["networks"], key=lambda n: n["measured_batch_ms"])[:3]
    space = get_space("cifar32")
    measured = measure_networks(space, [space.parse(n["arch"]) for n in nets],
                                get_backend(profile.backend, **profile.settings))
    return [{**n, "measured_batch_ms": network_ms(m)} for n, m in zip(nets, measured)]


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    here = cpu_info()
    simd = [f for f in here["simd"] if f != FLAG] if FLAG in here["simd"] else [*here["simd"], FLAG]
    return _copy(tmp_path_factory.mktemp("foreign") / "p", {**here, "simd": simd})


@pytest.fixture
def run(capsys):
    def call(*args):
        with pytest.raises(SystemExit) as exc:
            main(list(args))
        out = capsys.readouterr()
        return SimpleNamespace(code=exc.value.code, out=out.out, err=out.err)

    return call


def _no_work(*_args, **_kwargs):
    raise AssertionError("work started before the profile was checked against this machine")


def _refused_in_one_line(r, doing="measured"):
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert "Traceback" not in r.err and FLAG in r.err
    assert f"cannot be {doing} here" in r.err and "profile-device --cpu --backend onnxruntime" in r.err


def test_the_foreign_copy_differs_only_by_its_isa(foreign):
    from hwnas.latency.device import host_differences

    expected = (f"this machine has {FLAG}, the profiled CPU did not" if FLAG in cpu_info()["simd"]
                else f"this machine lacks {FLAG}")
    assert host_differences(Profile.load(foreign).metadata) == [expected]


def test_search_measure_refuses_before_searching(foreign, run, tmp_path, monkeypatch):
    from hwnas.search import evolution

    monkeypatch.setattr(evolution, "search", _no_work)
    r = run("search", "--space", "cifar32", "--latency-ms", "5", "--profile", str(foreign), "--out",
            str(tmp_path / "run"), "--measure")
    _refused_in_one_line(r)
    assert not (tmp_path / "run").exists()


def test_validate_refuses_before_sampling(foreign, run, monkeypatch):
    from hwnas.latency import validate

    monkeypatch.setattr(validate, "sample_networks", _no_work)
    monkeypatch.setattr(validate, "measure_networks", _no_work)
    _refused_in_one_line(run("latency", "validate", "--profile", str(foreign), "--samples", "2"))


@pytest.mark.parametrize("more", [[], ["--networks", "5"]])
def test_recalibrate_remeasure_refuses_before_sampling(foreign, run, monkeypatch, more):
    from hwnas.latency import profiler

    monkeypatch.setattr(profiler, "sample_networks", _no_work)
    monkeypatch.setattr(profiler, "measure_networks", _no_work)
    before = Profile.load(foreign).hash
    _refused_in_one_line(run("latency", "recalibrate", "--profile", str(foreign), "--remeasure", *more),
                         "re-measured")
    assert Profile.load(foreign).hash == before


def test_deploy_check_refuses_a_foreign_profile(foreign, run, tmp_path):
    from hwnas.models.spaces.base import get_space

    space = get_space("cifar32")
    r = run("deploy", "export", space.format(space.initial()), "--space", "cifar32", "--batch", "1", "--out",
            str(tmp_path / "dep"))
    assert r.code in (0, None), r.err
    r = run("deploy", "check", str(tmp_path / "dep"), "--profile", str(foreign))
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and FLAG in r.err


def test_demo_path_searches_for_a_foreign_profile_and_says_it_did_not_measure(foreign, run, tmp_path):
    r = run("search", "--space", "cifar32", "--latency-ms", "5", "--population", "4", "--iterations", "3",
            "--batch-size", "2", "--profile", str(foreign), "--out", str(tmp_path / "run"), "--measure", "auto",
            "--no-progress")
    assert r.code in (0, None), r.err
    last = r.out.strip().splitlines()[-1]
    assert last.startswith("searched with the profile's predictions; not measured on this machine:")
    assert FLAG in last and "profile-device --cpu" in last
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["best_structure"] and "measured_ms" not in summary


def test_demo_path_measures_on_the_profiles_own_device(run, tmp_path, timed_here):
    here = _copy(tmp_path / "here", cpu_info(), timed_here)
    r = run("search", "--space", "cifar32", "--latency-ms", "5", "--population", "4", "--iterations", "3",
            "--batch-size", "2", "--profile", str(here), "--out", str(tmp_path / "run"), "--measure", "auto",
            "--no-progress", "--json")
    assert r.code in (0, None), r.err
    summary = json.loads(r.out)
    assert summary["measured_ms"] > 0 and "not_measured" not in summary
    assert summary["prediction_error_pct"] == pytest.approx(100 * (summary["predicted_ms"] / summary["measured_ms"]
                                                                   - 1), rel=1e-9)



def test_the_speed_check_passes_networks_timed_here(tmp_path, timed_here):
    from hwnas.latency.speed import SPEED_LIMIT, check_speed

    speed = check_speed(Profile.load(_copy(tmp_path / "here", cpu_info(), timed_here)))
    assert speed["networks"] == 3 and 1 / SPEED_LIMIT <= speed["ratio"] <= SPEED_LIMIT
    assert speed["ratio"] == pytest.approx(sorted(speed["ratios"])[1])  # the median of three


@pytest.fixture
def three_times_slower(tmp_path, timed_here):
    """This machine's identity, but its calibration networks stored 3x slower than they run here: another device
    whose identity strings match (as an AVX-512 EPYC of one generation and of the next may)."""
    return _copy(tmp_path / "slower", cpu_info(), [{**n, "measured_batch_ms": 3 * n["measured_batch_ms"]}
                                                  for n in timed_here])


def _refused_for_speed(r, doing="measured"):
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert "Traceback" not in r.err and "3 of its calibration networks" in r.err
    assert "as fast as the profiled device did" in r.err and f"cannot be {doing} here" in r.err
    assert "profile-device --cpu --backend onnxruntime" in r.err


def test_validate_refuses_a_machine_that_runs_the_networks_3x_as_fast(three_times_slower, run, monkeypatch):
    from hwnas.latency import validate

    monkeypatch.setattr(validate, "sample_networks", _no_work)
    _refused_for_speed(run("latency", "validate", "--profile", str(three_times_slower), "--samples", "2",
                           "--no-progress"))


def test_search_measure_refuses_a_machine_of_another_speed_before_searching(three_times_slower, run, tmp_path,
                                                                           monkeypatch):
    from hwnas.search import evolution

    monkeypatch.setattr(evolution, "search", _no_work)
    _refused_for_speed(run("search", "--space", "cifar32", "--latency-ms", "5", "--profile", str(three_times_slower),
                           "--out", str(tmp_path / "run"), "--measure"))
    assert not (tmp_path / "run").exists()


def test_latency_measure_refuses_a_foreign_profile_before_building(foreign, run, monkeypatch):
    from hwnas.latency import validate
    from hwnas.latency.profiler import sample_networks
    from hwnas.models.spaces.base import get_space

    space = get_space("cifar32")
    monkeypatch.setattr(validate, "measure_networks", _no_work)
    _refused_in_one_line(run("latency", "measure", space.format(sample_networks(space, 1, 7)[0]),
                             "--profile", str(foreign), "--no-progress"))


def test_latency_measure_times_networks_here_beside_their_predictions(run, tmp_path, timed_here):
    here = _copy(tmp_path / "here", cpu_info(), timed_here)
    from hwnas.latency.profiler import sample_networks
    from hwnas.models.spaces.base import get_space

    space = get_space("cifar32")
    nets = [space.format(a) for a in sample_networks(space, 2, 7)]
    r = run("latency", "measure", *nets, "--profile", str(here), "--no-progress", "--json")
    assert r.code in (0, None), r.err
    out = json.loads(r.out)
    assert [n["name"] for n in out["networks"]] == nets
    for name, row in zip(nets, out["networks"]):
        predicted = json.loads(run("latency", "predict", name, "--profile", str(here), "--json").out)["latency_ms"]
        assert row["predicted_ms"] == pytest.approx(predicted, rel=1e-12) and row["measured_ms"] > 0
        assert row["error_pct"] == pytest.approx(100 * (predicted / row["measured_ms"] - 1), rel=1e-9)


def test_a_profile_that_passed_the_speed_check_is_not_timed_again_in_the_process(tmp_path, timed_here, monkeypatch):
    from hwnas.latency import speed

    here = Profile.load(_copy(tmp_path / "here", {**cpu_info(), "os": f"unique {tmp_path}"}, timed_here))
    calls = []
    measure = speed.measure_networks
    monkeypatch.setattr(speed, "measure_networks", lambda *a, **k: calls.append(1) or measure(*a, **k))
    here.check(host=True)
    here.check(host=True)  # as `search --measure` does before its search and again when it measures
    Profile.load(tmp_path / "here").check(host=True)
    assert len(calls) == 1
