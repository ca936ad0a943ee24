"""What a finished search writes: ``config.json``, the history, the population, ``best.txt`` and
``summary.json`` (read back by :mod:`hwnas.search.runs`); and the end-to-end measurement of its best
network added to the summary afterwards."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from hwnas.atomic import folder_lock
from hwnas.errors import BudgetError
from hwnas.search.budgets import Metrics
from hwnas.search.checkpoint import write_json, write_parquet, write_text
from hwnas.search.runs import BEST, SUMMARY, read_json, read_run
from hwnas.search.workers import Scorer

if TYPE_CHECKING:
    from hwnas.search.evolution import Evolution

HISTORY_COLUMNS = ["iteration", "structure", "score", "latency_ms", "flops", "params", "layers", "rho", "accepted",
                   "reject_reason", "time_s"]


def config_record(evolution: Evolution) -> dict:
    """config.json: the settings, the space's input, the profile, the versions."""
    c = evolution.config
    prof = evolution.p.profile
    record = asdict(c)
    record["resolution"] = evolution.space.resolution
    record["num_classes"] = evolution.space.num_classes
    record["profile_info"] = None if prof is None else {
        "name": getattr(prof, "name", None), "path": str(getattr(prof, "path", "") or "") or None,
        "hash": prof.hash, "backend": prof.backend, "batch": prof.batch, "resolution": prof.resolution,
        "space": prof.space}
    from hwnas import __version__

    record["hwnas_version"] = __version__
    record["python"] = sys.version.split()[0]
    return record


def write_results(evolution: Evolution) -> dict:
    """Write history, population, best.txt and summary.json of a finished search; return the summary.

    The best structure's metrics are recomputed from the structure and its
    score re-scored with the thread count the search scored with.
    """
    import pandas as pd

    hist = pd.DataFrame(evolution.history, columns=HISTORY_COLUMNS)
    write_parquet(evolution.out / "history.parquet", hist)
    if not evolution.population:
        raise BudgetError(f"no candidate met the budgets in {evolution.iteration} iterations "
                          f"(see {evolution.out / 'history.parquet'}); loosen a budget or raise --iterations")
    pop = pd.DataFrame(evolution.population).sort_values("score", ascending=False, kind="stable")
    write_parquet(evolution.out / "population.parquet", pop)

    best = max(evolution.population, key=lambda m: m["score"])  # first of equal scores, as the official code
    arch = evolution.space.parse(best["structure"])
    metrics = evolution.checker.measure(arch)  # recomputed from the structure, not carried
    import torch

    threads = torch.get_num_threads()
    try:  # the thread count the search scored with (see Evolution._open)
        score, parts, reason = Scorer.for_config(evolution.config, threads=evolution.threads)(best["structure"])
    finally:
        torch.set_num_threads(threads)
    accepted = int(hist["accepted"].sum())
    if score is None and reason is None:  # set-relative: its score exists only within the final population
        score = best["score"]
    summary = {
        "best_structure": best["structure"],
        "score": score,
        "score_parts": parts,
        "score_in_search": best["score"],
        **{k: v for k, v in metrics.as_dict().items()},
        "budgets": evolution.config.budgets.as_dict(),
        "meets_budgets": evolution.checker.violation(metrics) is None,
        "iterations": evolution.iteration,
        "accepted": accepted,
        "acceptance_rate": accepted / max(1, len(hist)),
        "scored": sum(1 for v in evolution.cache.values() if not isinstance(v, str)),
        "elapsed_s": evolution.elapsed_s,
        "iterations_per_s": evolution.iteration / evolution.elapsed_s if evolution.elapsed_s > 0 else None,
        "profile_hash": None if evolution.p.profile is None else evolution.p.profile.hash,
        "space": evolution.config.space,
        "proxy": evolution.config.proxy,
        "set_relative": evolution.p.selection.set_relative,  # score: the aggregate within the final population
        "workers": evolution.config.workers,
        "seed": evolution.config.seed,
    }
    if reason is not None:
        summary["score_error"] = reason
    write_text(evolution.out / BEST, best["structure"] + "\n")
    write_json(evolution.out / SUMMARY, summary)
    return summary


def metric_columns(m: Metrics | None) -> dict:
    if m is None:
        return {"latency_ms": None, "flops": None, "params": None, "layers": None, "rho": None}
    return m.as_dict()


def measure_best(out: str | Path, profile: str | None = None) -> dict:
    """Measure the best structure of a finished search end to end with its profile's backend.

    Adds ``measured_ms`` and the prediction's error next to ``latency_ms`` in summary.json.
    """
    from hwnas.latency.predictor import Predictor
    from hwnas.latency.profile import Profile
    from hwnas.latency.validate import measure_end_to_end
    from hwnas.models.spaces.base import get_space

    with folder_lock(out):  # no search may resume into the folder while its summary is read and rewritten
        run = read_run(out)
        summary = read_json(run.summary_path)
        space = get_space(run.space)
        prof = Profile.for_space(space, profile or run.profile)
        arch = space.parse(summary["best_structure"])
        predicted = float(Predictor(prof).predict_ms(arch))
        measured = float(measure_end_to_end(prof, arch))
        summary.update({"predicted_ms": predicted, "measured_ms": measured,
                        "prediction_error_pct": 100.0 * (predicted / measured - 1.0),
                        "measured_with": {"profile": prof.name, "backend": prof.backend, "batch": prof.batch,
                                          "hash": prof.hash}})
        write_json(run.summary_path, summary)
    return summary
