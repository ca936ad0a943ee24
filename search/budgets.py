"""Search budgets, checked from the structure alone before any model is built.

Every number here comes from analytic counts (``space.counts``), the
effectiveness formula and the latency table's predictor; nothing is built or
timed. A candidate that breaks any budget is rejected with a reason that names
the budget and the value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from hwnas.errors import BudgetError

# ZenNAS's --max_layers for its latency searches (scripts/Zen_NAS_ImageNet_latency*.sh):
# budget in ms (V100, FP16, batch 64, per image) -> max layers.
ZENNAS_MAX_LAYERS = ((0.1, 10), (0.2, 13), (0.3, 16), (0.5, 20), (0.8, 25), (1.2, 30))


def default_max_layers(latency_ms: float) -> int:
    """ZenNAS's layer cap for a latency budget: the entry of the smallest tabled budget >= it."""
    for budget, layers in ZENNAS_MAX_LAYERS:
        if latency_ms <= budget * (1 + 1e-9):
            return layers
    return ZENNAS_MAX_LAYERS[-1][1]


@dataclass(frozen=True)
class Budgets:
    latency_ms: float | None = None
    flops: float | None = None
    params: float | None = None
    max_layers: int | None = None
    rho_max: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        for name, value in self.as_dict().items():
            if value is not None and not (math.isfinite(value) and value > 0):
                raise BudgetError(f"budget {name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class Metrics:
    """What the budgets are checked on; all computed from the structure."""

    latency_ms: float | None
    flops: int
    params: int
    layers: int
    rho: float | None

    def as_dict(self) -> dict:
        return asdict(self)


class BudgetChecker:
    """Measures a candidate from its structure and names the first budget it breaks."""

    def __init__(self, space, budgets: Budgets, predictor=None):
        if budgets.latency_ms is not None and predictor is None:
            raise BudgetError("a latency budget needs a latency profile (--profile)")
        from hwnas.models.spaces.base import StructureSpace

        self.space = space
        self.budgets = budgets
        self.predictor = predictor
        self._has_rho = isinstance(space, StructureSpace)  # checked once: a protocol check is not cheap

    def measure(self, arch) -> Metrics:
        counts = self.space.counts(arch)
        latency = self.predictor.predict_ms(arch) if self.predictor is not None else None
        return Metrics(latency_ms=latency, flops=int(counts.flops), params=int(counts.params),
                       layers=int(counts.layers),
                       rho=float(self.space.effectiveness(arch)) if self._has_rho else None)

    def violation(self, m: Metrics) -> str | None:
        """The first broken budget as a short reason, or None when every budget holds."""
        b = self.budgets
        if b.max_layers is not None and m.layers > b.max_layers:
            return f"layers {m.layers} > {b.max_layers}"
        if b.params is not None and m.params > b.params:
            return f"params {m.params} > {b.params:g}"
        if b.flops is not None and m.flops > b.flops:
            return f"flops {m.flops} > {b.flops:g}"
        if b.rho_max is not None:
            if m.rho is None:
                raise BudgetError(f"--rho-max needs a ZenNAS structure space, not {self.space.name!r}")
            if m.rho > b.rho_max:
                return f"rho {m.rho:.4g} > {b.rho_max:g}"
        if b.latency_ms is not None and m.latency_ms > b.latency_ms:
            return f"latency {m.latency_ms:.4g} ms > {b.latency_ms:g} ms"
        return None
