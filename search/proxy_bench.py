"""How well do the proxies rank real, trained networks? A benchmark on NAS-Bench-201.

A seeded sample of NAS-Bench-201 cells is scored by each proxy and compared
with the benchmark's trained accuracies (packaged as data; no training data
is needed: the proxies see Gaussian inputs, never real images). Per proxy:

- ``spearman`` and ``kendall`` (τ-b) rank correlations with the accuracy;
- ``top10_precision``: the fraction of the proxy's top 10 % that are among
  the top 10 % by accuracy (ties in the proxy broken by sample order);
- ``mbr``: mean best rank, after NAS-Bench-Zero: draw ``mbr_trials`` random
  subsets of ``mbr_subset`` architectures; in each, the architecture the
  proxy ranks first has an accuracy rank r among the m of the subset
  (1 = most accurate; a tie at the top of the proxy counts the mean rank of
  the tied ones); mbr is the mean of r/m in percent. 1 % would be a perfect
  proxy (m = 100), 50 % a random one; lower is better;
- ``s_per_eval``: the median CPU seconds (``time.process_time``, so a frozen
  or shared core does not inflate it) of one cell's evaluation, recorded in
  the cache when the score was computed (NaN for scores cached before that).

A set-relative proxy (``az_nas``) ranks each cell within the benchmarked
sample, as its authors' NAS-Bench-201 figures do; its components are scored
and cached as ordinary proxies, so its value for a cell depends on the
sample. ``networks`` scores the networks built for another data set (the
same cells) against this data set's accuracies.

Scores are cached on disk, one append-only CSV per space and proxy settings,
so a re-run, another data set with the same networks, or a larger sample
reuses every score already computed. Samples are nested: the first N
architectures of a seed's permutation are the sample of size N.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

from hwnas.atomic import atomic_write
from hwnas.errors import HwnasError, ProxyError
from hwnas.models.spaces.base import get_space
from hwnas.search.proxies import get_proxy
from hwnas.search.proxies.hybrid import evaluate_expression, parse_expression, referenced_names

DATASETS = {"cifar10": "nb201", "cifar100": "nb201-cifar100", "imagenet16": "nb201-imagenet16"}
INPUT_NOTE = ("proxies see Gaussian N(0,1) inputs (all-ones for synflow), not the data set's images; "
              "ground truth: NAS-Bench-201 trained accuracies")


def default_cache_dir() -> Path:
    root = os.environ.get("HWNAS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "hwnas")
    return Path(root) / "proxy-scores"


# -- metrics -------------------------------------------------------------------
def spearman(score, truth) -> float:
    return float(stats.spearmanr(score, truth).statistic)


def kendall(score, truth) -> float:
    return float(stats.kendalltau(score, truth).statistic)


def top_precision(score, truth, fraction: float = 0.1) -> float:
    """Share of the proxy's top ``fraction`` that are in the top ``fraction`` by accuracy."""
    score, truth = np.asarray(score, float), np.asarray(truth, float)
    k = max(1, math.ceil(fraction * len(score)))
    top_proxy = np.argsort(-score, kind="stable")[:k]
    top_truth = np.argsort(-truth, kind="stable")[:k]
    return len(set(top_proxy) & set(top_truth)) / k


def mean_best_rank(score, truth, subset: int = 100, trials: int = 1000, seed: int = 0) -> float:
    """NAS-Bench-Zero-style mBR in percent (lower is better); see the module docstring."""
    score, truth = np.asarray(score, float), np.asarray(truth, float)
    n = len(score)
    m = min(subset, n)
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(trials):
        idx = rng.choice(n, size=m, replace=False)
        s, t = score[idx], truth[idx]
        ranks = stats.rankdata(-t, method="average")  # 1 = most accurate
        best = s == s.max()
        total += ranks[best].mean() / m
    return 100.0 * total / trials


def metrics(score, truth, mbr_subset: int = 100, mbr_trials: int = 1000, seed: int = 0) -> dict:
    """The four metrics over all architectures; a rejected one (no finite score) ranks below every other,
    as the search treats it. ``failed`` counts them."""
    score, truth = np.asarray(score, float), np.asarray(truth, float)
    ok = np.isfinite(score)
    failed = int((~ok).sum())
    if ok.sum() < 3:
        nan = float("nan")
        return {"spearman": nan, "kendall": nan, "top10_precision": nan, "mbr": nan, "n": len(score),
                "failed": failed}
    s = np.where(ok, score, score[ok].min() - 1.0)
    return {"spearman": spearman(s, truth), "kendall": kendall(s, truth), "top10_precision": top_precision(s, truth),
            "mbr": mean_best_rank(s, truth, mbr_subset, mbr_trials, seed), "n": int(len(s)), "failed": failed}


