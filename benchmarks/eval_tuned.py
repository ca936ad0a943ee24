"""Regret of tuned search settings on fresh seeds, beside the papers' settings with the same search budget.

    taskset -c 1 python benchmarks/eval_tuned.py benchmarks/results/tune/tune-nb201-1ms.json \
        --seeds 100,101,102,103,104 --out runs/eval-tuned-1ms

For every data set (default cifar10 and imagenet16: ImageNet16-120 without retuning, same searches on the
nb201 space and its latency profile, regret from that data set's accuracies) it runs one search per seed with
each setting of ``--settings`` and prints the mean and standard deviation of the regret and the mean proxy
evaluations, as JSON lines and as Markdown table rows. Every setting keeps the tuned population, iterations
and proxy batch size, so the proxies are compared at equal search budget:

    tuned               the best.json as it is
    zen                 Zen-score alone
    incorporated-log    Incorporated-NAS (w_z, w_d) = (0.9, 0.1), F = log
    incorporated-sqrt   Incorporated-NAS (w_z, w_d) = (0.8, 0.2), F = sqrt

Proxy scores go through OUT/NAME/score-cache.db (NAME: the best.json's folder, or its file name when it is
not called best.json), so a rerun after an interruption repeats the searches but not the scoring.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

from hwnas.search import score_cache
from hwnas.search.regret import Regret
from hwnas.search.tune import TuneConfig, run_searches

# setting -> (label in the table, what it changes in the tuned hyperparameters)
SETTINGS = {
    "tuned": ("tuned", {}),
    "zen": ("Zen-score alone", {"proxy": "zen"}),
    "incorporated-log": ("Incorporated (0.9, 0.1, log)",
                         {"proxy": "incorporated", "wz": 0.9, "wd": 0.1, "transform": "log"}),
    "incorporated-sqrt": ("Incorporated (0.8, 0.2, sqrt)",
                          {"proxy": "incorporated", "wz": 0.8, "wd": 0.2, "transform": "sqrt"}),
}
KEYS = ("proxy", "population", "iterations", "batch_size", "wz", "wd", "transform")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("best", help="best.json of hwnas tune")
    ap.add_argument("--seeds", default="100,101,102,103,104")
    ap.add_argument("--datasets", default="cifar10,imagenet16")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"some of: {', '.join(SETTINGS)}")
    ap.add_argument("--out", default="runs/eval-tuned")
    args = ap.parse_args()
    chosen = args.settings.split(",")
    unknown = [s for s in chosen if s not in SETTINGS]
    if unknown:
        sys.exit(f"eval_tuned: unknown setting {', '.join(unknown)}; expected some of: {', '.join(SETTINGS)}")
    best = json.loads(Path(args.best).read_text())
    seeds = [int(s) for s in args.seeds.split(",")]
    where = Path(args.best)
    out = Path(args.out) / (where.parent.name if where.name == "best.json" else where.stem)
    out.mkdir(parents=True, exist_ok=True)
    cache = score_cache.ScoreCache(out / "score-cache.db")
    with score_cache.use(cache):
        for dataset in args.datasets.split(","):
            config = TuneConfig(latency_ms=best["latency_ms"], space=best["space"], dataset=dataset,
                                profile=best["profile"])
            regret = Regret.under(config.space, dataset, config.latency_ms, config.profile)
            for setting in chosen:
                label, change = SETTINGS[setting]
                options = {**best, **change}
                hp = {k: options[k] for k in KEYS if k in options}
                folder = out / dataset / setting
                shutil.rmtree(folder, ignore_errors=True)  # a re-run starts its searches afresh
                result = run_searches(config, hp, seeds, folder, regret)
                values = [r["regret"] for r in result["runs"]]
                row = {"dataset": dataset, "setting": setting, "hyperparameters": hp, "seeds": seeds,
                       "regret_mean": statistics.mean(values), "regret_std": statistics.stdev(values),
                       "evaluations_mean": result["cost"], "best_feasible_accuracy": regret.best_accuracy,
                       "runs": result["runs"]}
                print(json.dumps(row), flush=True)
                print(f"| {best['latency_ms']:g} ms | {dataset} | {label} | {hp['proxy']} | "
                      f"{row['regret_mean']:.2f} ± {row['regret_std']:.2f} | {row['evaluations_mean']:.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()
