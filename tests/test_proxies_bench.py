"""Benchmark metrics against hand computations, the score cache, and the CLI."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from hwnas.cli.main import cli
from hwnas.errors import HwnasError
from hwnas.search.proxy_bench import (ScoreCache, kendall, mean_best_rank, metrics, run_bench, spearman,
                                      top_precision)
from hwnas.search.proxy_fit import fit_hybrid, report


def _ranks(v):
    return np.argsort(np.argsort(v)).astype(float)


def test_spearman_and_kendall_by_hand():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(size=30)
    b = a + b
    ra, rb = _ranks(a), _ranks(b)
    assert spearman(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])
    pairs = list(itertools.combinations(range(30), 2))
    s = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in pairs)
    assert kendall(a, b) == pytest.approx(s / len(pairs))


def test_top10_precision_toy():
    truth = np.arange(20.0)
    assert top_precision(truth, truth) == 1.0
    assert top_precision(-truth, truth) == 0.0
    proxy = truth.copy()
    proxy[19], proxy[0] = proxy[0], proxy[19]  # the best is ranked last, the worst first
    assert top_precision(proxy, truth) == 0.5  # top-2 by proxy: {0, 18}; by truth: {19, 18}


def test_mbr_toy():
    truth = np.arange(200.0)
    assert mean_best_rank(truth, truth, subset=100, trials=50) == pytest.approx(1.0)  # always the best: 1/100
    assert mean_best_rank(-truth, truth, subset=100, trials=50) == pytest.approx(100.0)
    flat = np.zeros(200)  # every architecture tied: the mean rank (m+1)/2 of m
    assert mean_best_rank(flat, truth, subset=100, trials=5) == pytest.approx(50.5)


def test_failed_scores_rank_last():
    truth = np.arange(10.0)
    score = truth.copy()
    score[0] = np.nan  # the worst network rejected: ranking unchanged
    m = metrics(score, truth, mbr_trials=10)
    assert m["spearman"] == pytest.approx(1.0) and m["failed"] == 1 and m["n"] == 10


def test_cache_round_trip_ignores_a_torn_line(tmp_path):
    cache = ScoreCache(tmp_path, "nb201", {"proxy": "zen", "seed": 0})
    cache.put("a", 1.5)
    cache.put("b", float("nan"), "rejected")
    with cache.path.open("a") as f:
        f.write('c,2.')  # a write cut short
    again = ScoreCache(tmp_path, "nb201", {"proxy": "zen", "seed": 0})
    assert again.get("a") == (1.5, "")
    assert np.isnan(again.get("b")[0]) and again.get("b")[1] == "rejected"
    assert again.get("c") is None
    assert ScoreCache(tmp_path, "nb201", {"proxy": "zen", "seed": 1}).get("a") is None


def test_run_bench_counts_writes_tables_and_reuses_the_cache(tmp_path):
    out = tmp_path / "out"
    first = run_bench("cifar10", ["flops", "params", "log(flops)+params"], 40, seed=3, out=out,
                      cache_dir=tmp_path / "cache", mbr_trials=20)
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns) == ["arch", "flops", "params", "log(flops)+params", "accuracy"]
    assert len(scores) == 40
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns[:6]) == ["proxy", "spearman", "kendall", "top10_precision", "mbr", "n"]
    assert summary["n"].tolist() == [40, 40, 40]
    # a larger sample with the same seed extends the smaller one
    bigger = run_bench("cifar10", ["flops"], 60, seed=3, cache_dir=tmp_path / "cache",
                       mbr_trials=20)
    assert bigger.scores["arch"].tolist()[:40] == first.scores["arch"].tolist()
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 2  # flops and params; the hybrid is computed from them
    lines = sum(1 for _ in open([f for f in files if ".flops." in f.name][0]))
    assert lines == 61  # header + 60 architectures, the first 40 not scored twice


def test_fit_hybrid_recovers_a_combination():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=200), rng.normal(size=200)
    df = pd.DataFrame({"zen": a, "flops": np.exp(b), "accuracy": a + 2 * b})
    fit = fit_hybrid(df, ["zen", "log(flops)"])
    assert fit["spearman"] > 0.99
    assert fit["weights"]["log(flops)"] == pytest.approx(2.0, rel=0.1)


def test_seconds_per_eval_is_the_median_of_the_recorded_times(tmp_path):
    from hwnas.models.spaces.nb201 import accuracy_table
    from hwnas.search.proxies import get_proxy
    from hwnas.search.proxy_bench import sample_archs

    archs = sample_archs(5, 0, accuracy_table())
    settings = get_proxy("params").settings()
    cache = ScoreCache(tmp_path, "nb201", settings)
    flops = ScoreCache(tmp_path, "nb201", get_proxy("flops").settings())
    for i, (a, t) in enumerate(zip(archs, [0.5, 0.1, 0.4, 0.2, 0.3])):
        cache.put(a, float(i + 1), "", t)
        flops.put(a, 1.0, "", 1.0 + i)
    result = run_bench("cifar10", ["params", "params+flops"], 5, seed=0, cache_dir=tmp_path, mbr_trials=5)
    # a hybrid costs its components, cell by cell: 1.5, 2.1, 3.4, 4.2, 5.3
    assert result.summary["s_per_eval"].tolist() == pytest.approx([0.3, 3.4])
    assert result.scores["params"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]  # read from the cache, not recomputed
    # a cache written before times were recorded (three fields a row) still reads; its time is unknown
    old = tmp_path / "old"
    old.mkdir()
    path = ScoreCache(old, "nb201", settings).path
    path.write_text("arch,value,error\n" + "".join(f"{a},{i}.0,\n" for i, a in enumerate(archs)))
    again = run_bench("cifar10", ["params"], 5, seed=0, cache_dir=old, mbr_trials=5)
    assert again.scores["params"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert np.isnan(again.summary["s_per_eval"][0])


def test_networks_of_another_data_set_against_this_ones_accuracies(tmp_path):
    from hwnas.models.spaces.nb201 import accuracy_table

    mixed = run_bench("cifar100", ["flops"], 12, seed=4, cache_dir=None, networks="cifar10", mbr_trials=5)
    c10 = run_bench("cifar10", ["flops"], 12, seed=4, cache_dir=None, mbr_trials=5)
    c100 = run_bench("cifar100", ["flops"], 12, seed=4, cache_dir=None, mbr_trials=5)
    assert mixed.networks == "cifar10"
    assert mixed.scores["flops"].tolist() == c10.scores["flops"].tolist()
    assert mixed.scores["flops"].tolist() != c100.scores["flops"].tolist()  # a 100-class head has more FLOPs
    table = accuracy_table().set_index("arch")
    assert mixed.scores["accuracy"].tolist() == table.loc[mixed.scores["arch"], "cifar100"].tolist()


def test_az_nas_ranks_within_the_sample(tmp_path):
    result = run_bench("cifar10", ["az_nas", "az_expressivity", "az_progressivity", "az_trainability", "flops"], 6,
                       seed=0, cache_dir=tmp_path, batch_size=4, mbr_trials=5)
    s = result.scores
    # by hand: sum over the four components of log(ascending rank / n); a rejected component (NaN) ranks last
    expected = sum(np.log(s[c].rank(method="average", na_option="top") / len(s))
                   for c in ("az_expressivity", "az_progressivity", "az_trainability", "flops"))
    assert s["az_nas"].to_numpy() == pytest.approx(expected.to_numpy())
    assert result.summary.set_index("proxy").loc["az_nas", "s_per_eval"] > 0
    with pytest.raises(HwnasError, match="within a set"):  # a hybrid's term is per architecture
        run_bench("cifar10", ["az_nas+flops"], 6, seed=0, cache_dir=tmp_path)


def test_sample_all_is_every_cell():
    from click import BadParameter

    from hwnas.cli.proxies_cmd import SampleSize

    assert SampleSize().convert("all", None, None) == 15625
    assert SampleSize().convert("3000", None, None) == 3000
    with pytest.raises(BadParameter):
        SampleSize().convert("15626", None, None)


def test_fit_with_holdout_reports_the_rows_it_did_not_see(tmp_path):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=300), rng.normal(size=300)
    acc = a + 2 * b + rng.normal(size=300)
    df = pd.DataFrame({"arch": [f"c{i}" for i in range(300)], "zen": a, "flops": np.exp(b), "accuracy": acc})
    fit = fit_hybrid(df, ["zen", "log(flops)"], holdout=0.25)
    assert fit["fitted_rows"] == 225 and fit["held_out_archs"] == [f"c{i}" for i in range(225, 300)]
    w = fit["weights"]["log(flops)"]
    held = df.iloc[225:]
    by_hand = np.corrcoef(_ranks(held["zen"] + w * b[225:]), _ranks(held["accuracy"]))[0, 1]
    assert fit["held_out"]["spearman"] == pytest.approx(by_hand, abs=1e-4)  # the printed weights: 6 digits
    # the same expression on another table, restricted to the held-out cells
    other = df.assign(accuracy=-df["accuracy"])
    assert report(other, fit["expression"], archs=fit["held_out_archs"])["spearman"] == pytest.approx(
        -fit["held_out"]["spearman"])


def test_cli_fit_holdout_and_report(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.normal(size=60)
    path = tmp_path / "scores.csv"
    pd.DataFrame({"arch": [f"c{i}" for i in range(60)], "zen": a, "accuracy": a}).to_csv(path, index=False)
    res = CliRunner().invoke(cli, ["proxies", "fit", str(path), "--terms", "zen", "--holdout", "0.5", "--report",
                                   str(path), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["reports"]
    assert [(r["cells"], r["n"]) for r in rows] == [("fitted", 30), ("held out", 30), ("all", 60), ("held out", 30)]
    assert all(r["spearman"] == pytest.approx(1.0) for r in rows)


def test_cli_bench_and_score(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["proxies", "bench", "--dataset", "cifar100", "--proxies", "flops,params", "--sample",
                              "30", "--cache", str(tmp_path), "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert [r["proxy"] for r in data["summary"]] == ["flops", "params"]
    assert "Gaussian" in data["note"]
    res = runner.invoke(cli, ["score", "--proxy", "params", "--nb201",
                              "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["score"] > 0


def test_cli_errors_are_one_line_exit_2(capsys):
    from hwnas.cli.main import main

    for args in (["score", "--proxy", "zen+", "SuperConvK3BNRELU(3,8,1,1)"],
                 ["score", "--proxy", "nosuch", "SuperConvK3BNRELU(3,8,1,1)"],
                 ["score", "--proxy", "zen"],
                 ["score", "--proxy", "zen", "--set", "oops", "SuperConvK3BNRELU(3,8,1,1)"]):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("hwnas: error:")
