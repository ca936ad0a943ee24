"""What a tuning run leaves in its folder: best.json, trials.csv, summary.json and Optuna's plots as PNG.

``best.json`` holds the ``search`` options of the best COMPLETE, feasible
trial (lowest mean regret; in multi-objective mode the lowest-regret trial of
the Pareto front), so ``search --config best.json`` runs a search with them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from hwnas.atomic import atomic_write
from hwnas.errors import one_line


def _feasible(trial) -> bool:
    return trial.user_attrs.get("excess_ms", 0.0) <= 0


def best_trial(study):
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if _feasible(t)]
    if not complete:
        return None
    pool = study.best_trials if len(study.directions) > 1 else complete
    pool = [t for t in pool if _feasible(t)] or complete
    return min(pool, key=lambda t: (t.values[0], t.number))


def _plots(study, out: Path, multi: bool) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as vis

    names = ("regret (accuracy points)", "cost (proxy evaluations)")
    made, skipped = {}, {}
    first = None if not multi else (lambda t: t.values[0])  # single objective: the best-so-far line too
    jobs = {"history": lambda: vis.plot_optimization_history(study, target=first, target_name=names[0]),
            "importances": lambda: vis.plot_param_importances(study, target=lambda t: t.values[0],
                                                              target_name=names[0])}
    if multi:
        jobs["pareto"] = lambda: vis.plot_pareto_front(study, target_names=list(names))
    for name, job in jobs.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental-API and importance-direction notices
                ax = job()
        except (ValueError, RuntimeError, ZeroDivisionError) as err:  # e.g. importances of < 2 trials
            skipped[name] = one_line(err, 200)
            continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        path = out / f"{name}.png"
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
        plt.close(fig)
        made[name] = str(path)
    return {"plots": made, "plots_skipped": skipped}


def write_outputs(study, config, regret, out: Path, cache_stats: dict | None = None) -> dict:
    import optuna

    states = {s.name: 0 for s in optuna.trial.TrialState}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] += 1
    frame = study.trials_dataframe(attrs=("number", "state", "values", "params", "user_attrs", "duration"))
    frame = frame.rename(columns={**{f"values_{i}": n for i, n in enumerate(config.objectives)},
                                  **{c: c[len("user_attrs_"):] for c in frame.columns if c.startswith("user_attrs_")}})
    for column in ("runs", "search"):
        if column in frame.columns:
            frame[column] = [json.dumps(v) if isinstance(v, (list, dict)) else v for v in frame[column]]
    atomic_write(out / "trials.csv", lambda f: frame.to_csv(f, index=False), binary=False)
    best = best_trial(study)
    summary = {"study": study.study_name, "storage": config.storage or f"sqlite:///{(out / 'tune.db').resolve()}",
               "sampler": config.sampler_name, "objectives": list(config.objectives), "space": config.space,
               "dataset": config.dataset, "latency_ms": config.latency_ms, "profile": config.profile,
               "seeds_per_trial": config.seeds, "trials": {k.lower(): v for k, v in states.items() if v},
               "reference": {"best_accuracy": regret.best_accuracy, "best_arch": regret.best_arch,
                             "feasible_cells": regret.feasible_cells},
               "best": None, "score_cache": cache_stats, "out": str(out)}
    if best is not None:
        options = best.user_attrs["search"]
        atomic_write(out / "best.json", lambda f: f.write(json.dumps(options, indent=2) + "\n"), binary=False)
        summary["best"] = {"trial": best.number, "regret": best.values[0],
                           "cost": best.values[1] if len(best.values) > 1 else None, "search": options,
                           "runs": best.user_attrs.get("runs")}
    summary.update(_plots(study, out, len(study.directions) > 1))
    atomic_write(out / "summary.json", lambda f: f.write(json.dumps(summary, indent=2, default=str) + "\n"),
                 binary=False)
    return summary
