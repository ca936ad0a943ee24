"""Tuning the search's own hyperparameters with Optuna, on a space with real accuracies.

Each trial runs a complete (short) search on the NAS-Bench-201 space with the
hyperparameters Optuna proposes — proxy, population size, proxy batch size —
and its value is the real trained accuracy of the structure the search returns
(the packaged NAS-Bench-201 table), so the tuning optimises what a user wants,
not a proxy. The study lives in any Optuna storage URL (``sqlite:///tune.db``),
so a tuning run can be resumed or shared.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hwnas.errors import HwnasError

DEFAULT_PROXIES = ("zen", "naswot", "synflow")


def tune(trials: int = 20, iterations: int = 200, proxies: tuple[str, ...] = DEFAULT_PROXIES,
         population: tuple[int, int] = (8, 128), batch_sizes: tuple[int, ...] = (8, 16, 32, 64),
         dataset: str = "cifar10", space: str = "nb201", params: float | None = None, seed: int = 0,
         storage: str | None = None, study_name: str = "hwnas-tune", out: str | Path | None = None) -> dict:
    """Run ``trials`` Optuna trials; return the best hyperparameters and accuracy."""
    import optuna

    from hwnas.models.spaces.nb201 import accuracy_table
    from hwnas.search.budgets import Budgets
    from hwnas.search.evolution import SearchConfig, search
    from hwnas.search.proxies import proxy_names

    if not space.startswith("nb201"):
        raise HwnasError(f"tune needs a space with real accuracies (nb201), not {space!r}")
    if trials < 1 or iterations < 1:
        raise HwnasError("trials and iterations must be >= 1")
    unknown = [p for p in proxies if p not in proxy_names()]
    if unknown:
        raise HwnasError(f"unknown proxy {', '.join(unknown)}; expected some of: {', '.join(proxy_names())}")
    table = accuracy_table()
    if dataset not in table.columns:
        raise HwnasError(f"no NAS-Bench-201 accuracy for {dataset!r}; expected cifar10, cifar100 or imagenet16")
    accuracy = table.set_index("arch")[dataset]

    work = Path(tempfile.mkdtemp(prefix="hwnas-tune.")) if out is None else Path(out)
    work.mkdir(parents=True, exist_ok=True)

    def objective(trial: "optuna.Trial") -> float:
        config = SearchConfig(
            space=space, proxy=trial.suggest_categorical("proxy", list(proxies)),
            population=trial.suggest_int("population", population[0], population[1], log=True),
            batch_size=trial.suggest_categorical("batch_size", list(batch_sizes)),
            iterations=iterations, seed=seed + trial.number, budgets=Budgets(params=params),
            checkpoint_every_s=1e9)
        summary = search(config, work / f"trial-{trial.number:04d}")
        trial.set_user_attr("best_structure", summary["best_structure"])
        trial.set_user_attr("score", summary["score"])
        return float(accuracy[summary["best_structure"]])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed), load_if_exists=storage is not None)
    done = sum(1 for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    study.optimize(objective, n_trials=max(0, trials - done))
    frame = study.trials_dataframe()
    if out is not None:
        from hwnas.search.checkpoint import write_parquet

        write_parquet(work / "trials.parquet", frame)
    best = study.best_trial
    return {"best_accuracy": best.value, "best_params": best.params,
            "best_structure": best.user_attrs.get("best_structure"), "trials": len(study.trials),
            "dataset": dataset, "iterations_per_trial": iterations, "storage": storage,
            "dataset_best_accuracy": float(accuracy.max()), "out": str(work)}
