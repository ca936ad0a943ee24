"""Predictions per second of the latency predictor on one CPU core.

Three streams of architectures of the profile's space:

- ``mutants``: a search-like stream (each a mutant of a random earlier one),
  every one distinct, predicted one at a time with ``predict_ms``;
- ``distinct_random``: independent random samples, every one distinct;
- ``repeat``: the same architectures again (the architecture-level cache).

Part costs are cached per part (after a part is first seen, its cost is a dict
lookup), so a warm predictor's cost is dominated by ``space.parts(arch)``.
The process is pinned to one core.

Usage: python benchmarks/bench_predictor.py [--profile NAME] [--n 20000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=None)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import torch

    torch.set_num_threads(1)
    from hwnas.latency.predictor import Predictor
    from hwnas.latency.profile import Profile
    from hwnas.models.spaces.base import get_space

    profile = Profile.load(args.profile)
    space = get_space(profile.space)
    rng = random.Random(args.seed)
    # Architectures are generated before timing; generation is not what is measured.
    pool = [space.initial()]
    seen = set(pool)
    while len(pool) < args.n:
        child = space.mutate(rng.choice(pool[-200:]), rng)
        if child not in seen:
            seen.add(child)
            pool.append(child)
    out = {"profile": profile.name, "space": profile.space, "n": len(pool), "cpu": profile.metadata["device"]["name"]}
    pred = Predictor(profile)
    warm = pool[: len(pool) // 10]  # warm the part cache with a tenth of the stream
    for a in warm:
        pred.predict_ms(a)
    timed = pool[len(pool) // 10:]
    t = time.perf_counter()
    for a in timed:
        pred.predict_ms(a)
    out["mutants_per_s"] = len(timed) / (time.perf_counter() - t)
    t = time.perf_counter()
    pred.predict_many(timed)
    out["repeat_per_s"] = len(timed) / (time.perf_counter() - t)
    fresh = Predictor(profile)
    t = time.perf_counter()
    for a in pool:
        fresh.predict_ms(a)
    out["cold_mutants_per_s"] = len(pool) / (time.perf_counter() - t)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for k, v in out.items():
            print(f"{k:22s} {v:,.0f}" if isinstance(v, float) else f"{k:22s} {v}")


if __name__ == "__main__":
    main()
