"""Incorporated-NAS score: a weighted sum of the Zen-score and a DeepMAD-style entropy.

    incorporated = w_z · zen + w_d · F(E),      F ∈ {log, sqrt}
    E = Σ_i α_i · H_i − β · Q,                  Q = exp(Var(L_1, …, L_M))
    H_i = log(r_i² · c_i) · Σ_{layers j of stage i} log(c_j · k_j² / g_j)

over the M stages of the network, with r_i, c_i the resolution and width at
a stage's output, c_j the input channels, k_j the kernel and g_j the groups
of conv j, and L_i a stage's depth. Defaults: α_i = 1, β = 10,
(w_z, w_d) = (0.9, 0.1) with log, (0.8, 0.2) with sqrt.

What a stage is for a ZenNAS structure string: each block of the string (the
stem, every Super-Res block, the final 1×1 conv), with depth L_i = the
block's sub-layer count ``L``. Counting the depth in convolutions instead
makes Var(L) of the zoo networks reach the hundreds and Q ≈ e^100, so E < 0
for every one of them; in blocks' sub-layers E stays positive across the zoo.

``layer_term="paper"`` (default) is the formula above; ``"deepmad_code"``
uses log sqrt(c·k²/g) per layer, as the public DeepMAD code
(alibaba/lightweight-neural-architecture-search, its issue #34) computes it,
which halves H.

What a stage is for a NAS-Bench-201 cell (``hwnas.models.spaces.nb201.conv_stages``):
everything at one resolution, so three stages: the stem conv and the 5 cells
at 16 channels; each reduction block's two 3×3 convs and the 5 cells after it
(32, 64 channels). A cell contributes the convs of its longest conv path (the
depth a signal crosses; 1×1 and 3×3 convs count, skip, pool and none do not;
of equally long paths the one with most 3×3 convs), once per cell; L_i is the
stage's number of those convs (1 + 5d, 2 + 5d, 2 + 5d for a cell of depth d),
so Var(L) = 2/9 and Q = e^(2/9) for every cell: on NB201 only H ranks cells.
A cell whose ``none`` edges cut its output off from its input has no signal
to measure: a ProxyError, as the Zen-score gives for it.

E ≤ 0 leaves F undefined: the candidate is rejected with a ProxyError
naming E, never scored NaN. The DeepMAD effectiveness ρ = L·(∏ w_i)^(−1/L)
(``hwnas.models.counts.effectiveness``) is returned in the parts with
``rho_max`` (ρ0, default 0.5) and ``rho_ok``; the search enforces it as a
constraint. ρ is defined for ZenNAS structures only: a NAS-Bench-201 score
has no ρ parts and its search no ρ constraint (``rho_max`` is ignored there).
"""

from __future__ import annotations

import math

from hwnas.errors import HwnasError, ProxyError
from hwnas.models.counts import stages
from hwnas.models.spaces.base import StructureSpace
from hwnas.models.spaces.nb201 import Cell, conv_stages
from hwnas.models.structure import Structure
from hwnas.models.units import block_units
from hwnas.search.proxies.base import Proxy, register_proxy
from hwnas.search.proxies.zen import ZenScore

DEFAULT_WEIGHTS = {"log": (0.9, 0.1), "sqrt": (0.8, 0.2)}


def _layer_scale(layer_term: str) -> float:
    if layer_term not in ("paper", "deepmad_code"):
        raise HwnasError(f"unknown layer_term {layer_term!r}; expected 'paper' or 'deepmad_code'")
    return 0.5 if layer_term == "deepmad_code" else 1.0


def _combine(stage_list, depths, alpha, beta: float, scale: float) -> dict:
    """E = Σ α_i H_i − β Q from ``(r_i, c_i, [(c_j, k_j, g_j)])`` per stage and the depths L_i."""
    alphas = list(alpha) if isinstance(alpha, (list, tuple)) else [float(alpha)] * len(stage_list)
    if len(alphas) != len(stage_list):
        raise HwnasError(f"alpha has {len(alphas)} values but the network has {len(stage_list)} stages")
    h_total = 0.0
    for a, (r, c, convs) in zip(alphas, stage_list):
        layers = sum(math.log(cin * k ** 2 / g) for cin, k, g in convs)
        h_total += a * math.log(r ** 2 * c) * scale * layers
    mean = sum(depths) / len(depths)
    var = sum((d - mean) ** 2 for d in depths) / len(depths)
    q = math.exp(var) if var < 709.0 else math.inf  # exp overflows float64 above ~709.78: Q is then infinite
    penalty = beta * q if beta else 0.0
    return {"e_score": h_total - penalty, "h": h_total, "q": q}


