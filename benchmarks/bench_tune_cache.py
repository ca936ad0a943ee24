"""Proxy evaluations per second of one NB201 search without the score cache, with a cold and with a warm one.

    taskset -c 1 python benchmarks/bench_tune_cache.py [--proxy zen] [--batch-size 8] [--iterations 60]

A tuning trial's searches use the same seeds in every trial, so a later trial with the same proxy and batch size
meets a warm cache. Prints one JSON line per case.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from hwnas.search import score_cache
from hwnas.search.budgets import Budgets
from hwnas.search.evolution import SearchConfig, search


def run(config: SearchConfig, out: Path) -> dict:
    start = time.perf_counter()
    search(config, out)
    seconds = time.perf_counter() - start
    history = pd.read_parquet(out / "history.parquet")
    scored = int((history["accepted"] | history["reject_reason"].fillna("").str.startswith("proxy")).sum())
    return {"evaluations": scored, "seconds": round(seconds, 2), "evaluations_per_s": round(scored / seconds, 2),
            "best": pd.read_json(out / "summary.json", typ="series")["best_structure"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy", default="zen")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=60)
    args = ap.parse_args()
    config = SearchConfig(space="nb201", proxy=args.proxy, batch_size=args.batch_size, population=16,
                          iterations=args.iterations, seed=0, budgets=Budgets(latency_ms=1.0),
                          profile="ort-cpu1-b1-nb201", checkpoint_every_s=1e9)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(json.dumps({"case": "no cache", **run(config, tmp / "a")}))
        cache = score_cache.ScoreCache(tmp / "cache.db")
        with score_cache.use(cache):
            print(json.dumps({"case": "cold cache", **run(config, tmp / "b")}))
            print(json.dumps({"case": "warm cache", **run(config, tmp / "c")}))


if __name__ == "__main__":
    main()
