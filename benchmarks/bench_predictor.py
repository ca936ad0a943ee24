"""Predictions per second of the latency predictor on one CPU core.

Streams of architectures of the profile's space, all generated before timing:

- ``mutants``: a search-like stream (each a mutant of one of the last 200),
  every one distinct, predicted one at a time with ``predict_ms`` after a
  tenth of the stream warmed the predictor;
- ``mutants_batch{B}``: the same stream after the same warm-up, predicted with
  ``predict_many`` in batches of B (a fresh predictor per batch size);
- ``repeat``: the timed mutants again in one ``predict_many`` call (every
  block cached);
- ``cold_mutants``: the whole stream one at a time on a fresh predictor.

The structure predictor caches terms per (block, input size); a distinct
mutant costs its new blocks (expanded to kernels, interpolated). The process
is pinned to one core.

Usage: python benchmarks/bench_predictor.py [--profile NAME] [--n 20000] [--batch 64 1024] [--json]
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
    ap.add_argument("--batch", type=int, nargs="*", default=[64, 1024], help="batch sizes of predict_many")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import torch

    torch.set_num_threads(1)
    from hwnas.latency import Predictor, Profile
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
    for size in args.batch:
        batched = Predictor(profile)
        batched.predict_many(warm)
        t = time.perf_counter()
        for i in range(0, len(timed), size):
            batched.predict_many(timed[i:i + size])
        out[f"mutants_batch{size}_per_s"] = len(timed) / (time.perf_counter() - t)
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