# -- the score cache -------------------------------------------------------------
class ScoreCache:
    """Append-only CSV of ``arch,value,error,seconds`` per (space, proxy settings); a torn last line is ignored.

    ``seconds`` is the CPU time (``time.process_time``) of the evaluation, so a frozen or shared core does not
    inflate it; rows written before it was recorded have three fields (no time)."""

    def __init__(self, directory: Path | None, space_name: str, settings: dict):
        key = json.dumps({"space": space_name, **settings}, sort_keys=True, default=str)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        label = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(settings.get("proxy")))[:40]
        self.path = None if directory is None else Path(directory) / f"{space_name}.{label}.{digest}.csv"
        self.key = key
        self.values: dict[str, tuple[float, str]] = {}
        self.seconds: dict[str, float] = {}
        if self.path is not None and self.path.exists():
            with self.path.open(newline="") as f:
                rows = list(csv.reader(f))
            for row in rows[1:]:
                if len(row) not in (3, 4):
                    continue
                try:
                    self.values[row[0]] = (float(row[1]) if row[1] else float("nan"), row[2])
                    if len(row) == 4 and row[3]:
                        self.seconds[row[0]] = float(row[3])
                except ValueError:
                    continue

    def get(self, arch: str):
        return self.values.get(arch)

    def put(self, arch: str, value: float, error: str = "", seconds: float | None = None) -> None:
        self.values[arch] = (value, error)
        if seconds is not None:
            self.seconds[arch] = seconds
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["arch", "value", "error", "seconds"])
            w.writerow([arch, "" if not math.isfinite(value) else repr(value), error,
                        "" if seconds is None else f"{seconds:.6g}"])
            f.flush()


# -- the benchmark ---------------------------------------------------------------
@dataclass
class BenchResult:
    dataset: str
    scores: pd.DataFrame  # arch, one column per proxy, accuracy
    summary: pd.DataFrame  # proxy, spearman, kendall, top10_precision, mbr, n, failed, s_per_eval
    note: str = INPUT_NOTE
    networks: str = ""  # the data set whose networks were scored (``dataset`` unless told otherwise)


def sample_archs(n: int, seed: int, table: pd.DataFrame) -> list[str]:
    """The first ``n`` cells of a seeded permutation of the benchmark (samples are nested)."""
    if n < 3 or n > len(table):
        raise HwnasError(f"sample must be between 3 and {len(table)}, got {n}")
    order = list(range(len(table)))
    random.Random(seed).shuffle(order)
    return [table["arch"].iloc[i] for i in order[:n]]


def _set_relative(name: str) -> dict | None:
    """For a registered set-relative proxy, its components' registered per-architecture proxies; else None."""
    from hwnas.search.proxies.base import SetRelativeProxy, proxy_class

    try:
        cls = proxy_class(name)
    except KeyError:
        return None
    if not issubclass(cls, SetRelativeProxy):
        return None
    parts = cls.component_proxies
    if not parts:
        raise HwnasError(f"set-relative proxy {name!r} names no per-architecture proxies for its components; "
                         "the benchmark cannot score it")
    return dict(parts)


def _plan(proxies: list[str]) -> tuple[list[str], dict, dict, dict]:
    """The registered per-architecture proxies to score; the parsed hybrid expressions; the set-relative proxies
    with their component proxies; and, per column, the registered proxies whose evaluations it costs."""
    from hwnas.search.proxies import proxy_names

    registered = set(proxy_names())
    hybrids, relative, costs = {}, {}, {}
    for p in proxies:
        parts = _set_relative(p) if p in registered else None
        if parts is not None:
            relative[p] = parts
            costs[p] = list(dict.fromkeys(parts.values()))
        elif p in registered:
            costs[p] = [p]
        else:
            hybrids[p] = parse_expression(p)
            costs[p] = referenced_names(hybrids[p])
            inner = [n for n in costs[p] if _set_relative(n) is not None]
            if inner:
                raise HwnasError(f"{inner[0]!r} ranks an architecture within a set and cannot be a term of the "
                                 f"expression {p!r}; expected its components (docs/proxies.md)")
    needed = list(dict.fromkeys(n for cost in costs.values() for n in cost))
    return needed, hybrids, relative, costs


def _score_all(space, archs, needed, scorers, caches, progress) -> None:
    """Score every (architecture, proxy) not in the caches yet, timing each evaluation in CPU seconds."""
    todo = sum(1 for a in archs for p in needed if caches[p].get(a) is None)
    progress = progress if todo else None
    done = 0
    if progress:
        progress(done, todo)
    for a in archs:
        arch = None
        for p in needed:
            if caches[p].get(a) is not None:
                continue
            arch = arch if arch is not None else space.parse(a)
            start = time.process_time()
            try:
                value, error = scorers[p].score(space, arch).value, ""
            except ProxyError as err:
                value, error = float("nan"), str(err)
            caches[p].put(a, value, error, time.process_time() - start)
            done += 1
            if progress:
                progress(done, todo)


