"""Parts, the decomposition protocol and its registry (nn-Meter's kernel detector).

A *decomposition* says how a network of one space splits into independently
timed parts (the rows of a latency table): the parts of an architecture, the
parts a profile measures on a width grid, a module computing one part, and
the size range of the networks a profile is calibrated on. Adding one for a
new space is one new module in this package that subclasses
:class:`Decomposition` and decorates it with ``@register(SpaceClass)``; the
modules are discovered, not listed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from dataclasses import dataclass
from typing import Iterable

from hwnas.errors import HwnasError
from hwnas.registry import Registry


@dataclass(frozen=True, order=True)
class Part:
    """One independently measurable piece of a network: the key of a latency-table row.

    ``op`` names the piece: a convolution kernel (see :func:`conv_part`),
    ``head``, or a space-specific name. ``mid`` (an inner width), ``first``
    and ``se`` (flags) and ``extra`` carry whatever else a space needs to key
    its parts; the built-in spaces leave them at their defaults (they stay in
    the key and the table schema).
    """

    op: str
    cin: int
    cout: int
    resolution: int
    stride: int = 1
    mid: int = 0
    first: bool = False
    se: bool = False
    extra: str = ""


# Convolution kernels as parts: "conv{k}" is Conv2d(k×k, no bias) + BatchNorm + ReLU, "dwconv{k}" its
# depthwise form (groups = channels), "proj" a projection shortcut (1×1 conv with bias + BatchNorm). At
# inference BN folds into the conv and the ReLU fuses with it, so a projection costs what a "conv1" kernel
# does and is looked up as one.
PROJECTION = "proj"


def conv_part(cin: int, cout: int, kernel: int, stride: int, groups: int, resolution: int) -> Part:
    """The part of one Conv + BN + ReLU kernel on a ``resolution``² input."""
    op = f"conv{kernel}" if groups == 1 else f"dwconv{kernel}"
    return Part(op, cin, cout, resolution, stride)


def conv_spec(part: Part) -> tuple[int, int] | None:
    """(kernel, groups) of a convolution-kernel part (a projection is a 1×1 conv), else None."""
    op = part.op
    if op == PROJECTION:
        return 1, 1
    if op.startswith("conv") and op[4:].isdigit():
        return int(op[4:]), 1
    if op.startswith("dwconv") and op[6:].isdigit():
        return int(op[6:]), part.cin
    return None


class Decomposition(ABC):
    """The parts of the networks of one space.

    ``block_arch`` is the architecture type whose networks are sums of
    per-block rows (``block_kernels`` and ``head_part``, see the Zen-NAS
    decomposition); the predictor caches such rows. ``None``: whole
    architectures only. ``builds_onnx``: the decomposition builds a network's
    ONNX graph directly (``onnx_network``), for graph calibration features.
    """

    block_arch: type | None = None
    builds_onnx = False
    # (counted quantity, low, high) of the networks sampled for calibration and validation; None: sample
    # uniformly (a finite space).
    size_range: tuple[str, float, float] | None = None

    def __init__(self, space):
        self.space = space

    @abstractmethod
    def parts(self, arch) -> list[Part]:
        """The latency-table parts whose sum (before calibration) is the network."""

    @abstractmethod
    def grid_parts(self, grid: str = "coarse") -> Iterable[Part]:
        """Every part the space can produce on a width grid (``coarse`` or ``full``)."""

    @abstractmethod
    def build_part(self, part: Part):
        """A torch module computing just this part, and its input shape (C, H, W)."""


_REGISTRY = Registry(__package__)  # keyed by space class; every module of hwnas.latency.kernels is imported


def register(space_class: type):
    """Class decorator: the decomposition of the spaces of ``space_class``."""
    return _REGISTRY.register(space_class)


def kernels_for(space) -> Decomposition:
    """The decomposition of ``space`` (its class's, found in the modules of this package)."""
    for cls in type(space).__mro__:
        decomposition = _REGISTRY.get(cls)
        if decomposition is not None:
            return decomposition(space)
    raise HwnasError(f"space {getattr(space, 'name', space)!r} has no latency decomposition")
