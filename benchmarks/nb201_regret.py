"""Regret of the NAS-Bench-201 search per proxy, under the tune table's two budgets, on 5 fresh seeds.

    taskset -c 1 nice -n 19 python benchmarks/nb201_regret.py --proxies zen,synflow,naswot,meco_opt,az_nas \\
        --seeds 100,101,102,103,104 --out runs/nb201-regret

Every proxy runs at the same search settings, the README tune section's tuned ones per budget (1 ms: population
36, 147 iterations, proxy batch 8; 0.5 ms: population 4, 141 iterations, batch 4), space nb201, the shipped CPU
profile ``ort-cpu1-b1-nb201``. The regret of the returned cell is read for CIFAR-10 and, for the same searches
(not retuned), ImageNet16-120 (``hwnas.search.regret``). Resumable: a finished search (its summary.json) is read
back, an interrupted one resumed from its checkpoint, and every proxy evaluation goes through one score cache
(OUT/score-cache.db). Writes OUT/runs.csv (one row per search) and OUT/table.md; prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from hwnas.atomic import atomic_write
from hwnas.search import score_cache
from hwnas.search.budgets import Budgets
from hwnas.search.checkpoint import load_checkpoint
from hwnas.search.evolution import SearchConfig, search
from hwnas.search.regret import Regret

PROFILE = "ort-cpu1-b1-nb201"
# budget (ms) -> (population, iterations, proxy batch): the tuned settings of the README's tune section
SETTINGS = {1.0: (36, 147, 8), 0.5: (4, 141, 4)}
DATASETS = ("cifar10", "imagenet16")


def one_search(out: Path, proxy: str, budget: float, seed: int) -> dict:
    population, iterations, batch = SETTINGS[budget]
    folder = out / f"{budget:g}ms" / proxy / f"seed-{seed}"
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        config = SearchConfig(space="nb201", proxy=proxy, batch_size=batch, population=population,
                              iterations=iterations, seed=seed, budgets=Budgets(latency_ms=budget), profile=PROFILE,
                              checkpoint_every_s=20.0)
        search(config, folder, resume=load_checkpoint(folder) is not None)
    summary = json.loads(summary_path.read_text())
    history = pd.read_parquet(folder / "history.parquet", columns=["accepted", "reject_reason"])
    scored = history["accepted"] | history["reject_reason"].fillna("").str.startswith("proxy")
    row = {"proxy": proxy, "budget_ms": budget, "seed": seed, "population": population, "iterations": iterations,
           "batch_size": batch, "best_structure": summary["best_structure"], "evaluations": int(scored.sum()),
           "elapsed_s": summary.get("elapsed_s")}
    for dataset in DATASETS:
        reference = Regret.under("nb201", dataset, budget, PROFILE)
        row[f"{dataset}_accuracy"] = reference.accuracy(summary["best_structure"])
        row[f"{dataset}_regret"] = reference.of(summary["best_structure"])
        row[f"{dataset}_best_possible"] = reference.best_accuracy
    return row


def table(runs: pd.DataFrame) -> str:
    lines = ["| budget | proxy | seeds | CIFAR-10 regret (mean ± sd) | CIFAR-10 found (mean) | ImageNet16-120 regret "
             "(mean ± sd) | ImageNet16-120 found (mean) | proxy evaluations / search |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (budget, proxy), g in runs.groupby(["budget_ms", "proxy"], sort=False):
        cells = [f"{budget:g} ms", proxy, str(len(g))]
        for d in DATASETS:
            sd = g[f"{d}_regret"].std(ddof=1) if len(g) > 1 else 0.0
            cells += [f"{g[f'{d}_regret'].mean():.2f} ± {sd:.2f}", f"{g[f'{d}_accuracy'].mean():.2f}"]
        cells += [f"{g['evaluations'].mean():.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxies", default="zen,synflow,naswot,meco_opt,az_nas")
    ap.add_argument("--seeds", default="100,101,102,103,104")
    ap.add_argument("--budgets", default="1,0.5")
    ap.add_argument("--out", default="runs/nb201-regret")
    ap.add_argument("--table-only", action="store_true", help="only read back the searches already finished")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budgets = [float(b) for b in args.budgets.split(",")]
    if set(budgets) - set(SETTINGS):
        sys.exit(f"--budgets: expected some of {', '.join(f'{b:g}' for b in SETTINGS)}")
    rows = []
    with score_cache.use(score_cache.ScoreCache(out / "score-cache.db")):
        for budget in budgets:
            for proxy in args.proxies.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    finished = (out / f"{budget:g}ms" / proxy / f"seed-{seed}" / "summary.json").is_file()
                    if args.table_only and not finished:
                        continue
                    rows.append(one_search(out, proxy, budget, seed))
                    print(json.dumps(rows[-1]), flush=True)
    runs = pd.DataFrame(rows)
    name = ("table-only-" if args.table_only else "runs-") + args.proxies.replace(",", "-") + ".csv"
    atomic_write(out / name, lambda f: runs.to_csv(f, index=False), binary=False)
    text = table(runs)
    atomic_write(out / name.replace(".csv", ".md"), lambda f: f.write(text), binary=False)
    print(text)


if __name__ == "__main__":
    main()
