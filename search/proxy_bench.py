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
  proxy (m = 100), 50 % a random one; lower is better.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy import optimize, stats

from hwnas.atomic import atomic_write
from hwnas.errors import HwnasError, ProxyError, one_line
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
    """Append-only CSV of ``arch,value,error`` per (space, proxy settings); a torn last line is ignored."""

    def __init__(self, directory: Path | None, space_name: str, settings: dict):
        key = json.dumps({"space": space_name, **settings}, sort_keys=True, default=str)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        label = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(settings.get("proxy")))[:40]
        self.path = None if directory is None else Path(directory) / f"{space_name}.{label}.{digest}.csv"
        self.key = key
        self.values: dict[str, tuple[float, str]] = {}
        if self.path is not None and self.path.exists():
            with self.path.open(newline="") as f:
                rows = list(csv.reader(f))
            for row in rows[1:]:
                if len(row) != 3:
                    continue
                try:
                    self.values[row[0]] = (float(row[1]) if row[1] else float("nan"), row[2])
                except ValueError:
                    continue

    def get(self, arch: str):
        return self.values.get(arch)

    def put(self, arch: str, value: float, error: str = "") -> None:
        self.values[arch] = (value, error)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["arch", "value", "error"])
            w.writerow([arch, "" if not math.isfinite(value) else repr(value), error])
            f.flush()


# -- the benchmark ---------------------------------------------------------------
@dataclass
class BenchResult:
    dataset: str
    scores: pd.DataFrame  # arch, one column per proxy, accuracy
    summary: pd.DataFrame  # proxy, spearman, kendall, top10_precision, mbr, n, failed
    note: str = INPUT_NOTE


def sample_archs(n: int, seed: int, table: pd.DataFrame) -> list[str]:
    """The first ``n`` cells of a seeded permutation of the benchmark (samples are nested)."""
    if n < 3 or n > len(table):
        raise HwnasError(f"sample must be between 3 and {len(table)}, got {n}")
    order = list(range(len(table)))
    random.Random(seed).shuffle(order)
    return [table["arch"].iloc[i] for i in order[:n]]


def _components(proxies: list[str]) -> tuple[list[str], dict]:
    """The registered proxies to score and the parsed hybrid expressions."""
    needed: list[str] = []
    hybrids = {}
    from hwnas.search.proxies import proxy_names

    registered = set(proxy_names())
    for p in proxies:
        if p in registered:
            needed.append(p)
        else:
            tree = parse_expression(p)
            hybrids[p] = tree
            needed.extend(referenced_names(tree))
    return list(dict.fromkeys(needed)), hybrids


def run_bench(dataset: str, proxies: list[str], sample: int, seed: int = 0, *, proxy_seed: int = 0,
              out: str | Path | None = None, cache_dir: str | Path | None = "default",
              progress: Callable[[int, int], None] | None = None, mbr_subset: int = 100, mbr_trials: int = 1000,
              **options) -> BenchResult:
    """Score a seeded NAS-Bench-201 sample with every proxy and compare with the trained accuracies.

    ``options`` are the proxies' common options (resolution, batch_size,
    repeat, device, dtype); ``proxy_seed`` seeds the proxies; ``progress`` is
    called with (scores computed, scores to compute) when there is any to compute.
    """
    if dataset not in DATASETS:
        raise HwnasError(f"unknown data set {dataset!r}; expected one of: {', '.join(DATASETS)}")
    if not proxies:
        raise HwnasError("no proxies given; expected e.g. --proxies zen,synflow,naswot")
    space = get_space(DATASETS[dataset])
    from hwnas.models.spaces.nb201 import accuracy_table

    table = accuracy_table()
    truth = dict(zip(table["arch"], table[dataset]))
    archs = sample_archs(sample, seed, table)
    needed, hybrids = _components(proxies)
    if cache_dir == "default":
        cache_dir = default_cache_dir()
    scorers = {p: get_proxy(p, seed=proxy_seed, **options) for p in needed}
    caches = {p: ScoreCache(cache_dir, space.name, scorers[p].settings()) for p in needed}

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
            try:
                caches[p].put(a, scorers[p].score(space, arch).value)
            except ProxyError as err:
                caches[p].put(a, float("nan"), str(err))
            done += 1
            if progress:
                progress(done, todo)

    data = {"arch": archs}
    for p in proxies:
        if p in hybrids:
            col = []
            for a in archs:
                vals = {n: caches[n].get(a)[0] for n in referenced_names(hybrids[p])}
                try:
                    if not all(math.isfinite(v) for v in vals.values()):
                        raise ProxyError("a component failed")
                    col.append(evaluate_expression(hybrids[p], vals, p))
                except ProxyError:
                    col.append(float("nan"))
            data[p] = col
        else:
            data[p] = [caches[p].get(a)[0] for a in archs]
    data["accuracy"] = [truth[a] for a in archs]
    scores = pd.DataFrame(data)
    rows = [{"proxy": p, **metrics(scores[p], scores["accuracy"], mbr_subset, mbr_trials, seed)} for p in proxies]
    summary = pd.DataFrame(rows, columns=["proxy", "spearman", "kendall", "top10_precision", "mbr", "n", "failed"])
    result = BenchResult(dataset, scores, summary)
    if out is not None:
        write_result(result, Path(out))
    return result


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda f: df.to_csv(f, index=False), binary=False)


