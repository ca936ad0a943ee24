"""Regret of tuned search settings on fresh seeds, beside Zen-score alone with the same search budget.

    taskset -c 1 python benchmarks/eval_tuned.py runs/tune-nb201-1ms/best.json --seeds 100,101,102,103,104

For every data set (default cifar10 and imagenet16: ImageNet16-120 without retuning, same searches on the
nb201 space and its latency profile, regret from that data set's accuracies) it runs one search per seed with
each setting and prints the mean and standard deviation of the regret and the mean proxy evaluations, as JSON
lines and as Markdown table rows. (Incorporated-NAS needs a ZenNAS structure space: not run on NAS-Bench-201.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from hwnas.search import score_cache
from hwnas.search.tune import TuneConfig, run_searches
from hwnas.search.regret import Regret


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("best", help="best.json of hwnas tune")
    ap.add_argument("--seeds", default="100,101,102,103,104")
    ap.add_argument("--datasets", default="cifar10,imagenet16")
    ap.add_argument("--out", default="runs/eval-tuned")
    args = ap.parse_args()
    best = json.loads(Path(args.best).read_text())
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = {"tuned": best, "zen alone (same population, iterations, batch)": {**best, "proxy": "zen"}}
    out = Path(args.out) / Path(args.best).parent.name
    out.mkdir(parents=True, exist_ok=True)
    cache = score_cache.ScoreCache(out / "score-cache.db")
    with score_cache.use(cache):
        for dataset in args.datasets.split(","):
            config = TuneConfig(latency_ms=best["latency_ms"], space=best["space"], dataset=dataset,
                                profile=best["profile"])
            regret = Regret.under(config.space, dataset, config.latency_ms, config.profile)
            for name, options in settings.items():
                hp = {k: options[k] for k in ("proxy", "population", "iterations", "batch_size")}
                folder = out / dataset / name.split()[0]
                shutil.rmtree(folder, ignore_errors=True)  # a re-run starts its searches afresh
                result = run_searches(config, hp, seeds, folder, regret)
                values = [r["regret"] for r in result["runs"]]
                row = {"dataset": dataset, "setting": name, "hyperparameters": hp, "seeds": seeds,
                       "regret_mean": statistics.mean(values), "regret_std": statistics.stdev(values),
                       "evaluations_mean": result["cost"], "best_feasible_accuracy": regret.best_accuracy}
                print(json.dumps(row), flush=True)
                print(f"| {best['latency_ms']:g} ms | {dataset} | {name} | {hp['proxy']} | "
                      f"{row['regret_mean']:.2f} ± {row['regret_std']:.2f} | {row['evaluations_mean']:.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()
