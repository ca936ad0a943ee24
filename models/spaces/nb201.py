"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020): spaces ``nb201``, ``nb201-cifar100``, ``nb201-imagenet16``.

An architecture is a :class:`Cell`: the operations of its six edges, written
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (edges grouped by target node). The
network is the benchmark's macro skeleton (see the reference README): stem
3×3 conv 3→16 + BN; 5 cells at 16 channels; a residual reduction block 16→32;
5 cells at 32; a reduction 32→64; 5 cells at 64; head BN → ReLU → global
average pooling → linear. ``forward_features`` returns the head's BN+ReLU
output, the last feature map before pooling. ``no_residual=True`` drops the
reduction blocks' shortcut (average pool + 1×1 conv); the cells' own
``skip_connect`` edges are operations of the cell and stay.

Counts: ``params`` is every trainable parameter (it equals the benchmark's
``params_M``); ``flops`` follows the benchmark's convention (conv and linear
multiply-adds plus the linear bias, nothing for BN, ReLU, pooling, additions)
and equals its ``flops_M``; ``conv_linear_macs`` leaves out the bias;
``layers`` is the number of convolutions on the longest path through the
network (stem, cells, reductions).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import BudgetError, StructureError
from hwnas.models.counts import Counts
from hwnas.models.spaces.base import register_space

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# (source node, target node) of the six edges, in the order of the string.
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
STEM_CHANNELS = 16
CELLS_PER_STAGE = 5
CONV_KERNELS = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}  # kernel size of the convolution ops


@dataclass(frozen=True, order=True)
class Cell:
    """The six edge operations of a NAS-Bench-201 cell, in string order."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        if len(self.ops) != len(EDGES) or any(op not in OPS for op in self.ops):
            raise StructureError(f"a cell has six operations from {OPS}, got {self.ops!r}")

    def __str__(self) -> str:
        groups = []
        for target in (1, 2, 3):
            groups.append("|" + "|".join(f"{op}~{src}" for op, (src, dst) in zip(self.ops, EDGES)
                                         if dst == target) + "|")
        return "+".join(groups)

    def with_op(self, edge: int, op: str) -> "Cell":
        ops = list(self.ops)
        ops[edge] = op
        return Cell(tuple(ops))

    def conv_path(self) -> tuple[int, ...] | None:
        """Kernel sizes of the convolutions on the longest input-to-output path through live edges.

        Longest: most convolutions; of equally long paths, most 3×3 ones (the largest DeepMAD entropy).
        Skip and pool edges add no convolution. None if ``none`` edges cut node 3 off from node 0."""
        best: dict[int, tuple[int, ...]] = {0: ()}
        for target in (1, 2, 3):
            reach = [best[src] + ((CONV_KERNELS[op],) if op in CONV_KERNELS else ())
                     for op, (src, dst) in zip(self.ops, EDGES) if dst == target and op != "none" and src in best]
            if reach:
                best[target] = max(reach, key=lambda path: (len(path), sum(k * k for k in path)))
        return best.get(3)

    def depth(self) -> int:
        """Convolutions on the longest input-to-output path through live edges (0 if cut off)."""
        return len(self.conv_path() or ())


def parse_cell(text: str) -> Cell:
    """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``; StructureError with the position on any fault."""
    if not isinstance(text, str):
        raise StructureError(f"expected a string, got {type(text).__name__}")
    text = text.strip()
    ops: list[str] = []
    pos = 0
    for target in (1, 2, 3):
        if target > 1:
            if pos >= len(text) or text[pos] != "+":
                got = repr(text[pos]) if pos < len(text) else "end of string"
                raise StructureError(f"expected '+' before the edges into node {target}, got {got}", text, pos)
            pos += 1
        if pos >= len(text) or text[pos] != "|":
            got = repr(text[pos]) if pos < len(text) else "end of string"
            raise StructureError(f"expected '|' opening the edges into node {target}, got {got}", text, pos)
        pos += 1
        for source in range(target):
            end = text.find("|", pos)
            if end < 0:
                raise StructureError(f"expected 'op~{source}|' (edge {source}->{target}), got end of string",
                                     text, pos)
            op, tilde, node = text[pos:end].partition("~")
            if op not in OPS:
                raise StructureError(f"unknown operation {op!r} on edge {source}->{target}; expected one of "
                                     f"{', '.join(OPS)}", text, pos)
            if not tilde or node != str(source):
                raise StructureError(f"edge {source}->{target} must read '{op}~{source}', got "
                                     f"{text[pos:end]!r}", text, pos + len(op))
            ops.append(op)
            pos = end + 1
    if pos != len(text):
        raise StructureError(f"unexpected {text[pos:pos + 12]!r} after the edges into node 3; expected the end",
                             text, pos)
    return Cell(tuple(ops))


# ---------------------------------------------------------------- modules

def _relu_conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, bias=False),
                         nn.BatchNorm2d(cout))


class Zero(nn.Module):
    """The ``none`` edge: zeros of the input's shape (as the benchmark, ``x * 0``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def edge_module(op: str, channels: int) -> nn.Module:
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    return _relu_conv_bn(channels, channels, CONV_KERNELS[op])