def _hybrid_column(tree, text: str, values: dict, n: int) -> list[float]:
    col = []
    for i in range(n):
        vals = {name: values[name][i] for name in referenced_names(tree)}
        try:
            if not all(math.isfinite(v) for v in vals.values()):
                raise ProxyError("a component failed")
            col.append(evaluate_expression(tree, vals, text))
        except ProxyError:
            col.append(float("nan"))
    return col


def seconds_per_eval(caches: dict, names: list[str], archs: list[str]) -> float:
    """Median over the cells of the CPU seconds their evaluation by ``names`` took (summed over the names);
    only cells timed for every name count (NaN if none was: scores cached before times were recorded)."""
    per_cell = [sum(caches[n].seconds[a] for n in names) for a in archs
                if all(a in caches[n].seconds for n in names)]
    return float(np.median(per_cell)) if per_cell else float("nan")


def run_bench(dataset: str, proxies: list[str], sample: int, seed: int = 0, *, proxy_seed: int = 0,
              out: str | Path | None = None, cache_dir: str | Path | None = "default",
              progress: Callable[[int, int], None] | None = None, mbr_subset: int = 100, mbr_trials: int = 1000,
              networks: str | None = None, **options) -> BenchResult:
    """Score a seeded NAS-Bench-201 sample with every proxy and compare with the trained accuracies.

    ``options`` are the proxies' common options (resolution, batch_size,
    repeat, device, dtype); ``proxy_seed`` seeds the proxies; ``progress`` is
    called with (scores computed, scores to compute) when there is any to compute.
    ``networks`` scores the networks built for another data set (the same
    cells; e.g. ``cifar10``: 32×32 inputs, 10 classes) against ``dataset``'s
    accuracies. A set-relative proxy (``az_nas``) ranks each cell within
    the sample, as its authors do; its components are scored and cached as
    ordinary proxies.
    """
    for name in (dataset, networks or dataset):
        if name not in DATASETS:
            raise HwnasError(f"unknown data set {name!r}; expected one of: {', '.join(DATASETS)}")
    if not proxies:
        raise HwnasError("no proxies given; expected e.g. --proxies zen,synflow,naswot")
    networks = networks or dataset
    space = get_space(DATASETS[networks])
    from hwnas.models.spaces.nb201 import accuracy_table

    table = accuracy_table()
    truth = dict(zip(table["arch"], table[dataset]))
    archs = sample_archs(sample, seed, table)
    needed, hybrids, relative, costs = _plan(proxies)
    if cache_dir == "default":
        cache_dir = default_cache_dir()
    scorers = {p: get_proxy(p, seed=proxy_seed, **options) for p in needed}
    caches = {p: ScoreCache(cache_dir, space.name, scorers[p].settings()) for p in needed}
    _score_all(space, archs, needed, scorers, caches, progress)

    values = {p: [caches[p].get(a)[0] for a in archs] for p in needed}
    for name, parts in relative.items():
        # a rejected component (NaN here: its ProxyError) ranks last, as -inf does in the aggregation
        rows = [{k: (-math.inf if math.isnan(values[p][i]) else values[p][i]) for k, p in parts.items()}
                for i in range(len(archs))]
        values[name] = get_proxy(name, seed=proxy_seed, **options).aggregate(rows)
    data = {"arch": archs}
    for p in proxies:
        data[p] = _hybrid_column(hybrids[p], p, values, len(archs)) if p in hybrids else values[p]
    data["accuracy"] = [truth[a] for a in archs]
    scores = pd.DataFrame(data)
    rows = [{"proxy": p, **metrics(scores[p], scores["accuracy"], mbr_subset, mbr_trials, seed),
             "s_per_eval": seconds_per_eval(caches, costs[p], archs)} for p in proxies]
    summary = pd.DataFrame(rows, columns=["proxy", "spearman", "kendall", "top10_precision", "mbr", "n", "failed",
                                          "s_per_eval"])
    result = BenchResult(dataset, scores, summary, networks=networks)
    if out is not None:
        write_result(result, Path(out))
    return result


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda f: df.to_csv(f, index=False), binary=False)


def write_result(result: BenchResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _atomic_csv(result.scores, out / "scores.csv")
    _atomic_csv(result.summary, out / "summary.csv")


__all__ = ["run_bench", "metrics", "spearman", "kendall", "top_precision", "mean_best_rank", "seconds_per_eval",
           "ScoreCache", "BenchResult", "DATASETS", "INPUT_NOTE"]
