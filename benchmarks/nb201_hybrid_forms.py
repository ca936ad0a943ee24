"""Which form of hybrid proxy transfers best? Measured on benchmark scores, fitted on CIFAR-10 cells only.

Reads the scores.csv of `hwnas proxies bench` for CIFAR-10 and, for the same
cells, CIFAR-100 and ImageNet16-120 (e.g. `--networks cifar10`); fits on the
first half of the CIFAR-10 rows (the sample is a seeded random permutation,
so this is a random split) and reports Spearman on the other half, on all
three accuracies. Forms compared, each over the same proxies:

- ``linear``: a weighted sum of per-cell terms (``log`` of the positive,
  heavy-tailed proxies), weights maximising Spearman (``proxy_fit.fit_hybrid``);
  a per-architecture score, usable as an ordinary hybrid expression;
- ``rank-sum``: AZ-NAS's aggregation Σ log(rank / N) with equal weights,
  ranks within the held-out cells (set-relative, nothing fitted);
- ``rank-fit``: the same with non-negative weights fitted on the fitted half.

    python benchmarks/nb201_hybrid_forms.py runs/c10/scores.csv runs/c100/scores.csv runs/in16/scores.csv \\
        --terms 'log(meco_opt);log(synflow);az_expressivity;az_progressivity;az_trainability;log(flops)'
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, stats

from hwnas.search.proxy_bench import spearman
from hwnas.search.proxy_fit import expression_values, fit_hybrid


def log_ranks(x: np.ndarray) -> np.ndarray:
    """log(rank / N) per column, ranks ascending within the rows, NaN ranking last."""
    x = np.where(np.isnan(x), -np.inf, x)
    return np.column_stack([np.log(stats.rankdata(c, method="average") / len(c)) for c in x.T])


def fit_rank_weights(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    lr = log_ranks(x)

    def loss(v):
        return -spearman(lr @ np.abs(v), y)

    best = optimize.minimize(loss, np.ones(x.shape[1]), method="Nelder-Mead",
                             options={"maxiter": 3000, "xatol": 1e-4, "fatol": 1e-6})
    w = np.abs(best.x)
    return w / w.sum()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cifar10")
    ap.add_argument("others", nargs="*", help="scores.csv of the same cells with other accuracies")
    ap.add_argument("--terms", required=True)
    ap.add_argument("--holdout", type=float, default=0.5)
    ap.add_argument("--rows", type=int, default=None, help="use only the first N rows of every table")
    args = ap.parse_args()
    terms = [t.strip() for t in args.terms.split(";") if t.strip()]
    tables = {args.cifar10: pd.read_csv(args.cifar10)}
    for path in args.others:
        tables[path] = pd.read_csv(path)
    if args.rows:
        tables = {k: v.iloc[:args.rows] for k, v in tables.items()}
    c10 = tables[args.cifar10]
    n_fit = len(c10) - int(round(args.holdout * len(c10)))
    held = c10["arch"].iloc[n_fit:].tolist()
    print(f"fitted on CIFAR-10 rows 1-{n_fit}, reported on the {len(held)} others; Spearman")
    header = f"{'form':<48}" + "".join(f"{Path(k).parent.name[-13:]:>14}" for k in tables)
    print(header)

    def row(label, values_of):
        cells = []
        for name, t in tables.items():
            t = t.set_index("arch").loc[held].reset_index()
            cells.append(spearman(np.nan_to_num(values_of(t), nan=-1e300), t["accuracy"]))
        print(f"{label:<48}" + "".join(f"{c:>14.4f}" for c in cells))

    for term in terms:
        row(term, lambda t, term=term: expression_values(t, term))
    fit = fit_hybrid(c10, terms, holdout=args.holdout)
    row("linear (fitted)", lambda t: expression_values(t, fit["expression"]))
    print(f"  linear: {fit['expression']}")
    row("rank-sum (equal weights)", lambda t: log_ranks(np.column_stack(
        [expression_values(t, x) for x in terms])).sum(axis=1))
    fitted = c10.iloc[:n_fit]
    xf = np.column_stack([expression_values(fitted, x) for x in terms])
    w = fit_rank_weights(xf, fitted["accuracy"].to_numpy(float))
    row("rank-fit", lambda t: log_ranks(np.column_stack([expression_values(t, x) for x in terms])) @ w)
    print("  rank-fit weights: " + ", ".join(f"{t} {v:.3f}" for t, v in zip(terms, w)))


if __name__ == "__main__":
    main()