class CellModule(nn.Module):
    def __init__(self, cell: Cell, channels: int):
        super().__init__()
        self.edges = nn.ModuleList(edge_module(op, channels) for op in cell.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for target in (1, 2, 3):
            nodes.append(sum(edge(nodes[src]) for edge, (src, dst) in zip(self.edges, EDGES) if dst == target))
        return nodes[3]


class Reduction(nn.Module):
    """The benchmark's residual reduction block: ReLU-conv3×3/2-BN, ReLU-conv3×3-BN, + avgpool/2 → 1×1 conv."""

    def __init__(self, cin: int, cout: int, residual: bool = True):
        super().__init__()
        self.conv_a = _relu_conv_bn(cin, cout, 3, 2)
        self.conv_b = _relu_conv_bn(cout, cout, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, bias=False)) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_b(self.conv_a(x))
        return y if self.shortcut is None else y + self.shortcut(x)


class NB201Network(nn.Module):
    def __init__(self, cell: Cell, num_classes: int = 10, no_residual: bool = False):
        super().__init__()
        self.cell = cell
        c = STEM_CHANNELS
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))]
        for stage in range(3):
            if stage:
                layers.append(Reduction(c, 2 * c, residual=not no_residual))
                c *= 2
            layers.extend(CellModule(cell, c) for _ in range(CELLS_PER_STAGE))
        self.layers = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
        self.fc = nn.Linear(c, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.lastact(self.layers(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------- counts

def count_cell(cell: Cell, resolution: int = 32, num_classes: int = 10, no_residual: bool = False) -> Counts:
    """Exact params and benchmark-convention FLOPs of the network, from the cell alone."""
    params = macs = 0
    c, h = STEM_CHANNELS, resolution
    params += 27 * c + 2 * c
    macs += 27 * c * h * h
    for stage in range(3):
        if stage:
            h2 = (h - 1) // 2 + 1
            params += 9 * c * 2 * c + 2 * 2 * c + 9 * 4 * c * c + 2 * 2 * c
            macs += (9 * c * 2 * c + 9 * 4 * c * c) * h2 * h2
            if not no_residual:
                params += c * 2 * c
                macs += c * 2 * c * (h // 2) * (h // 2)
            c, h = 2 * c, h2
        for op in cell.ops:
            if op in CONV_KERNELS:
                k = CONV_KERNELS[op]
                params += CELLS_PER_STAGE * (k * k * c * c + 2 * c)
                macs += CELLS_PER_STAGE * k * k * c * c * h * h
    params += 2 * c + c * num_classes + num_classes
    macs += c * num_classes
    layers = 1 + 3 * CELLS_PER_STAGE * cell.depth() + 2 * 2
    return Counts(params, macs + num_classes, macs, layers, resolution, num_classes, False)


def conv_stages(cell: Cell, resolution: int = 32) -> list[tuple[int, int, list[tuple[int, int, int]]]] | None:
    """The convolutions a signal crosses, by stage: ``(out resolution, out channels, [(cin, kernel, groups)])``.

    A stage is everything at one resolution: the stem conv and 5 cells (stage 1); a reduction block's two 3×3
    convs and 5 cells (stages 2 and 3). A cell contributes the convs of its :meth:`Cell.conv_path`; the
    reduction's 1×1 shortcut is a parallel branch, not on that path. None if the cell is cut off (its
    output, and the network's, does not depend on the input)."""
    path = cell.conv_path()
    if path is None:
        return None
    out, c, h = [], STEM_CHANNELS, resolution
    for stage in range(3):
        if stage:
            convs = [(c, 3, 1), (2 * c, 3, 1)]
            c, h = 2 * c, (h - 1) // 2 + 1
        else:
            convs = [(3, 3, 1)]
        out.append((h, c, convs + [(c, k, 1) for k in path] * CELLS_PER_STAGE))
    return out


# ---------------------------------------------------------------- the space

@dataclass(frozen=True)
class NB201Space:
    name: str = "nb201"
    resolution: int = 32
    num_classes: int = 10
    # The proxy a search uses unless told otherwise: the lowest mean CIFAR-10 regret of the NB201 search over the
    # two tuned budgets (benchmarks/nb201_regret.py; README, docs/search.md): the hybrid fitted on its CIFAR-10 cells
    # (search/proxies/nb201_hybrid.py).
    default_proxy: ClassVar[str] = "hybrid_nb201"

    def parse(self, text: str) -> Cell:
        return parse_cell(text)

    def format(self, arch: Cell) -> str:
        return str(arch)

    def build(self, arch: Cell, *, no_residual: bool = False, use_se: bool = False) -> NB201Network:
        if use_se:
            raise StructureError("the NAS-Bench-201 space has no SE option")
        return NB201Network(arch, self.num_classes, no_residual=no_residual)

    def counts(self, arch: Cell, *, use_se: bool = False) -> Counts:
        if use_se:
            raise StructureError("the NAS-Bench-201 space has no SE option")
        return count_cell(arch, self.resolution, self.num_classes)

    def initial(self) -> Cell:
        """Every edge a skip connection: connected, no weights in the cells."""
        return Cell(("skip_connect",) * len(EDGES))

    def mutate(self, arch: Cell, rng: random.Random, num_blocks: int = 1) -> Cell:
        """One edge, chosen uniformly, gets a different operation, chosen uniformly.

        A cell has no blocks: whatever ``num_blocks`` the search asks for, one edge changes (the search's
        two-block mutation of structure spaces has always been a one-edge mutation here)."""
        edge = rng.randrange(len(EDGES))
        return arch.with_op(edge, rng.choice([op for op in OPS if op != arch.ops[edge]]))

    def sample(self, rng: random.Random, max_params: float | None = None,
               max_flops: float | None = None) -> Cell:
        """A uniformly random cell among those within the budgets (rejection, then enumeration)."""
        cells = all_cells()
        for _ in range(200):
            cell = rng.choice(cells)
            if self._fits(cell, max_params, max_flops):
                return cell
        fitting = [cell for cell in cells if self._fits(cell, max_params, max_flops)]
        if not fitting:
            raise BudgetError(f"no NAS-Bench-201 cell fits params <= {max_params} and FLOPs <= {max_flops}")
        return rng.choice(fitting)

    def _fits(self, cell: Cell, max_params: float | None, max_flops: float | None) -> bool:
        c = self.counts(cell)
        return (max_params is None or c.params <= max_params) and (max_flops is None or c.flops <= max_flops)

    def all_archs(self) -> list[Cell]:
        """Every cell of the space (5^6 = 15,625), in a fixed order."""
        return all_cells()

    def stages(self) -> list[tuple[int, int]]:
        """(channels, resolution) of the three cell stages."""
        out, c, h = [], STEM_CHANNELS, self.resolution
        for stage in range(3):
            if stage:
                c, h = 2 * c, (h - 1) // 2 + 1
            out.append((c, h))
        return out

    def smallest(self) -> Cell:
        """Every edge ``none``: no convolution in any cell."""
        return Cell(("none",) * len(EDGES))

    def with_input(self, resolution: int | None = None, num_classes: int | None = None) -> "NB201Space":
        return replace(self, resolution=resolution or self.resolution, num_classes=num_classes or self.num_classes)


@lru_cache(maxsize=1)
def all_cells() -> tuple[Cell, ...]:
    """All 5^6 = 15,625 cells, in lexicographic order of their operation indices."""
    import itertools

    return tuple(Cell(ops) for ops in itertools.product(OPS, repeat=len(EDGES)))


def accuracy_table():
    """The packaged NAS-Bench-201 accuracies (15,625 rows; columns described in data/nasbench201/README.md)."""
    return _accuracy_table().copy()


@lru_cache(maxsize=1)
def _accuracy_table():
    import pandas as pd

    path = resources.files("hwnas.models") / "data" / "nasbench201" / "accuracy.csv"
    with path.open("rb") as f:
        return pd.read_csv(f)


@register_space("nb201")
def nb201() -> NB201Space:
    return NB201Space("nb201", 32, 10)


@register_space("nb201-cifar100")
def nb201_cifar100() -> NB201Space:
    return NB201Space("nb201-cifar100", 32, 100)


@register_space("nb201-imagenet16")
def nb201_imagenet16() -> NB201Space:
    return NB201Space("nb201-imagenet16", 16, 120)
