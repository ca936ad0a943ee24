"""The search with a set-relative proxy (AZ-NAS): its decisions replayed by an independent re-aggregation, a
kill -9 that resumes to the uninterrupted run, the CLI; and what the search gives an ordinary proxy (MeCo's
input size, the space's default proxy)."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys

import pandas as pd
import pytest
from hwnas.cli.main import search_main
from hwnas.models.spaces.base import get_space
from hwnas.search import score_cache
from hwnas.search.evolution import SearchConfig, prepare, search
from hwnas.search.proxies import get_proxy
from hwnas.search.workers import Scorer, candidate_seed

# A tiny NB201 search whose population (3) is full after a few children, so members are dropped.
TINY = dict(space="nb201", proxy="az_nas", batch_size=2, population=3, iterations=14, seed=4)
NAMES = ("expressivity", "progressivity", "trainability", "complexity")


def _aggregate(rows: list[dict]) -> list[float]:
    """AZ-NAS's Σ log(rank / N), written here with pandas' ranks (ascending, ties averaged; -inf ranks first)."""
    frame = pd.DataFrame(rows)
    ranks = frame[list(NAMES)].rank(method="average", ascending=True)
    return list((ranks / len(frame)).apply(lambda col: col.map(math.log)).sum(axis=1))


def _components(text: str) -> dict:
    space = get_space("nb201")
    proxy = get_proxy("az_nas", batch_size=TINY["batch_size"], seed=candidate_seed(TINY["seed"], text),
                      resolution=space.resolution)
    return proxy.components(space, space.parse(text))


def test_decisions_match_an_independent_re_aggregation(tmp_path):
    cache = score_cache.ScoreCache(tmp_path / "cache.db")  # the replay reads the search's components back
    with score_cache.use(cache):
        summary = search(SearchConfig(**TINY), tmp_path / "run")
        history = pd.read_parquet(tmp_path / "run" / "history.parquet")
        accepted = history[history["accepted"]]
        assert len(accepted) > TINY["population"] + 2  # members were dropped more than once
        population: list[dict] = []
        for row in accepted.itertuples():
            population.append({"structure": row.structure, **_components(row.structure)})
            scores = _aggregate(population)
            assert row.score == pytest.approx(scores[-1], abs=1e-9)  # the child's aggregate in population + child
            while len(population) > TINY["population"]:
                low = min(range(len(population)), key=lambda j: scores[j])  # the oldest of the lowest
                population.pop(low)
                scores = _aggregate(population)
    final = pd.read_parquet(tmp_path / "run" / "population.parquet")
    assert sorted(final["structure"]) == sorted(m["structure"] for m in population)
    by_text = dict(zip((m["structure"] for m in population), scores))
    for row in final.itertuples():
        assert row.score == pytest.approx(by_text[row.structure], abs=1e-9)
    best = max(range(len(population)), key=lambda j: (scores[j], -j))  # the first of equal best aggregates
    assert summary["best_structure"] == population[best]["structure"]
    assert summary["set_relative"] is True and summary["score"] == pytest.approx(scores[best], abs=1e-9)
    assert set(summary["score_parts"]) == set(NAMES)
    # Duplicates of a structure already scored carry no score of their own (it exists only within a set).
    assert history.loc[history["reject_reason"].fillna("").str.startswith("duplicate"), "score"].isna().all()


KILL_DRIVER = r"""
import json, os, signal, sys
import hwnas.search.evolution as evolution

at, out, resume, settings = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "resume", json.loads(sys.argv[4])

def progress(done, total, statistics):
    if done == at:
        os.kill(os.getpid(), signal.SIGKILL)

