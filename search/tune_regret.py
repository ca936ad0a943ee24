"""Regret of a NAS-Bench-201 search under a latency budget: what ``hwnas tune`` minimises.

    regret = accuracy of the best cell whose predicted latency under the profile meets the budget
             − the trained accuracy of the cell the search returned          (same data set, in points)

Both accuracies come from the packaged NAS-Bench-201 table; the latency of
every one of the 15,625 cells is predicted once from the profile. (A minimal
definition for tuning; if ``hwnas.search.regret`` exists, it is the one place
for this and this module should delegate to it.)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from hwnas.errors import BudgetError, HwnasError

# Spaces with a trained accuracy for every architecture, and the data sets they have.
GROUND_TRUTH_SPACES = ("nb201", "nb201-cifar100", "nb201-imagenet16")
DATASETS = ("cifar10", "cifar100", "imagenet16")


@lru_cache(maxsize=8)
def cell_table(space_name: str, profile: str | None) -> pd.DataFrame:
    """Every cell of the space: arch, predicted latency_ms under the profile, and each data set's accuracy."""
    from hwnas.latency.predictor import Predictor
    from hwnas.latency.profile import Profile
    from hwnas.models.spaces.base import get_space
    from hwnas.models.spaces.nb201 import accuracy_table

    if space_name not in GROUND_TRUTH_SPACES:
        raise HwnasError(f"regret needs every architecture's trained accuracy; space {space_name!r} has none "
                         f"(expected one of: {', '.join(GROUND_TRUTH_SPACES)})")
    space = get_space(space_name)
    table = accuracy_table().copy()
    predictor = Predictor(Profile.for_space(space, profile))
    table["latency_ms"] = predictor.predict_many([space.parse(a) for a in table["arch"]])
    return table


@dataclass(frozen=True)
class Regret:
    """The reference of one (space, profile, data set, budget): the best accuracy any cell meeting it reaches."""

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
        table = cell_table(space, profile)
        if dataset not in DATASETS or dataset not in table.columns:
            raise HwnasError(f"no NAS-Bench-201 accuracy for {dataset!r}; expected one of: {', '.join(DATASETS)}")
        feasible = table[table["latency_ms"] <= latency_ms]
        if feasible.empty:
            raise BudgetError(f"no NAS-Bench-201 cell meets --latency-ms {latency_ms:g} on profile "
                              f"{profile or 'default'}: the fastest is predicted at "
                              f"{table['latency_ms'].min():.4g} ms; expected a budget at least that")
        best = feasible.loc[feasible[dataset].idxmax()]
        return cls(space, dataset, float(latency_ms), profile, float(best[dataset]), str(best["arch"]),
                   int(len(feasible)))

    def accuracy(self, arch: str) -> float:
        return float(cell_table(self.space, self.profile).set_index("arch").at[arch, self.dataset])

    def latency(self, arch: str) -> float:
        return float(cell_table(self.space, self.profile).set_index("arch").at[arch, "latency_ms"])

    def of(self, arch: str) -> float:
        """Regret of returning ``arch`` (accuracy points; 0 = the best feasible cell)."""
        return self.best_accuracy - self.accuracy(arch)
