"""hwnas sweep (one search per proxy, budget and seed; resumable) and hwnas curves of sweeps (regret, baselines)."""

from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from hwnas.cli.main import main
from hwnas.models.zoo import data_dir

NB201 = ["--space", "nb201", "--profile", "ort-cpu1-b1-nb201", "--iterations", "6", "--population", "3",
         "--batch-size", "2", "--no-progress"]


def _run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def _table() -> pd.DataFrame:  # read here, not through the code under test
    return pd.read_csv(data_dir().parent / "nasbench201" / "accuracy.csv").set_index("arch")


@lru_cache(maxsize=1)
def _all_latency() -> pd.Series:
    """Every cell's predicted latency (the predictor is tested elsewhere; this spares a second 15,625)."""
    from hwnas.search.regret import cells

    frame = cells("ort-cpu1-b1-nb201")
    latency = frame.set_index("arch")["latency_ms"]
    sample = latency.sample(20, random_state=0)
    np.testing.assert_allclose(sample, _predicted(sample.index), rtol=1e-9)
    return latency.reindex(_table().index)


def _predicted(archs) -> np.ndarray:
    from hwnas.latency.predictor import Predictor
    from hwnas.latency.profile import Profile
    from hwnas.models.spaces.base import get_space

    space = get_space("nb201")
    return Predictor(Profile.load("ort-cpu1-b1-nb201")).predict_many([space.parse(a) for a in archs])


@pytest.fixture(scope="module")
def nb201_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "s"
    with pytest.raises(SystemExit) as exc:
        main(["sweep", *NB201, "--latency-ms", "0.3,0.6", "--seeds", "0,1", "--proxy", "flops,params",
              "--out", str(out)])
    assert exc.value.code == 0
    return out


def test_sweep_writes_one_search_per_combination_and_the_csv(nb201_sweep):
    rows = pd.read_csv(nb201_sweep / "sweep.csv")
    assert len(rows) == 8
    assert set(zip(rows.proxy, rows.budget_ms, rows.seed)) == {(p, b, s) for p in ("flops", "params")
                                                               for b in (0.3, 0.6) for s in (0, 1)}
    table = _table()
    for row in rows.itertuples():
        assert (nb201_sweep / row.run / "best.txt").read_text().strip() == row.best_structure
        assert row.predicted_latency_ms <= row.budget_ms
        assert row.accuracy_cifar10 == pytest.approx(table.at[row.best_structure, "cifar10"])
        assert row.accuracy_cifar100 == pytest.approx(table.at[row.best_structure, "cifar100"])
        assert math.isnan(row.measured_latency_ms)
    np.testing.assert_allclose(rows.predicted_latency_ms, _predicted(rows.best_structure), rtol=1e-9)