def write_result(result: BenchResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _atomic_csv(result.scores, out / "scores.csv")
    _atomic_csv(result.summary, out / "summary.csv")


# -- fitting a hybrid ----------------------------------------------------------------
def read_scores(path, target: str = "accuracy") -> pd.DataFrame:
    """A benchmark's scores.csv (as ``run_bench`` writes it); HwnasError if it is no such table."""
    try:
        scores = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        reason = one_line(err, 200)
        raise HwnasError(f"{path} is not a readable CSV table ({reason}); expected the scores.csv of "
                         "`hwnas proxies bench --out`") from None
    if target not in scores.columns:
        raise HwnasError(f"{path} has no {target!r} column; expected the scores.csv of `hwnas proxies bench --out`")
    return scores


def fit_hybrid(scores: pd.DataFrame, terms: list[str], target: str = "accuracy") -> dict:
    """Weights of a linear combination of ``terms`` (expressions over the score columns) maximising
    Spearman's ρ with ``target`` on ``scores``; returns the expression and its fitted ρ.

    Start: least squares of the accuracy ranks on the standardised terms;
    then Nelder–Mead on −ρ. Weights are rescaled to raw units and normalised
    so that the first term's weight is 1.
    """
    if not terms:
        raise HwnasError("no terms to fit; expected ';'-separated expressions over the score columns")
    trees = [parse_expression(t) for t in terms]
    cols = []
    for t, tree in zip(terms, trees):
        names = referenced_names(tree)
        col = []
        for _, row in scores.iterrows():
            try:
                col.append(evaluate_expression(tree, {n: float(row[n]) for n in names}, t))
            except (ProxyError, KeyError, ValueError):
                col.append(float("nan"))
        cols.append(col)
    x = np.array(cols, float).T
    try:
        y = scores[target].to_numpy(float)
    except (ValueError, TypeError):
        raise HwnasError(f"the {target!r} column is not numeric; expected the scores.csv of "
                         "`hwnas proxies bench`") from None
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(y) < len(terms) + 3:
        raise HwnasError(f"too few complete rows ({len(y)}) to fit {len(terms)} terms")
    with np.errstate(all="ignore"):  # an overflow is reported below, as one error
        mu, sd = x.mean(axis=0), x.std(axis=0)
        sd[sd == 0] = 1.0
        z = (x - mu) / sd
    if not np.isfinite(z).all():  # LAPACK would print its own complaint before failing
        raise HwnasError("the terms cannot be fitted: their values overflow when standardised; expected terms of "
                         "moderate size (take log() of large ones)")
    ranks = stats.rankdata(y)
    try:
        w0, *_ = np.linalg.lstsq(np.c_[z, np.ones(len(z))], ranks, rcond=None)
    except np.linalg.LinAlgError as err:
        raise HwnasError(f"the terms cannot be fitted ({err}); expected terms with finite, varying values") from None
    w0 = w0[:-1]

    def loss(w):
        return -spearman(z @ w, y)

    best = optimize.minimize(loss, w0, method="Nelder-Mead",
                             options={"maxiter": 2000, "xatol": 1e-4, "fatol": 1e-6})
    w = best.x if -best.fun >= -loss(w0) else w0
    raw = w / sd
    if raw[0] != 0:
        raw = raw / abs(raw[0])
    expression = "+".join(f"({c:.6g})*{t}" if i else f"{c:.6g}*{t}" for i, (c, t) in enumerate(zip(raw, terms)))
    expression = expression.replace("+(-", "-(")
    return {"expression": expression, "weights": dict(zip(terms, map(float, raw))),
            "spearman": spearman(x @ raw, y), "n": int(len(y))}


__all__ = ["run_bench", "fit_hybrid", "metrics", "spearman", "kendall", "top_precision", "mean_best_rank",
           "ScoreCache", "BenchResult", "DATASETS", "INPUT_NOTE"]