def entropy_score(structure: Structure, resolution: int, alpha=1.0, beta: float = 10.0,
                  layer_term: str = "paper") -> dict:
    """E = Σ α_i H_i − β Q over the blocks of ``structure`` (one block = one stage)."""
    scale = _layer_scale(layer_term)
    stage_list = stages(structure, resolution)
    convs = [(s.out_resolution, s.out_channels, [(c.cin, c.kernel, c.groups) for u in block_units(block)
                                                  for c in u.convs])
             for s, block in zip(stage_list, structure.blocks)]
    return _combine(convs, [s.sub_layers for s in stage_list], alpha, beta, scale)


def cell_entropy_score(cell: Cell, resolution: int, alpha=1.0, beta: float = 10.0, layer_term: str = "paper") -> dict:
    """E of the NAS-Bench-201 network of ``cell`` (three stages, depth in convs); ProxyError if it is cut off."""
    scale = _layer_scale(layer_term)
    stage_list = conv_stages(cell, resolution)
    if stage_list is None:
        raise ProxyError(f"proxy 'incorporated': cell {cell} has no live path from its input to its output "
                         "(none edges cut it off), so its entropy is undefined; the candidate is rejected")
    return _combine(stage_list, [len(convs) for _, _, convs in stage_list], alpha, beta, scale)


@register_proxy("incorporated")
class IncorporatedScore(Proxy):
    options = {"wz": None, "wd": None, "transform": "log", "alpha": 1.0, "beta": 10.0, "rho_max": 0.5,
               "layer_term": "paper", "bn_term": "running", "se": False}
    per_stage = ("alpha",)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.transform not in DEFAULT_WEIGHTS:
            raise HwnasError(f"unknown transform {self.transform!r}; expected 'log' or 'sqrt'")
        wz, wd = DEFAULT_WEIGHTS[self.transform]
        if self.wz is None and self.wd is None:
            self.wz, self.wd = wz, wd
        elif self.wd is None:
            self.wd = 1.0 - self.wz
        elif self.wz is None:
            self.wz = 1.0 - self.wd
        common = {k: getattr(self, k) for k in ("resolution", "batch_size", "seed", "dtype_name")}
        common["dtype"] = common.pop("dtype_name")
        self._zen = ZenScore(device=str(self.device), bn_term=self.bn_term, se=self.se, **common)

    def evaluate(self, space, arch, generator):
        args = (self.resolution_for(space), self.alpha, self.beta, self.layer_term)
        if isinstance(space, StructureSpace):
            e, rho = entropy_score(arch, *args), space.effectiveness(arch)
        elif isinstance(arch, Cell):
            e, rho = cell_entropy_score(arch, *args), None
        else:
            raise ProxyError(f"proxy 'incorporated' needs a ZenNAS structure-string space or NAS-Bench-201, "
                             f"not {space.name!r}")
        if e["e_score"] <= 0:
            raise ProxyError(f"proxy 'incorporated': E_score = {e['e_score']:.4g} ≤ 0 leaves "
                             f"{self.transform}(E) undefined (H = {e['h']:.4g}, β·Q = {self.beta * e['q']:.4g}); "
                             "the candidate is rejected")
        zen, _ = self._zen.evaluate(space, arch, generator)
        f = math.log(e["e_score"]) if self.transform == "log" else math.sqrt(e["e_score"])
        value = self.wz * zen + self.wd * f
        parts = {"zen": zen, "e_score": e["e_score"], "f_e": f, "h": e["h"], "q": e["q"]}
        if rho is not None:
            parts.update(rho=rho, rho_max=self.rho_max, rho_ok=float(rho <= self.rho_max))
        return value, parts
