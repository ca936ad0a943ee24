"""What each block of a structure expands to: the single description both the builder and the counts read.

A block expands into *units*. A unit is either a plain ``conv-BN-ReLU`` layer
(``SuperConv`` blocks) or a residual unit: a chain of convolutions, each
followed by BN and (except the last) a ReLU, with an optional SE module after
the k×k convolution's ReLU, a shortcut added after the last BN, and a ReLU
after the sum. This follows the official ZenNAS blocks exactly (see the
reference README of the ZenNet zoo, "What each block expands to").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from hwnas.models.structure import BASIC, BOTTLENECK, CONV, INVERTED, Block, Structure


@dataclass(frozen=True)
class Conv:
    cin: int
    cout: int
    kernel: int
    stride: int = 1
    groups: int = 1

    @property
    def padding(self) -> int:
        return (self.kernel - 1) // 2

    @property
    def weights(self) -> int:
        return self.cout * (self.cin // self.groups) * self.kernel * self.kernel


@dataclass(frozen=True)
class Unit:
    """One unit. ``shortcut`` is ``"proj"`` (1×1 conv with bias + BN), ``"identity"``
    or ``None`` (a plain layer, or a residual unit built without its residual link).
    ``se_after`` is the index of the conv whose BN+ReLU the SE module follows."""

    convs: tuple[Conv, ...]
    residual: bool
    shortcut: str | None
    se_after: int | None = None

    @property
    def cin(self) -> int:
        return self.convs[0].cin

    @property
    def cout(self) -> int:
        return self.convs[-1].cout

    @property
    def stride(self) -> int:
        return max(c.stride for c in self.convs)

    @property
    def se_channels(self) -> int | None:
        return None if self.se_after is None else self.convs[self.se_after].cout


def round8(x: int) -> int:
    """Channel rounding of the official inverted-residual block: max(8, 8·round(x/8)), ties to even.

    ``x`` is an int or an integer numpy array (the rule is written in integer operations that mean the same
    on both)."""
    q, r = divmod(x, 8)
    q = q + ((r > 4) | ((r == 4) & (q % 2 == 1)))  # round half to even
    return 8 * q + (q < 1) * (8 - 8 * q)  # at least 8


def se_reduced(channels: int) -> int:
    """Width of the squeeze layer of SE(C): max(1, int(round(C/4)))."""
    return max(1, int(round(channels * 0.25)))


def out_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded odd-kernel conv of this stride (what torch computes)."""
    return (size - 1) // stride + 1


def _rules(sub_layer: int, convs: tuple, stride: int, first, use_se: bool, se_after: int) -> tuple:
    cin, cout = convs[0][0], convs[-1][1]
    projection = first | (cin != cout) | (stride != 1)
    return sub_layer, convs, True, projection, se_after if use_se else None, stride


def unit_rules(block: Block, use_se: bool = False, sub_layers: int | None = None) -> Iterator[tuple]:
    """The block → unit rules, stated once: every unit of a block as plain tuples, in forward order.

    Yields ``(sub_layer, convs, residual, projection, se_after, stride)`` with
    ``convs`` a tuple of ``(cin, cout, kernel, stride, groups)``; ``projection``
    says whether a residual unit's shortcut is a projection (None for a plain
    layer); the other fields are those of :class:`Unit`. ``sub_layers``
    expands only the first ``sub_layers`` sub-layers (every sub-layer after the
    first is the same). The rules are integer and boolean operations only, so
    ``block`` may hold integer numpy arrays for its widths and stride (many
    blocks of one kind and kernel at once): the answers are then arrays too.
    """
    kind, k, out, mid = block.kind, block.kernel, block.out_channels, block.mid
    c = block.in_channels
    n = block.sub_layers if sub_layers is None else min(sub_layers, block.sub_layers)
    if kind == INVERTED:
        m1, m2 = round8(mid * block.expansion), round8(out * block.expansion)
    for i in range(n):
        s = block.stride if i == 0 else 1
        if kind == CONV:
            yield i, ((c, out, k, s, 1),), False, None, None, s
        elif kind == BASIC:
            yield _rules(i, ((c, mid, k, s, 1), (mid, out, k, 1, 1)), s, i == 0, use_se, 0)
        elif kind == BOTTLENECK:
            yield _rules(i, ((c, mid, 1, 1, 1), (mid, mid, k, s, 1), (mid, out, 1, 1, 1)), s, i == 0, use_se, 1)
            yield _rules(i, ((out, mid, 1, 1, 1), (mid, mid, k, 1, 1), (mid, out, 1, 1, 1)), 1, False, use_se, 1)
        elif kind == INVERTED:
            yield _rules(i, ((c, m1, 1, 1, 1), (m1, m1, k, s, m1), (m1, mid, 1, 1, 1)), s, i == 0, use_se, 1)
            yield _rules(i, ((mid, m2, 1, 1, 1), (m2, m2, k, 1, m2), (m2, out, 1, 1, 1)), 1, False, use_se, 1)
        else:  # pragma: no cover - the parser admits no other kind
            raise ValueError(block.kind)
        c = out


def unit_specs(block: Block, use_se: bool = False, no_residual: bool = False,
               sub_layers: int | None = None) -> Iterator[tuple]:
    """:func:`unit_rules` with the shortcut named as :class:`Unit` names it: ``(sub_layer, convs, residual,
    shortcut, se_after, stride)``."""
    for i, convs, residual, projection, se_after, stride in unit_rules(block, use_se, sub_layers):
        shortcut = None if no_residual or projection is None else "proj" if projection else "identity"
        yield i, convs, residual, shortcut, se_after, stride


def block_units(block: Block, use_se: bool = False, no_residual: bool = False) -> Iterator[Unit]:
    """Expand one block into its units, in forward order (:func:`unit_specs` as :class:`Unit` values)."""
    for _, convs, residual, shortcut, se_after, _ in unit_specs(block, use_se, no_residual):
        yield Unit(tuple(Conv(*c) for c in convs), residual, shortcut, se_after)


def units(structure: Structure, use_se: bool = False, no_residual: bool = False) -> Iterator[tuple[int, Unit]]:
    """(block index, unit) for the whole trunk. SE never goes into plain conv blocks."""
    for index, block in enumerate(structure.blocks):
        for unit in block_units(block, use_se=use_se and block.is_residual, no_residual=no_residual):
            yield index, unit
