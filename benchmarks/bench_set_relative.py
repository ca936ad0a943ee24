"""Benchmark a set-relative proxy (az_nas) on NAS-Bench-201 the way its authors rank: within the whole sample.

``hwnas proxies bench`` scores one architecture at a time, so it cannot rank
within a set. This script scores the components as ordinary (cached)
proxies through the same ``run_bench``, aggregates them over the sample
with the proxy's own ``aggregate`` and reports the same metrics.

    .venv/bin/python benchmarks/bench_set_relative.py --dataset cifar10 --sample 50 --batch-size 16
"""

from __future__ import annotations

import argparse
import math

from hwnas.search.proxies import get_proxy
from hwnas.search.proxy_bench import metrics, run_bench

# the registered per-architecture proxy that holds each component of az_nas
COMPONENT_PROXIES = {"expressivity": "az_expressivity", "progressivity": "az_progressivity",
                     "trainability": "az_trainability", "complexity": "flops"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--sample", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--cache", default="default")
    args = ap.parse_args()
    proxy = get_proxy("az_nas", batch_size=args.batch_size)
    result = run_bench(args.dataset, list(COMPONENT_PROXIES.values()), args.sample, args.seed,
                       cache_dir=args.cache, progress=False, batch_size=args.batch_size)
    scores = result.scores
    # a rejected component (ProxyError, -inf) is NaN in the bench table: it ranks last, as -inf does
    table = [{k: (-math.inf if math.isnan(row[p]) else row[p]) for k, p in COMPONENT_PROXIES.items()}
             for _, row in scores.iterrows()]
    values = proxy.aggregate(table)
    print(result.summary.to_string(index=False))
    m = metrics(values, scores["accuracy"], seed=args.seed)
    print(f"az_nas (ranked within the {len(values)} cells): spearman {m['spearman']:.3f} kendall {m['kendall']:.3f} "
          f"top10 {m['top10_precision']:.2f} mbr {m['mbr']:.1f} n {m['n']}")


if __name__ == "__main__":
    main()
