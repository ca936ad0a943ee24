"""The evolutionary search: budgets hold for every member, no structure is scored twice,
the summary is recomputed, and a run killed with SIGKILL resumes to the same result."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from hwnas.models.spaces.base import get_space
from hwnas.search.budgets import BudgetChecker, Budgets, default_max_layers
from hwnas.search.evolution import SearchConfig, search
from hwnas.search.workers import Scorer

SMALL = dict(space="cifar32", proxy="zen", batch_size=4, population=8, seed=3)


def _config(**changes) -> SearchConfig:
    return SearchConfig(**{**SMALL, "iterations": 40, "budgets": Budgets(params=3e5, max_layers=12), **changes})


def _compare_runs(a: Path, b: Path) -> None:
    ha = pd.read_parquet(a / "history.parquet").drop(columns=["time_s"])
    hb = pd.read_parquet(b / "history.parquet").drop(columns=["time_s"])
    pd.testing.assert_frame_equal(ha, hb)
    pd.testing.assert_frame_equal(pd.read_parquet(a / "population.parquet"), pd.read_parquet(b / "population.parquet"))
    assert (a / "best.txt").read_text() == (b / "best.txt").read_text()
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    assert sa["best_structure"] == sb["best_structure"] and sa["score"] == sb["score"]


def test_default_max_layers_follow_zennas_table():
    assert [default_max_layers(ms) for ms in (0.1, 0.2, 0.3, 0.5, 0.8, 1.2)] == [10, 13, 16, 20, 25, 30]
    assert default_max_layers(0.25) == 16 and default_max_layers(5.0) == 30


def test_budget_checker_names_the_broken_budget():
    space = get_space("cifar32")
    arch = space.initial()
    built = space.build(arch)
    params = sum(p.numel() for p in built.parameters())  # independent of the counts module
    layers = sum(b.sub_layers for b in arch.blocks)
    ok = BudgetChecker(space, Budgets(params=params, max_layers=layers))
    assert ok.violation(ok.measure(arch)) is None
    assert ok.measure(arch).params == params
    tight = BudgetChecker(space, Budgets(params=params - 1))
    assert tight.violation(tight.measure(arch)).startswith("params")
    shallow = BudgetChecker(space, Budgets(max_layers=layers - 1))
    assert shallow.violation(shallow.measure(arch)).startswith("layers")


def test_population_meets_every_budget_and_summary_is_recomputed(tmp_path, monkeypatch):
    calls = []
    original = Scorer.__call__

    def counting(self, text, threshold=None):
        calls.append(text)
        return original(self, text, threshold)

    monkeypatch.setattr(Scorer, "__call__", counting)
    budgets = Budgets(params=3e5, flops=6e7, max_layers=12, rho_max=5.0)
    out = tmp_path / "run"
    summary = search(_config(budgets=budgets), out)

    space = get_space("cifar32")
    pop = pd.read_parquet(out / "population.parquet")
    assert 1 <= len(pop) <= 8
    from hwnas.models.counts import effectiveness

    for text in pop["structure"]:
        arch = space.parse(text)
        assert sum(p.numel() for p in space.build(arch).parameters()) <= budgets.params
        assert sum(b.sub_layers for b in arch.blocks) <= budgets.max_layers
        assert space.counts(arch).flops <= budgets.flops
        assert effectiveness(arch) <= budgets.rho_max

    hist = pd.read_parquet(out / "history.parquet")
    assert list(hist["iteration"]) == list(range(40))
    assert set(hist.columns) >= {"iteration", "structure", "score", "latency_ms", "flops", "params", "layers",
                                 "accepted", "reject_reason"}
    scored = hist[hist["accepted"]]
    assert scored["structure"].is_unique  # never scored twice
    search_calls = calls[:-1]  # the last call re-scores the best for the summary
    assert len(search_calls) == len(set(search_calls)) == len(scored) + hist["reject_reason"].fillna("").str.startswith("proxy").sum()
    # rejected rows name a broken budget that the recorded numbers confirm
    for row in hist[~hist["accepted"] & hist["reject_reason"].str.startswith("params", na=False)].itertuples():
        assert row.params > budgets.params

    best = pop.iloc[0]
    assert (out / "best.txt").read_text().strip() == best["structure"] == summary["best_structure"]
    arch = space.parse(summary["best_structure"])
    assert summary["params"] == sum(p.numel() for p in space.build(arch).parameters())
    assert summary["layers"] == sum(b.sub_layers for b in arch.blocks)
    assert summary["score"] == pytest.approx(best["score"], rel=1e-6)  # re-scored, same seed -> same value
    assert summary["meets_budgets"] is True
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 3 and config["budgets"]["params"] == 3e5 and config["initial"] == str(space.initial())


def test_nb201_search_runs_through_the_space_protocol(tmp_path):
    cfg = SearchConfig(space="nb201", proxy="zen", batch_size=4, population=6, iterations=20, seed=0)
    summary = search(cfg, tmp_path / "nb")
    space = get_space("nb201")
    assert space.format(space.parse(summary["best_structure"])) == summary["best_structure"]
    assert pd.read_parquet(tmp_path / "nb" / "history.parquet")["accepted"].sum() >= 1


def test_resume_extends_a_finished_run_to_the_uninterrupted_result(tmp_path):
    # One process, --workers 1: a run of 15 iterations resumed to 30 equals a run of 30.
    search(_config(iterations=30), tmp_path / "ref")
    search(_config(iterations=15), tmp_path / "two")
    search(_config(iterations=30), tmp_path / "two", resume=True)
    _compare_runs(tmp_path / "ref", tmp_path / "two")


def _cli(out: Path, iterations: int, workers: int, resume: bool = False) -> list[str]:
    args = ["--space", "cifar32", "--params", "3e5", "--max-layers", "12", "--batch-size", "2",
            "--population", "6", "--iterations", str(iterations), "--seed", "5", "--workers", str(workers),
            "--out", str(out), "--checkpoint-every", "1e-9", "--no-progress"]  # a checkpoint every iteration
    code = "from hwnas.cli.main import search_main; search_main()"
    return [sys.executable, "-c", code, *args, *(["--resume"] if resume else [])]


def _checkpoint_iteration(out: Path) -> int:
    try:
        with open(out / "checkpoint.pkl", "rb") as f:
            return pickle.load(f)["iteration"]
    except (FileNotFoundError, EOFError, pickle.UnpicklingError):
        return -1


@pytest.mark.slow
def test_resume_after_kill9_gives_the_uninterrupted_result(tmp_path):
    # Two worker processes: the checkpoint also holds children still being scored.
    iterations, workers = 150, 2
    ref = tmp_path / "ref"
    cfg = SearchConfig(space="cifar32", proxy="zen", batch_size=2, population=6, iterations=iterations, seed=5,
                       workers=workers, budgets=Budgets(params=3e5, max_layers=12))
    search(cfg, ref)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(out, iterations, workers), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while _checkpoint_iteration(out) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the search ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the search and its worker processes: a hard crash
        proc.wait()
    reached = _checkpoint_iteration(out)
    assert 5 <= reached < iterations and not (out / "summary.json").exists()

    subprocess.run(_cli(out, iterations, workers, resume=True), check=True, capture_output=True, timeout=300)
    _compare_runs(ref, out)


def test_scores_do_not_depend_on_global_rng():
    scorer = Scorer("cifar32", "zen", {}, 4, 1, 0)
    text = str(get_space("cifar32").initial())
    first = scorer(text)
    torch.manual_seed(12345)
    assert scorer(text) == first
    assert Scorer("cifar32", "zen", {}, 4, 1, 1)(text)[0] != first[0]  # the run seed matters


def test_early_rejection_with_a_safe_margin_keeps_the_same_population(tmp_path):
    # A child whose estimate + margin is below the population minimum would have been
    # dropped right after its full evaluation; with a margin larger than the estimate's
    # error the search's trajectory is unchanged, only cheaper.
    search(_config(iterations=30, population=4), tmp_path / "full")
    search(_config(iterations=30, population=4, early_batch=2, early_margin=5.0), tmp_path / "early")
    full = pd.read_parquet(tmp_path / "full" / "population.parquet")
    early = pd.read_parquet(tmp_path / "early" / "population.parquet")
    pd.testing.assert_frame_equal(full, early)
    hist = pd.read_parquet(tmp_path / "early" / "history.parquet")
    rejected = hist[hist["reject_reason"].fillna("").str.startswith("early")]
    assert len(rejected) >= 1
    scores = pd.read_parquet(tmp_path / "full" / "history.parquet").set_index("iteration")["score"]
    for row in rejected.itertuples():  # each would have fallen below the population minimum
        assert scores[row.iteration] < float(row.reject_reason.rsplit(" ", 1)[1])


def test_latency_budget_holds_for_every_member_on_the_shipped_profile(tmp_path):
    from hwnas.errors import ProfileError
    from hwnas.latency.predictor import Predictor
    from hwnas.latency.profile import Profile, default_profile_name

    try:
        profile = Profile.load(default_profile_name("imagenet224"))
    except ProfileError as err:
        pytest.skip(f"no shipped imagenet224 profile in this checkout: {err}")
    budget = 3.0
    cfg = SearchConfig(space="imagenet224", proxy="zen", batch_size=2, population=4, iterations=10, seed=0,
                       budgets=Budgets(latency_ms=budget))
    summary = search(cfg, tmp_path / "lat")
    space, predictor = get_space("imagenet224"), Predictor(profile)
    pop = pd.read_parquet(tmp_path / "lat" / "population.parquet")
    for text in pop["structure"]:
        arch = space.parse(text)
        assert predictor.predict_ms(arch) <= budget
        assert sum(b.sub_layers for b in arch.blocks) <= default_max_layers(budget)
    assert summary["latency_ms"] == pytest.approx(predictor.predict_ms(space.parse(summary["best_structure"])))
    config = json.loads((tmp_path / "lat" / "config.json").read_text())
    assert config["profile_info"]["hash"] == profile.hash == summary["profile_hash"]
    assert config["budgets"]["max_layers"] == default_max_layers(budget)


def _children(pid: int) -> set[int]:
    """The worker processes (multiprocessing spawn) among ``pid``'s children."""
    out = set()
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for c in map(int, children):
            if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="replace"):
                out.add(c)
    except OSError:
        pass
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_worker_processes_end_when_the_search_is_killed(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_cli(out, 100_000, 2), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        workers: set[int] = set()
        while proc.poll() is None and time.monotonic() < deadline:
            workers = _children(proc.pid) if _checkpoint_iteration(out) >= 2 else set()
            if len(workers) == 2:
                break
            time.sleep(0.05)
        assert len(workers) == 2, "the search did not start its two workers"
        os.kill(proc.pid, signal.SIGKILL)  # only the search process: its workers must not outlive it
        proc.wait()
        deadline = time.monotonic() + 60
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = [w for w in workers if _alive(w)]
        assert not alive, f"workers {alive} outlived the killed search"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_budget_only_cells_faster_than_the_smallest_meet_is_searched_from_the_fastest():
    from hwnas.errors import BudgetError
    from hwnas.latency.predictor import Predictor
    from hwnas.latency.profile import Profile
    from hwnas.search.evolution import prepare

    space = get_space("nb201")
    predictor = Predictor(Profile.load("ort-cpu1-b1-nb201"))
    cells = list(space.all_archs())
    latency = list(predictor.predict_many(cells))
    fastest = min(latency)
    smallest = predictor.predict_ms(space.smallest())
    if not fastest < smallest:
        pytest.skip("on this profile the smallest cell is also the fastest")
    budget = (fastest + smallest) / 2
    config = SearchConfig(space="nb201", proxy="zen", batch_size=2, population=4, iterations=2, seed=0,
                          profile="ort-cpu1-b1-nb201", budgets=Budgets(latency_ms=budget))
    prepared = prepare(config)
    assert prepared.config.initial == space.format(cells[latency.index(fastest)])
    with pytest.raises(BudgetError, match="even its smallest"):
        prepare(SearchConfig(space="nb201", proxy="zen", batch_size=2, population=4, iterations=2, seed=0,
                             profile="ort-cpu1-b1-nb201", budgets=Budgets(latency_ms=fastest * 0.99)))