evolution.search(evolution.SearchConfig(**settings, checkpoint_every_s=0.0), out, resume=resume, progress=progress)
"""


def test_kill9_resumes_to_the_uninterrupted_run(tmp_path):
    ref = search(SearchConfig(**TINY, checkpoint_every_s=0.0), tmp_path / "ref")
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILL_DRIVER, "9", str(out), "new", json.dumps(TINY)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with open(out / "checkpoint.pkl", "rb") as f:
        assert 0 < pickle.load(f)["iteration"] < TINY["iterations"]
    summary = search(SearchConfig(**TINY, checkpoint_every_s=0.0), out, resume=True)
    assert summary["best_structure"] == ref["best_structure"] and summary["score"] == ref["score"]
    for name in ("population.parquet", "history.parquet"):
        a, b = (pd.read_parquet(folder / name) for folder in (tmp_path / "ref", out))
        pd.testing.assert_frame_equal(a.drop(columns=["time_s"], errors="ignore"),
                                      b.drop(columns=["time_s"], errors="ignore"))
    assert os.listdir(out) and not (out / "failed.txt").exists()


def _main(args, capsys):
    with pytest.raises(SystemExit) as exc:
        search_main(args)
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def test_cli_searches_nb201_with_az_nas_and_refuses_early_rejection(tmp_path, capsys):
    args = ["--space", "nb201", "--proxy", "az_nas", "--batch-size", "2", "--population", "3", "--iterations", "4",
            "--no-progress", "--json"]
    code, out, err = _main([*args, "--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    assert json.loads(out)["set_relative"] is True
    code, out, err = _main([*args, "--early-batch", "1", "--out", str(tmp_path / "b")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "scores within a set" in err, err
    assert not (tmp_path / "b" / "checkpoint.pkl").exists()


def test_the_search_scores_meco_at_its_own_input_size():
    scorer = Scorer.for_config(SearchConfig(space="nb201", proxy="meco_opt", batch_size=2))
    assert scorer.proxy(0).resolution == 64  # MeCo's default (the authors' 64x64 image), not the space's 32
    zen = Scorer.for_config(SearchConfig(space="nb201", proxy="zen", batch_size=2))
    assert zen.proxy(0).resolution == 32
    given = Scorer.for_config(SearchConfig(space="nb201", proxy="meco_opt", batch_size=2,
                                           proxy_options={"resolution": 32}))
    assert given.proxy(0).resolution == 32


def test_a_hybrids_terms_keep_their_own_input_size_as_the_benchmark_scores_them():
    from hwnas.search.proxy_bench import DATASETS

    space = get_space(DATASETS["cifar10"])
    text = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|none~1|avg_pool_3x3~2|"
    expression = "log(meco_opt)+0.5*log(synflow)"
    hybrid = Scorer.for_config(SearchConfig(space="nb201", proxy=expression, batch_size=2)).proxy(7)
    assert {n: c.resolution_for(space) for n, c in hybrid.components.items()} == {"meco_opt": 64, "synflow": 32}
    # the value: each term scored on its own with the benchmark's defaults, combined here
    own = {n: get_proxy(n, batch_size=2, seed=7).score(space, space.parse(text)).value for n in ("meco_opt", "synflow")}
    expected = math.log(own["meco_opt"]) + 0.5 * math.log(own["synflow"])
    assert hybrid.score(space, space.parse(text)).value == pytest.approx(expected, rel=1e-9)
    given = Scorer.for_config(SearchConfig(space="nb201", proxy=expression, batch_size=2,
                                           proxy_options={"resolution": 32})).proxy(7)
    assert {c.resolution_for(space) for c in given.components.values()} == {32}


def test_the_default_proxy_is_the_spaces():
    assert prepare(SearchConfig(space="nb201", batch_size=2, population=2, iterations=1)).config.proxy == \
        type(get_space("nb201")).default_proxy
    assert prepare(SearchConfig(space="cifar32", batch_size=2, population=2, iterations=1)).config.proxy == "zen"

def test_help_states_the_nb201_default(capsys):
    code, out, _ = _main(["--help"], capsys)
    assert code == 0 and f"{type(get_space('nb201')).default_proxy} on nb201" in " ".join(out.split())
