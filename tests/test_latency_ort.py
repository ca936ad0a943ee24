"""A tiny real ONNX Runtime profile, end to end: measure, resume, calibrate, load, predict, measure whole."""

import json

import numpy as np
import pytest

from hwnas.latency import profiler
from hwnas.latency.backends import get_backend
from hwnas.latency.predictor import Predictor
from hwnas.latency.profile import Profile
from hwnas.latency.timing import PASSES
from hwnas.latency.validate import measure_end_to_end
from hwnas.models.spaces.base import get_space
from hwnas.latency.kernels import kernels_for

FAST = {"device": "cpu", "threads": 1, "batch": 1, "warmup": 1, "repeats": 3, "min_sample_ms": 0.05}


@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory):
    out = tmp_path_factory.mktemp("prof") / "tiny-nb201"
    space = get_space("nb201")
    parts = list(kernels_for(space).grid_parts("coarse"))
    calls = {"n": 0, "prepared": 0, "exported": 0}
    real_get_backend = profiler.get_backend

    def counting_backend(name, **settings):
        backend = real_get_backend(name, **settings)
        measure, prepare, export = backend.measure_module, backend.prepare_onnx, backend.export

        def counted(*a, **k):
            calls["n"] += 1
            return measure(*a, **k)

        def counted_prepare(*a, **k):  # every session opened: parts' and whole networks' (interleaved rounds)
            calls["prepared"] += 1
            return prepare(*a, **k)

        def counted_export(*a, **k):
            calls["exported"] += 1
            return export(*a, **k)

        backend.measure_module, backend.prepare_onnx, backend.export = counted, counted_prepare, counted_export
        return backend

    # The graph table of a real profile covers all 15,625 cells (minutes); here: the calibration networks and a few.
    nets = profiler.sample_networks(space, 4, 1_000_003)
    real_all_archs = type(space).all_archs
    type(space).all_archs = lambda self: list(dict.fromkeys(nets + list(real_all_archs(self)[:6])))
    profiler.get_backend = counting_backend
    try:
        # First run stops at once (as if killed): only the journal header is written.
        assert profiler.profile_device("nb201", "onnxruntime", FAST, out, parts=parts, networks=4,
                                       max_minutes=0) is None
        header = json.loads((out / "journal.jsonl").read_text().splitlines()[0])
        assert header["header"]["space"] == "nb201"
        # Simulate a run killed after three parts, with a torn last line.
        done = []
        for part in parts[:3]:
            module, shape = kernels_for(space).build_part(part)
            m = get_backend("onnxruntime", **FAST).measure_module(module, shape)
            done.append(json.dumps({"kind": "part", "key": profiler._key(part), **m.as_dict(), "seconds": 0.0,
                                    "ref_index": 0}))
        ref = json.dumps({"kind": "ref", "key": profiler._key(parts[0]), "median_ms": 0.1, "seconds": 0.0})
        # ... and after the first pass over one calibration network
        first = json.dumps({"kind": "network", "key": space.format(nets[0]), "pass": 0, "median_ms": 0.5,
                            "p10_ms": 0.4, "p90_ms": 0.6, "repeats": 25, "seconds": 0.0})
        with open(out / "journal.jsonl", "a") as f:
            f.write("\n".join([ref] + done + [first]) + "\n" + '{"kind": "part", "key": "[tor')
        calls["n"] = calls["prepared"] = calls["exported"] = 0
        calls["progress"] = []
        prof = profiler.profile_device("nb201", "onnxruntime", FAST, out, parts=parts, networks=4,
                                       on_progress=lambda *report: calls["progress"].append(report))
    finally:
        profiler.get_backend = real_get_backend
        type(space).all_archs = real_all_archs
    expected_refs = -(-(len(parts) - 3) // profiler.REF_EVERY)
    return prof, out, calls, len(parts), expected_refs


def test_progress_is_reported_through_the_callback(tiny_profile):
    _, _, calls, n_parts, _ = tiny_profile
    reports = [r for r in calls["progress"] if r[2] == "profiling nb201"]
    total = n_parts + PASSES * 4
    # resumed: the three journaled parts and the journaled pass over one network count as done from the start
    assert reports[0] == (3 + 1, total, "profiling nb201")
    assert reports[-1] == (total, total, "profiling nb201")
    assert all(a[0] <= b[0] for a, b in zip(reports, reports[1:]))


def test_resume_measures_nothing_twice(tiny_profile):
    prof, out, calls, n_parts, refs = tiny_profile
    assert not (out / "journal.jsonl").exists()
    assert len(prof.table) == n_parts
    # remaining parts, each measured once or (when noisy) twice, + references; the 4 networks prepared once a
    # pass, but for the pass the journal held
    assert n_parts - 3 + refs <= calls["n"] <= 2 * (n_parts - 3) + refs
    # a part: exported once, timed in PART_SESSIONS sessions; a network: exported once, a session each pass but the
    # pass the journal held
    assert calls["exported"] == calls["n"] + 4
    assert calls["prepared"] == profiler.PART_SESSIONS * calls["n"] + 4 * PASSES - 1
    nets = prof.calibration["networks"]
    assert len(nets) == 4 and all(n["passes"] == PASSES for n in nets)


def test_profile_metadata_and_calibration(tiny_profile):
    prof, out, *_ = tiny_profile
    loaded = Profile.load(out)
    assert loaded.hash == prof.hash
    meta = loaded.metadata
    assert meta["backend"] == "onnxruntime" and meta["settings"]["threads"] == 1 and meta["settings"]["batch"] == 1
    assert meta["device"]["kind"] == "cpu" and meta["device"]["name"]
    assert "onnxruntime" in meta["versions"] and "torch" in meta["versions"]
    cal = meta["calibration"]
    assert cal["form"] in ("affine", "boundary", "boundary_count", "loglog") and len(cal["networks"]) == 4
    # The graph table (ONNX Runtime's optimized graph per architecture) is stored and covers the networks.
    assert loaded.graph is not None and set(n["arch"] for n in cal["networks"]) <= set(loaded.graph["arch"])
    assert (loaded.graph.drop(columns="arch") >= 0).all().all() and any(c.endswith(":Conv") for c in loaded.graph.columns)
    assert all(n["measured_batch_ms"] == n["p10_ms"] for n in cal["networks"])
    assert (loaded.table["p10_ms"] <= loaded.table["median_ms"] + 1e-12).all()


def test_predict_and_measure_whole_network(tiny_profile):
    prof, out, *_ = tiny_profile
    space = get_space("nb201")
    pred = Predictor(Profile.load(out))
    arch = space.parse(prof.calibration["networks"][0]["arch"])
    p = pred.predict_ms(arch)
    many = pred.predict_many([arch, arch])
    assert p > 0 and np.allclose(many, p)
    measured = measure_end_to_end(prof, arch, backend=get_backend("onnxruntime", **FAST))
    assert measured > 0


def test_recalibrate_measures_a_fresh_set_of_networks(tiny_profile, tmp_path):
    import shutil

    from hwnas.errors import ProfileError

    prof, out, *_ = tiny_profile
    shutil.copytree(out, tmp_path / "p")
    with pytest.raises(ProfileError, match="add --remeasure"):
        profiler.recalibrate(tmp_path / "p", networks=4)
    real_get_backend = profiler.get_backend
    profiler.get_backend = lambda name, **s: real_get_backend(name, **{**s, **FAST})
    try:
        again = profiler.recalibrate(tmp_path / "p", remeasure=True, networks=4)
    finally:
        profiler.get_backend = real_get_backend
    nets = again.calibration["networks"]
    # the same seed stream gives the same networks; each is measured anew (interleaved, 10th percentile)
    assert [n["arch"] for n in nets] == [n["arch"] for n in prof.calibration["networks"]]
    assert all(n["measured_batch_ms"] == n["p10_ms"] > 0 for n in nets) and "networks_remeasured" in again.metadata
    assert Profile.load(tmp_path / "p").hash == again.hash != prof.hash


def test_a_new_backend_is_one_new_file(tmp_path, monkeypatch):
    import sys

    from hwnas.latency import backends

    (tmp_path / "echo_backend.py").write_text(
        "from hwnas.latency.backends import register_backend\n\n\n"
        "@register_backend('echo')\n"
        "class EchoBackend:\n"
        "    name = 'echo'\n\n"
        "    def __init__(self, **settings):\n"
        "        self.settings = settings\n")
    monkeypatch.setattr(backends, "__path__", [*backends.__path__, str(tmp_path)])
    monkeypatch.setattr(backends._BACKENDS, "_entries", dict(backends._BACKENDS._entries))
    monkeypatch.delitem(sys.modules, "hwnas.latency.backends.echo_backend", raising=False)
    try:
        assert "echo" in backends.backend_names()
        assert get_backend("echo", batch=3).settings == {"batch": 3}
    finally:
        sys.modules.pop("hwnas.latency.backends.echo_backend", None)


def test_validate_reports_the_machines_repeatability(tiny_profile, monkeypatch):
    from hwnas.latency import validate as v

    prof, out, *_ = tiny_profile
    monkeypatch.setattr(v, "backend_for", lambda profile: get_backend("onnxruntime", **FAST))
    result = v.validate(Profile.load(out), samples=3, seed=5, repeatability=True)
    rows = result["networks"]
    assert len(rows) == result["n"] == result["repeatability"]["n"]
    first = np.array([r["measured_ms"] for r in rows])
    second = np.array([r["measured_again_ms"] for r in rows])
    assert (second > 0).all()
    err = np.abs(second / first - 1)
    assert result["repeatability"]["within_10pct"] == pytest.approx(np.mean(err <= 0.10))
    assert result["repeatability"]["mape"] == pytest.approx(100 * err.mean())
    assert "repeatability" not in v.validate(Profile.load(out), samples=2, seed=5)
