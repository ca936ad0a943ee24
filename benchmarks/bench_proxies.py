#!/usr/bin/env python3
"""Seconds per proxy evaluation, and Zen-scores of the ZenNet zoo beside the official code.

Timing (default): for the CIFAR ZenNet-1M (batch 64, 32x32) and ZenNet-400M
(batch 16, 224x224), every proxy is evaluated N times (seeds 0..N-1, after
one warm-up), each time building and initialising a fresh network, as the
search does; the median, min and max seconds are printed. ``--official DIR``
also times the official ZenNAS Zen-score the same way (its build plus its
score call, through ../shared/tools/zennas-reference/official_zen.py).

``--zoo``: the hwnas Zen-score of zoo networks (mean and std of seeds 0-4;
CIFAR nets batch 64 at 32x32, ImageNet nets batch 16 at 224x224), with
``--official-csv`` the official values (official_zen.py --out) beside them.

``--robust N``: every proxy (``--proxies``: all registered by default) on
every zoo network and on N random cifar32 structures (random walks of the
space's mutation within 2M params); prints how many scores were rejected
(ProxyError) and why.

Run it alone (it measures time): flock /tmp/hwnas-cpu.lock python benchmarks/bench_proxies.py

    python benchmarks/bench_proxies.py --repeats 10 --official $ZENNAS_DIR --out runs/bench_proxies.json
    python benchmarks/bench_proxies.py --zoo --models cifar10_model_size1M,flops400M --official-csv official.csv
    python benchmarks/bench_proxies.py --robust 1000 --batch 4
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from hwnas.models import zoo
from hwnas.models.spaces.base import get_space
from hwnas.search.proxies import get_proxy, proxy_names

MODELS = {"zennet_cifar10_model_size1M_res32": ("cifar32", 64), "zennet_imagenet1k_flops400M_SE_res224": ("imagenet224", 16)}
ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT.parent / "shared" / "tools" / "zennas-reference" / "official_zen.py"  # ../shared beside the repository


def _space_for(model):
    space = get_space("cifar32" if model.resolution == 32 else "imagenet224")
    return space.with_input(num_classes=model.num_classes)


def time_proxies(proxies, repeats):
    rows = []
    for name, (_, batch) in MODELS.items():
        model = zoo.get(name)
        space = _space_for(model)
        for p in proxies:
            times = []
            for seed in range(-1, repeats):  # seed -1: warm-up, not recorded
                proxy = get_proxy(p, batch_size=batch, seed=max(seed, 0))
                start = time.perf_counter()
                proxy.score(space, model.structure)
                if seed >= 0:
                    times.append(time.perf_counter() - start)
            rows.append({"model": name, "proxy": p, "batch": batch, "resolution": model.resolution, "n": repeats,
                         "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)})
            print(f"{name:40s} {p:13s} median {rows[-1]['median_s']:.4f}s  min {rows[-1]['min_s']:.4f}  "
                  f"max {rows[-1]['max_s']:.4f}", flush=True)
    return rows


def time_official(zennas_dir, repeats):
    rows = []
    out = subprocess.run([sys.executable, str(TOOL), zennas_dir, "--models", ",".join(MODELS), "--time", str(repeats)],
                         capture_output=True, text=True, check=True).stdout
    pattern = re.compile(r"^(\S+) .*score call median ([\d.]+)s \(min ([\d.]+), max ([\d.]+)\); build median ([\d.]+)s")
    for line in out.splitlines():
        m = pattern.match(line)
        if m:
            name, med, lo, hi, build = m.groups()
            rows.append({"model": name, "proxy": "official zen", "batch": MODELS[name][1], "n": repeats,
                         "median_s": float(med) + float(build), "score_median_s": float(med),
                         "build_median_s": float(build), "min_s": float(lo), "max_s": float(hi)})
            print(f"{name:40s} official zen   median {rows[-1]['median_s']:.4f}s (score {med}s + build {build}s)",
                  flush=True)
    return rows


def zoo_values(names, seeds, official_csv=None):
    official = {}
    if official_csv:
        with open(official_csv, newline="") as f:
            official = {r["name"]: float(r["zen_mean"]) for r in csv.DictReader(f)}
    rows = []
    for name in names:
        model = zoo.get(name)
        space = _space_for(model)
        batch = 64 if model.resolution <= 32 else 16
        vals = [get_proxy("zen", batch_size=batch, seed=s).score(space, model.structure).value for s in seeds]
        mean = statistics.fmean(vals)
        row = {"model": model.name, "resolution": model.resolution, "batch": batch, "seeds": len(seeds),
               "hwnas_mean": mean, "hwnas_std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
        if model.name in official:
            row["official_mean"] = official[model.name]
            row["rel_diff_pct"] = 100 * (mean - official[model.name]) / abs(official[model.name])
        rows.append(row)
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def robustness(n, batch, seed=0, proxies=None):
    """Every proxy (or those of ``proxies``) on every zoo network and on ``n`` random cifar32 structures: count
    failures."""
    import random

    from hwnas.errors import ProxyError

    rng = random.Random(seed)
    cifar = get_space("cifar32")
    cases = [(m.name, _space_for(m), m.structure) for m in zoo.models().values()]
    cases += [(f"random{i}", cifar, cifar.sample(rng, max_params=2e6)) for i in range(n)]
    proxies = proxies or proxy_names()
    failures, total, started = {}, 0, time.monotonic()
    for i, (name, space, arch) in enumerate(cases):
        for p in proxies:
            total += 1
            try:
                get_proxy(p, batch_size=batch, seed=0).score(space, arch)
            except ProxyError as err:
                failures.setdefault(p, []).append(f"{name}: {err}")
        if name.startswith("zennet") or (i + 1) % 50 == 0:
            print(f"{name}: done ({i + 1} of {len(cases)} networks, {total} scores, "
                  f"{sum(map(len, failures.values()))} rejected, {time.monotonic() - started:.0f} s)", flush=True)
    print(f"{len(cases)} networks x {len(proxies)} proxies = {total} scores at batch {batch}; "
          f"rejected: {sum(map(len, failures.values()))}", flush=True)
    for p, errs in failures.items():
        print(f"  {p}: {len(errs)} rejected, e.g. {errs[0]}", flush=True)
    return [{"networks": len(cases), "scores": total, "batch": batch,
             "rejected": {p: len(e) for p, e in failures.items()}, "examples": {p: e[:3] for p, e in failures.items()}}]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10, help="timed evaluations per proxy and model")
    ap.add_argument("--proxies", default=",".join(proxy_names()))
    ap.add_argument("--official", metavar="ZENNAS_DIR", help="also time the official Zen-score")
    ap.add_argument("--zoo", action="store_true", help="Zen-scores of zoo networks instead of timing")
    ap.add_argument("--models", help="comma-separated zoo names for --zoo (default: all)")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--official-csv", help="official_zen.py --out CSV to compare with (--zoo)")
    ap.add_argument("--robust", type=int, metavar="N", help="every proxy on the zoo and N random structures")
    ap.add_argument("--batch", type=int, default=4, help="mini-batch for --robust")
    ap.add_argument("--out", help="write the rows as JSON here")
    a = ap.parse_args()

    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or
           platform.machine(), "python": platform.python_version(), "cpu_count": os.cpu_count()}
    print("# " + " ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    if a.robust is not None:
        rows = robustness(a.robust, a.batch, proxies=a.proxies.split(","))
    elif a.zoo:
        names = a.models.split(",") if a.models else list(zoo.models())
        rows = zoo_values(names, [int(s) for s in a.seeds.split(",")], a.official_csv)
    else:
        rows = time_proxies(a.proxies.split(","), a.repeats)
        if a.official:
            rows += time_official(a.official, a.repeats)
    if a.out:
        from hwnas.atomic import atomic_write

        atomic_write(a.out, lambda f: f.write(json.dumps({"env": env, "rows": rows}, indent=2)), binary=False)


if __name__ == "__main__":
    main()
