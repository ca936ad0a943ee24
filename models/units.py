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


def round8(x: float) -> int:
    """Channel rounding of the official inverted-residual block: max(8, 8·round(x/8)), ties to even."""
    return max(8, 8 * round(x / 8))


def se_reduced(channels: int) -> int:
    """Width of the squeeze layer of SE(C): max(1, int(round(C/4)))."""
    return max(1, int(round(channels * 0.25)))


def out_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded odd-kernel conv of this stride (what torch computes)."""
    return (size - 1) // stride + 1


def _residual(convs: list[Conv], first: bool, use_se: bool, se_after: int, no_residual: bool) -> Unit:
    cin, cout, stride = convs[0].cin, convs[-1].cout, max(c.stride for c in convs)
    if no_residual:
        shortcut = None
    elif first or cin != cout or stride != 1:
        shortcut = "proj"
    else:
        shortcut = "identity"
    return Unit(tuple(convs), True, shortcut, se_after if use_se else None)


def block_units(block: Block, use_se: bool = False, no_residual: bool = False) -> Iterator[Unit]:
    """Expand one block into its units, in forward order."""
    k, out, mid = block.kernel, block.out_channels, block.mid
    c = block.in_channels
    for i in range(block.sub_layers):
        s = block.stride if i == 0 else 1
        if block.kind == CONV:
            yield Unit((Conv(c, out, k, s),), False, None)
        elif block.kind == BASIC:
            yield _residual([Conv(c, mid, k, s), Conv(mid, out, k)], i == 0, use_se, 0, no_residual)
        elif block.kind == BOTTLENECK:
            yield _residual([Conv(c, mid, 1), Conv(mid, mid, k, s), Conv(mid, out, 1)],
                            i == 0, use_se, 1, no_residual)
            yield _residual([Conv(out, mid, 1), Conv(mid, mid, k), Conv(mid, out, 1)],
                            False, use_se, 1, no_residual)
        elif block.kind == INVERTED:
            m1, m2 = round8(mid * block.expansion), round8(out * block.expansion)
            yield _residual([Conv(c, m1, 1), Conv(m1, m1, k, s, groups=m1), Conv(m1, mid, 1)],
                            i == 0, use_se, 1, no_residual)
            yield _residual([Conv(mid, m2, 1), Conv(m2, m2, k, groups=m2), Conv(m2, out, 1)],
                            False, use_se, 1, no_residual)
        else:  # pragma: no cover - the parser admits no other kind
            raise ValueError(block.kind)
        c = out


def units(structure: Structure, use_se: bool = False, no_residual: bool = False) -> Iterator[tuple[int, Unit]]:
    """(block index, unit) for the whole trunk. SE never goes into plain conv blocks."""
    for index, block in enumerate(structure.blocks):
        for unit in block_units(block, use_se=use_se and block.is_residual, no_residual=no_residual):
            yield index, unit