def test_sweep_skips_finished_and_resumes_a_killed_search(nb201_sweep, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(nb201_sweep, copy)
    before = pd.read_csv(copy / "sweep.csv")
    killed = copy / "params" / "0.6ms" / "seed1"
    for name in ("best.txt", "summary.json", "population.parquet", "history.parquet"):
        (killed / name).unlink()  # the checkpoint stays, as after a kill
    early = copy / "flops" / "0.3ms" / "seed0"
    for path in early.iterdir():  # killed before its first checkpoint: only config.json was written
        if path.name != "config.json":
            path.unlink()
    args = ["sweep", *NB201, "--latency-ms", "0.3,0.6", "--seeds", "0,1", "--proxy", "flops,params",
            "--out", str(copy), "--json"]
    code, out, _ = _run(args, capsys)
    result = json.loads(out)
    assert code == 0 and (result["ran"], result["resumed"], result["skipped"]) == (2, 1, 6)
    pd.testing.assert_frame_equal(pd.read_csv(copy / "sweep.csv"), before)
    code, out, _ = _run(args, capsys)
    assert (json.loads(out)["ran"], json.loads(out)["skipped"]) == (0, 8)
    # a new seed is added to the same sweep; the earlier rows stay in sweep.csv
    code, out, _ = _run(["sweep", *NB201, "--latency-ms", "0.3,0.6", "--seeds", "2", "--proxy", "flops",
                       "--out", str(copy), "--json"], capsys)
    assert code == 0 and json.loads(out)["ran"] == 2
    assert len(pd.read_csv(copy / "sweep.csv")) == 10


@pytest.mark.parametrize("extra, expected", [
    (["--latency-ms", "0.1"], "even its smallest network has latency"),
    (["--latency-ms", "0.5", "--proxy", "zen,nosuch"], "unknown proxy 'nosuch'"),
    (["--latency-ms", "0.5,abc"], "--latency-ms '0.5,abc': expected numbers"),
    (["--latency-ms", "0.5", "--seeds", "0,0"], "must not repeat"),
])
def test_sweep_bad_input_is_one_line_before_any_work(tmp_path, capsys, extra, expected):
    out = tmp_path / "new"
    code, _, err = _run(["sweep", *NB201, *extra, "--out", str(out)], capsys)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_sweep_refuses_a_folder_that_is_not_a_sweep_or_has_other_settings(nb201_sweep, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, _, err = _run(["sweep", *NB201, "--latency-ms", "0.5", "--out", str(other)], capsys)
    assert code == 2 and "not a sweep folder" in err and (other / "notes.txt").read_text() == "mine"
    changed = [a if a != "6" else "7" for a in NB201]  # --iterations 7
    code, _, err = _run(["sweep", *changed, "--latency-ms", "0.3", "--proxy", "flops", "--out", str(nb201_sweep)],
                        capsys)
    assert code == 2 and "other settings (iterations)" in err


def test_regret_against_a_brute_force_over_all_cells():
    from hwnas.search.regret import best_accuracy_within, regret, true_front

    table, latency = _table(), _all_latency()
    for budget in (0.25, 0.4, 0.9, 10.0):
        fits = table.loc[latency <= budget, "cifar100"]
        assert best_accuracy_within("ort-cpu1-b1-nb201", budget, "cifar100") == pytest.approx(fits.max())
        assert regret(fits.idxmax(), budget, "ort-cpu1-b1-nb201", "cifar100") == pytest.approx(0.0)
    assert math.isnan(best_accuracy_within("ort-cpu1-b1-nb201", 0.01))
    worst = table["cifar10"].idxmin()
    assert regret(worst, 10.0, "ort-cpu1-b1-nb201") == pytest.approx(table["cifar10"].max() - table["cifar10"].min())
    front = true_front("ort-cpu1-b1-nb201")
    for row in front.itertuples():  # nothing beats a front cell on both axes
        assert not ((latency <= row.latency_ms) & (table["cifar10"] > row.cifar10)).any()


def test_curves_of_a_sweep_print_and_write_the_regret_table(nb201_sweep, tmp_path, capsys):
    out = tmp_path / "c.png"
    code, stdout, _ = _run(["curves", str(nb201_sweep), "--out", str(out), "--json"], capsys)
    assert code == 0
    result = json.loads(stdout)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    regret = pd.read_csv(tmp_path / "c-regret.csv")
    assert len(regret) == 4 == len(result["regret"])
    rows = pd.read_csv(nb201_sweep / "sweep.csv")
    table, latency = _table(), _all_latency()
    for r in regret.itertuples():
        best = table.loc[latency <= r.budget_ms, "cifar10"].max()
        found = rows[(rows.proxy == r.proxy) & (rows.budget_ms == r.budget_ms)]["accuracy_cifar10"]
        assert r.best_possible == pytest.approx(best)
        assert r.regret_mean == pytest.approx(best - found.mean())
        assert r.regret_std == pytest.approx((best - found).std(ddof=1))
        assert r.regret_min <= r.regret_mean <= r.regret_max and r.seeds == 2
    points = pd.read_csv(out.with_suffix(".csv"))
    assert set(points["kind"]) == {"true_front", "found"}
    code, stdout, _ = _run(["curves", str(nb201_sweep), "--out", str(out), "--csv", str(tmp_path / "r.csv")], capsys)
    assert code == 0 and "regret_mean" in stdout.splitlines()[0] and (tmp_path / "r.csv").is_file()


def test_curves_bad_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = _run(["curves", str(tmp_path / "empty"), "--out", str(tmp_path / "c.png")], capsys)
    assert code == 2 and "neither a sweep" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c.png").exists()


@pytest.fixture(scope="module")
def imagenet_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "in"
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--space", "imagenet224", "--profile", "ort-cpu1-b1-imagenet224", "--latency-ms", "30",
              "--proxy", "flops", "--iterations", "3", "--population", "2", "--batch-size", "1", "--no-progress",
              "--out", str(out)])
    assert exc.value.code == 0
    return out


