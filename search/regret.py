"""Regret on NAS-Bench-201: how far a found cell's real trained accuracy is below the best cell that fits.

The true front is computed, not sampled: every one of the 15,625 cells gets the
latency the profile predicts for it and its packaged trained accuracy, so
"the best cell that meets a budget" is exact under that profile. The regret of
a found cell at budget B is ``best_accuracy_within(profile, B) - accuracy(cell)``
in accuracy points (0 = the search found the best cell that fits; never
negative for a cell that meets B). ``hwnas curves`` and ``hwnas tune`` share it.

    from hwnas.search.regret import best_accuracy_within, regret
    best_accuracy_within("ort-cpu1-b1-nb201", 0.5)          # the best CIFAR-10 accuracy of any cell <= 0.5 ms
    regret("|nor_conv_3x3~0|+|...|", 0.5, "ort-cpu1-b1-nb201")
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from hwnas.errors import BudgetError, HwnasError

DATASETS = ("cifar10", "cifar100", "imagenet16")
# Spaces with a trained accuracy for every architecture.
GROUND_TRUTH_SPACES = ("nb201", "nb201-cifar100", "nb201-imagenet16")


def pareto_front(df: pd.DataFrame, x: str = "x", y: str = "accuracy") -> pd.DataFrame:
    """Rows no other row beats on both axes (lower ``x``, higher ``y``), by increasing ``x``."""
    ordered = df.sort_values([x, y], ascending=[True, False])
    best, keep = -np.inf, []
    for idx, value in zip(ordered.index, ordered[y]):
        if value > best:
            keep.append(idx)
            best = value
    return ordered.loc[keep]


def _dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise HwnasError(f"no NAS-Bench-201 accuracy for {dataset!r}; expected one of: {', '.join(DATASETS)}")
    return dataset


@lru_cache(maxsize=4)
def _cells(profile: str | None, space: str) -> pd.DataFrame:
    from hwnas.latency.predictor import Predictor
    from hwnas.latency.profile import Profile
    from hwnas.models.spaces.base import get_space
    from hwnas.models.spaces.nb201 import accuracy_table

    if space not in GROUND_TRUTH_SPACES:
        raise HwnasError(f"regret needs every architecture's trained accuracy; space {space!r} has none "
                         f"(expected one of: {', '.join(GROUND_TRUTH_SPACES)})")
    sp = get_space(space)
    table = accuracy_table()
    frame = table[["arch", *[d for d in DATASETS if d in table.columns]]].copy()
    frame["latency_ms"] = Predictor(Profile.for_space(sp, profile)).predict_many([sp.parse(a) for a in frame["arch"]])
    return frame


def cells(profile: str | None = None, space: str = "nb201") -> pd.DataFrame:
    """Every NAS-Bench-201 cell: arch, its accuracy per data set, latency_ms predicted by ``profile``."""
    return _cells(None if profile is None else str(profile), space).copy()


def true_front(profile: str | None = None, dataset: str = "cifar10", space: str = "nb201") -> pd.DataFrame:
    """The cells on the accuracy–latency Pareto front under ``profile``, by increasing latency."""
    frame = cells(profile, space)
    return pareto_front(frame, x="latency_ms", y=_dataset(dataset))


def best_accuracy_within(profile: str | None, budget_ms: float, dataset: str = "cifar10",
                         space: str = "nb201") -> float:
    """The highest accuracy of any cell whose predicted latency is <= ``budget_ms`` (NaN when none fits)."""
    frame = _cells(None if profile is None else str(profile), space)
    fits = frame.loc[frame["latency_ms"] <= budget_ms, _dataset(dataset)]
    return float(fits.max()) if len(fits) else float("nan")


def accuracy(arch: str, dataset: str = "cifar10") -> float:
    """The packaged trained accuracy of one cell (HwnasError for a string that is not a cell)."""
    from hwnas.models.spaces.nb201 import accuracy_table

    table = accuracy_table().set_index("arch")
    if arch not in table.index:
        raise HwnasError(f"{arch!r} is not a NAS-Bench-201 cell; expected |op~0|+|op~0|op~1|+|op~0|op~1|op~2|")
    return float(table.at[arch, _dataset(dataset)])


def regret(arch: str, budget_ms: float, profile: str | None = None, dataset: str = "cifar10",
           space: str = "nb201") -> float:
    """Accuracy points of ``arch`` below the best cell that meets ``budget_ms`` under ``profile``."""
    return best_accuracy_within(profile, budget_ms, dataset, space) - accuracy(arch, dataset)


def regret_table(found: pd.DataFrame, profile: str | None = None, dataset: str = "cifar10",
                 space: str = "nb201") -> pd.DataFrame:
    """Per (proxy, budget_ms) over seeds: best possible accuracy, mean found accuracy, regret mean / std / min /
    max and the number of seeds. ``found`` has columns proxy, budget_ms, seed and best_structure."""
    rows = []
    for (proxy, budget), group in found.groupby(["proxy", "budget_ms"], sort=True):
        best = best_accuracy_within(profile, float(budget), dataset, space)
        accs = np.array([accuracy(a, dataset) for a in group["best_structure"]])
        reg = best - accs
        rows.append({"proxy": proxy, "budget_ms": float(budget), "best_possible": best,
                     "found_mean": float(accs.mean()), "regret_mean": float(reg.mean()),
                     "regret_std": float(reg.std(ddof=1)) if len(reg) > 1 else 0.0,
                     "regret_min": float(reg.min()), "regret_max": float(reg.max()), "seeds": int(len(reg))})
    return pd.DataFrame(rows, columns=["proxy", "budget_ms", "best_possible", "found_mean", "regret_mean",
                                       "regret_std", "regret_min", "regret_max", "seeds"])


@dataclass(frozen=True)
class Regret:
    """The reference of one (space, profile, data set, budget) for tuning: the best accuracy any cell meeting the
    budget reaches, and :meth:`of` a returned cell."""

    space: str
    dataset: str
    latency_ms: float
    profile: str | None
    best_accuracy: float
    best_arch: str
    feasible_cells: int

    @classmethod
    def under(cls, space: str, dataset: str, latency_ms: float, profile: str | None = None) -> "Regret":
        """Raises BudgetError when no cell meets the budget, HwnasError on an unknown data set or space."""
        table = _cells(None if profile is None else str(profile), space)
        if _dataset(dataset) not in table.columns:
            raise HwnasError(f"no NAS-Bench-201 accuracy for {dataset!r} in space {space}")
        feasible = table[table["latency_ms"] <= latency_ms]
        if feasible.empty:
            raise BudgetError(f"no NAS-Bench-201 cell meets --latency-ms {latency_ms:g} on profile "
                              f"{profile or 'default'}: the fastest is predicted at "
                              f"{table['latency_ms'].min():.4g} ms; expected a budget at least that")
        best = feasible.loc[feasible[dataset].idxmax()]
        return cls(space, dataset, float(latency_ms), profile, float(best[dataset]), str(best["arch"]),
                   int(len(feasible)))

    def _row(self, arch: str, column: str) -> float:
        return float(_cells(None if self.profile is None else str(self.profile), self.space)
                     .set_index("arch").at[arch, column])

    def accuracy(self, arch: str) -> float:
        return self._row(arch, self.dataset)

    def latency(self, arch: str) -> float:
        return self._row(arch, "latency_ms")

    def of(self, arch: str) -> float:
        """Regret of returning ``arch`` (accuracy points; 0 = the best feasible cell)."""
        return self.best_accuracy - self.accuracy(arch)
