#!/usr/bin/env python3
"""hwnas search beside the official ZenNAS search, on this machine.

Reference settings (the official scripts/Zen_NAS_cifar_params1M.sh, shortened):
CIFAR space (XXBL blocks), Zen-score, params <= 1e6, max layers 18, population
64, batch 64, resolution 32, 100 classes, the official CIFAR-1M initial
structure, 300 iterations.

For every seed it reports
  (a) iterations/s of both searches over those 300 iterations;
  (b) the wall time hwnas needs to reach the best score the official run
      reached in its 300 iterations (hwnas keeps going up to --chase iterations);
  (c) the cost of the latency check of one candidate in the ImageNet space:
      hwnas's check from the structure (counts + LUT prediction on the shipped
      CPU profile) against the official live timing (the official
      ``get_model_latency``: build the model, 3 warm-up + 1 timed forward) at
      the profile's setting.

The official code is imported at run time (never copied) from the work tree
given by --zennas-dir or $ZENNAS_DIR, via ../shared/tools/zennas-reference
beside the repository (or $ZENNAS_TOOLS). Run under the team's CPU lock:

    flock /tmp/hwnas-cpu.lock .venv/bin/python benchmarks/bench_search.py --seeds 0,1,2 \\
        --out benchmarks/results/search

Writes ``search_bench.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_TOOLS = Path(os.environ.get("ZENNAS_TOOLS") or ROOT.parent / "shared" / "tools" / "zennas-reference")
OFFICIAL_INITIAL = ("SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,1,8,1)SuperResK3K3(16,32,2,16,1)"
                    "SuperResK3K3(32,64,2,32,1)SuperResK3K3(64,64,2,32,1)SuperConvK1BNRELU(64,128,1,1)")
BENCH_SPACE = "cifar32-c100"  # the cifar32 space with the official script's 100 classes


def register_bench_space() -> None:
    from hwnas.models.spaces.base import register_space
    from hwnas.models.spaces.zennas import ZenNASSpace

    register_space(BENCH_SPACE)(lambda: ZenNASSpace(BENCH_SPACE, 32, 100, OFFICIAL_INITIAL))


def run_official(zennas_dir: str, seed: int, iterations: int, population: int, work: Path) -> dict:
    save = work / f"official-seed{seed}"
    shutil.rmtree(save, ignore_errors=True)
    out_json = work / f"official-seed{seed}.json"
    cmd = [sys.executable, str(REFERENCE_TOOLS / "official_search_speed.py"), zennas_dir, "--save-dir", str(save),
           "--max-iter", str(iterations), "--population", str(population), "--seed", str(seed),
           "--json", str(out_json)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out_json.read_text())


def run_ours(seed: int, iterations: int, chase: int, population: int, workers: int, early: int | None,
             target: float | None, work: Path) -> dict:
    import pandas as pd

    from hwnas.search.budgets import Budgets
    from hwnas.search.evolution import SearchConfig, search

    out = work / f"hwnas-seed{seed}-k{workers}-e{early}"
    shutil.rmtree(out, ignore_errors=True)
    config = SearchConfig(space=BENCH_SPACE, proxy="zen", batch_size=64, population=population,
                          iterations=max(iterations, chase), seed=seed, workers=workers,
                          budgets=Budgets(params=1e6, max_layers=18), initial=OFFICIAL_INITIAL,
                          early_batch=early, early_margin=1.0, checkpoint_every_s=1e9)
    summary = search(config, out)
    hist = pd.read_parquet(out / "history.parquet")
    first = hist[hist["iteration"] < iterations]
    t_first = float(first["time_s"].max())
    running = hist["score"].fillna(float("-inf")).cummax()
    pop = pd.read_parquet(out / "population.parquet")
    row = {"workers": workers, "early_batch": early, "iterations_per_s": iterations / t_first, "wall_s": t_first,
           "final_population": sorted(pop["structure"]),
           "early_rejected": int(hist["reject_reason"].fillna("").str.startswith("early").sum()),
           "best_score_at_iterations": float(first["score"].max()),
           "scored_at_iterations": int(first["accepted"].sum() + first["reject_reason"].fillna("").str.startswith(
               "proxy").sum()),
           "final_best_score": summary["score_in_search"], "total_iterations": summary["iterations"],
           "total_s": summary["elapsed_s"]}
    if target is not None:
        hit = hist[running >= target]
        row["target"] = target
        row["time_to_target_s"] = float(hit["time_s"].iloc[0]) if len(hit) else None
        row["iteration_at_target"] = int(hit["iteration"].iloc[0]) if len(hit) else None
    return row


def latency_check_cost(zennas_dir: str | None, n: int, seed: int) -> dict:
    """Seconds per candidate of the latency check: hwnas's table lookup against the official live timing.

    Candidates: a random walk of two-block mutations in the ImageNet space. hwnas:
    the whole budget check (counts, rho, predicted latency) and the latency
    prediction alone, on the shipped default ImageNet profile (ONNX Runtime CPU,
    batch 1). Official: ``benchmark_network_latency.get_model_latency`` as
    ``evolution_search.get_latency`` calls it (build the model, 3 warm-up + 1
    timed forward), here at the profile's setting (batch 1, fp32, 224x224, CPU).
    """
    from hwnas.latency.predictor import Predictor
    from hwnas.latency.profile import Profile
    from hwnas.models.spaces.base import get_space
    from hwnas.search.budgets import BudgetChecker, Budgets

    rng = random.Random(seed)
    space = get_space("imagenet224")
    arch, archs = space.initial(), []
    while len(archs) < n:
        arch = space.mutate(arch, rng, num_blocks=2)
        if str(arch) not in {str(a) for a in archs}:
            archs.append(arch)
    profile = Profile.for_space(space)
    out: dict = {"candidates": n, "space": "imagenet224", "hwnas_profile": profile.name}
    checker = BudgetChecker(space, Budgets(latency_ms=1e9, max_layers=30), Predictor(profile))
    t = time.perf_counter()
    for a in archs:
        checker.violation(checker.measure(a))
    out["hwnas_check_s"] = (time.perf_counter() - t) / n
    predictor = Predictor(profile)  # a fresh one: no cached predictions
    t = time.perf_counter()
    for a in archs:
        predictor.predict_ms(a)
    out["hwnas_lut_predict_s"] = (time.perf_counter() - t) / n
    if zennas_dir:
        sys.path.insert(0, str(REFERENCE_TOOLS))
        from official_common import load_official

        load_official(zennas_dir)
        # The real official timing module; it imports two modules the timing never uses.
        import importlib.util
        import types

        import torch

        sys.modules.setdefault("train_image_classification", types.ModuleType("train_image_classification"))
        spec = importlib.util.spec_from_file_location("benchmark_network_latency_real",
                                                      os.path.join(zennas_dir, "benchmark_network_latency.py"))
        real = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(real)
        import Masternet

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the profile's setting
        t = time.perf_counter()
        for a in archs:
            model = Masternet.MasterNet(num_classes=1000, plainnet_struct=str(a), no_create=False, no_reslink=False)
            real.get_model_latency(model=model, batch_size=1, resolution=224, in_channels=3, gpu=None,
                                   repeat_times=1, fp16=False)
        out["official_live_timing_s"] = (time.perf_counter() - t) / n
        torch.set_num_threads(threads)
        out["official_settings"] = ("get_model_latency as evolution_search.get_latency calls it (build, 3 warm-up + "
                                    "1 timed forward), at batch 1, fp32, 224x224, 1 thread, CPU")
    return out


def _candidates(n: int, seed: int) -> list[str]:
    """A random walk of two-block mutations from the official initial structure, kept within the budgets."""
    from hwnas.models.spaces.base import get_space

    space = get_space(BENCH_SPACE)
    rng = random.Random(seed)
    arch, out = space.initial(), []
    while len(out) < n:
        child = space.mutate(arch, rng, num_blocks=2)
        c = space.counts(child)
        if c.params <= 1e6 and c.layers <= 18:
            arch = child
            if str(child) not in out:
                out.append(str(child))
    return out


def scoring_throughput(zennas_dir: str | None, n: int, seed: int) -> dict:
    """Zen evaluations per second on the same candidates: the official function and hwnas (1 and 2 workers)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from hwnas.search.evolution import SearchConfig
    from hwnas.search.workers import Scorer, scorer_args, worker_init, worker_score

    texts = _candidates(n, seed)
    out: dict = {"candidates": n, "settings": "zen, batch 64, 32x32, 100 classes"}
    config = SearchConfig(space=BENCH_SPACE, proxy="zen", batch_size=64, seed=seed)
    scorer = Scorer.for_config(config)
    scorer(texts[0])
    t = time.perf_counter()
    for text in texts:
        scorer(text)
    out["hwnas_workers1_eval_per_s"] = n / (time.perf_counter() - t)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx, initializer=worker_init,
                             initargs=(scorer_args(config, threads=max(1, (os.cpu_count() or 1) // 2)),)) as pool:
        list(pool.map(worker_score, texts[:2], [None, None]))  # start-up and warm-up
        t = time.perf_counter()
        list(pool.map(worker_score, texts, [None] * n))
        out["hwnas_workers2_eval_per_s"] = n / (time.perf_counter() - t)
    if zennas_dir:
        sys.path.insert(0, str(REFERENCE_TOOLS))
        from official_common import load_official

        load_official(zennas_dir)
        import evolution_search as es
        import Masternet

        args = argparse.Namespace(num_classes=100, batch_size=64, input_image_size=32, zero_shot_score="Zen",
                                  gamma=1e-2)
        es.compute_nas_score(Masternet.MasterNet, texts[0], None, args)
        t = time.perf_counter()
        for text in texts:
            es.compute_nas_score(Masternet.MasterNet, text, None, args)
        out["official_eval_per_s"] = n / (time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zennas-dir", default=os.environ.get("ZENNAS_DIR"),
                    help="an official ZenNAS work tree (default: $ZENNAS_DIR); needed unless --skip-official")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--population", type=int, default=64)
    ap.add_argument("--chase", type=int, default=1000, help="hwnas iterations allowed to reach the official best")
    ap.add_argument("--variants", default="1,2,1e8,2e8",
                    help="hwnas runs: K (--workers K) or KeB (--workers K --early-batch B)")
    ap.add_argument("--latency-candidates", type=int, default=30)
    ap.add_argument("--skip-official", action="store_true")
    ap.add_argument("--latency-only", action="store_true", help="only (c), added to an existing search_bench.json")
    ap.add_argument("--throughput", type=int, default=0, metavar="N",
                    help="only the scoring throughput on N identical candidates, added to search_bench.json")
    ap.add_argument("--out", default="benchmarks/results/search")
    a = ap.parse_args()
    if not a.skip_official and not a.zennas_dir:
        ap.error("give the official ZenNAS work tree (--zennas-dir or $ZENNAS_DIR), or --skip-official")

    import torch

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_search."))
    seeds = [] if (a.latency_only or a.throughput) else [int(s) for s in a.seeds.split(",")]
    variants = [(int(v.split("e")[0]), int(v.split("e")[1]) if "e" in v else None) for v in a.variants.split(",")]
    result = {"machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "torch_threads": torch.get_num_threads()},
              "settings": {"iterations": a.iterations, "population": a.population, "chase": a.chase,
                           "params": 1e6, "max_layers": 18, "batch": 64, "resolution": 32, "classes": 100,
                           "initial": OFFICIAL_INITIAL},
              "runs": []}
    if (a.latency_only or a.throughput) and (out / "search_bench.json").is_file():
        result = json.loads((out / "search_bench.json").read_text())
    if a.throughput:
        for _ in range(2):  # interleaved repeats: the machine is shared
            result.setdefault("throughput", []).append(
                scoring_throughput(None if a.skip_official else a.zennas_dir, a.throughput, 0))
        _save(out, result)
        print(json.dumps(result["throughput"], indent=1))
        return
    for seed in seeds:
        official = None if a.skip_official else run_official(a.zennas_dir, seed, a.iterations, a.population, work)
        entry = {"seed": seed, "official": official, "hwnas": []}
        print(f"seed {seed}: official {official and official['iterations_per_s']} it/s, "
              f"best {official and official['best_score']}", flush=True)
        for k, early in variants:
            row = run_ours(seed, a.iterations, a.chase, a.population, k, early,
                           official["best_score"] if official else None, work)
            plain = next((r for r in entry["hwnas"] if r["workers"] == k and r["early_batch"] is None), None)
            if early is not None and plain is not None:
                row["same_final_population_as_without_early"] = row["final_population"] == plain["final_population"]
            entry["hwnas"].append(row)
            print(f"seed {seed}: hwnas k={k} early={early} {row['iterations_per_s']:.3f} it/s, to target "
                  f"{row.get('time_to_target_s')}", flush=True)
        result["runs"].append(entry)
        _save(out, result)
    result["latency_check"] = latency_check_cost(None if a.skip_official else a.zennas_dir,
                                                 a.latency_candidates, 0)
    _save(out, result)
    shutil.rmtree(work, ignore_errors=True)
    print_table(result)


def _save(out: Path, result: dict) -> None:
    from hwnas.atomic import atomic_write

    atomic_write(out / "search_bench.json", lambda f: f.write(json.dumps(result, indent=1)), binary=False)


def print_table(result: dict) -> None:
    print("| seed | search | it/s (300 it.) | best score at 300 it. | time to official best (s) | official 300-it. wall (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for run in result["runs"]:
        o = run["official"]
        if o:
            print(f"| {run['seed']} | official | {o['iterations_per_s']:.2f} | {o['best_score']:.2f} | "
                  f"{o['wall_s']:.1f} | {o['wall_s']:.1f} |")
        for r in run["hwnas"]:
            ttt = r.get("time_to_target_s")
            name = f"hwnas --workers {r['workers']}" + (f" --early-batch {r['early_batch']}" if r["early_batch"] else "")
            print(f"| {run['seed']} | {name} | {r['iterations_per_s']:.2f} | "
                  f"{r['best_score_at_iterations']:.2f} | {'not reached' if ttt is None else f'{ttt:.1f}'} | "
                  f"{o['wall_s']:.1f} |" if o else f"| {run['seed']} | {name} | {r['iterations_per_s']:.2f} | "
                  f"{r['best_score_at_iterations']:.2f} | - | - |")
    lc = result.get("latency_check", {})
    print()
    print(json.dumps(lc, indent=1))
    speedups = {}
    for run in result["runs"]:
        if run["official"]:
            for r in run["hwnas"]:
                speedups.setdefault((r["workers"], r["early_batch"]), []).append(
                    r["iterations_per_s"] / run["official"]["iterations_per_s"])
    for (k, e), v in speedups.items():
        print(f"hwnas --workers {k} --early-batch {e}: median speed-up {statistics.median(v):.2f}x over official "
              f"({len(v)} seeds)")


# At import time, so that the spawned worker processes of --workers know the space too.
register_bench_space()

if __name__ == "__main__":
    main()