def test_imagenet_curves_leave_out_what_the_profile_cannot_predict_or_measure(imagenet_sweep, tmp_path, capsys,
                                                                            monkeypatch):
    from hwnas.latency import device

    monkeypatch.setattr(device, "host_differences", lambda metadata: ["this machine is another device"])
    out = tmp_path / "in.png"
    code, stdout, _ = _run(["curves", str(imagenet_sweep), "--out", str(out), "--json"], capsys)
    assert code == 0
    result = json.loads(stdout)
    notes = "\n".join(result["notes"])
    assert "torchvision models left out" in notes and "another device" in notes
    assert "flops400M_SE_res224 left out: profile ort-cpu1-b1-imagenet224 cannot predict it" in notes
    assert result["zennet"] == 6 and result["torchvision"] == 0
    points = pd.read_csv(out.with_suffix(".csv"))
    assert set(points["kind"]) == {"zennet", "found"}
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_torchvision_models_are_measured_on_the_device_and_cached(tmp_path, monkeypatch):
    from hwnas.latency import device, reference_models, speed, validate
    from hwnas.latency.backends import get_backend
    from hwnas.latency.profile import Profile

    rows = reference_models.catalog(names=["squeezenet1_1", "mobilenet_v3_small"])
    import torchvision.models as tvm

    for row in rows:  # the published figures, read here from torchvision directly
        meta = tvm.get_model_weights(row["name"]).DEFAULT.meta
        assert row["top1"] == meta["_metrics"]["ImageNet-1K"]["acc@1"] and row["gflops"] == meta["_ops"]
    assert all(r["gflops"] <= 0.1 for r in reference_models.catalog(max_gflops=0.1))
    # this machine taken for the shipped profile's device: no identity difference, and its speed not checked
    monkeypatch.setattr(device, "host_differences", lambda metadata: [])
    monkeypatch.setattr(speed, "check_speed", lambda *args, **kwargs: None)
    calls = []

    def fast_backend(profile):
        backend = get_backend("onnxruntime", device="cpu", threads=1, batch=1, warmup=1, repeats=2,
                              min_sample_ms=0.05)
        export = backend.export
        backend.export = lambda *a, **k: calls.append(1) or export(*a, **k)
        return backend

    monkeypatch.setattr(validate, "backend_for", fast_backend)
    prof = Profile.load("ort-cpu1-b1-imagenet224")
    first = reference_models.measure(prof, rows, cache_dir=tmp_path)
    assert all(r["measured_ms"] > 0 for r in first) and len(calls) == len(rows)  # each exported once, for 3 passes
    n = len(calls)
    again = reference_models.measure(prof, rows, cache_dir=tmp_path)
    assert len(calls) == n and [r["measured_ms"] for r in again] == [r["measured_ms"] for r in first]


def test_sweep_without_proxy_uses_the_spaces_default(tmp_path, capsys):
    from hwnas.models.spaces.base import get_space

    default = type(get_space("nb201")).default_proxy  # the search's default, read from the space, not the sweep
    out = tmp_path / "default"
    small = [a if a not in ("6", "3") else {"6": "1", "3": "2"}[a] for a in NB201]  # 1 iteration, population 2
    code, _, err = _run(["sweep", *small, "--latency-ms", "0.6", "--out", str(out)], capsys)
    assert code == 0, err
    assert json.loads((out / "sweep.json").read_text())["proxies"] == [default]
    folder = default if default.isidentifier() else "expr-" + hashlib.sha1(default.encode()).hexdigest()[:8]
    assert set(pd.read_csv(out / "sweep.csv").proxy) == {default} and (out / folder / "0.6ms" / "seed0").is_dir()
    code, help_text, _ = _run(["sweep", "--help"], capsys)
    assert code == 0 and f"{default} on nb201" in " ".join(help_text.split())
    assert f"{type(get_space('cifar32')).default_proxy} on the ZenNAS spaces" in " ".join(help_text.split())
