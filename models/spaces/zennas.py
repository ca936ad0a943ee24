"""The Zen-NAS structure-string spaces: ``imagenet224`` and ``cifar32``.

An architecture is a :class:`~hwnas.models.structure.Structure`. Mutation is
Alg. 3 of Zen-NAS as the official search (``evolution_search.py`` with
``SearchSpace/search_space_XXBL.py`` / ``search_space_IDW_fixfc.py``) runs it:

- pick a block uniformly (``num_blocks=2`` picks two distinct blocks; the official
  search replaces 1 block while its population holds at most 10 networks and
  2 afterwards);
- a ``SuperConv`` block only gets a new output width (its kernel, stride and
  sub-layer count stay);
- a residual block gets, each drawn uniformly and independently, a block type
  of its group, an output width, an inner (``mid``) width and a sub-layer
  count. Widths are ``c·r`` for r in {2.5, 2, 1.5, 1.25, 1, 1/1.25, 1/1.5, 1/2,
  1/2.5}, clamped to [8, 2048] and rounded to a multiple of 8; sub-layers are
  L + {−2, −1, 0, 1, 2}, at least 1. The stride never changes.

Block-type groups follow the official search-space files, not one kernel
family each: the XXBL group holds all six ``SuperResK1K{3,5,7}K1`` and
``SuperResK{3,5,7}K{3,5,7}`` types (the official code draws from the union of
both families, which is how the zoo's latency models mix ``K3K3``/``K5K5`` and
``K1K5K1`` blocks after starting from an all-``K3K3`` network); the IDW group
holds the twelve ``SuperResIDWE{1,2,4,6}K{3,5,7}`` types (expansion and kernel
both change). A block never leaves its group.

After mutation the channels are re-chained and, like the official search,
every residual block with L ≥ 6 is split into two blocks (L = 3 at the
block's stride, then L − 3 at stride 1, the second taking the first's output):
the layer count stays, a projection shortcut is added. A split that would
exceed the parser's block limit is skipped, so a mutant always parses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import ClassVar

from torch import nn

from hwnas.errors import BudgetError, StructureError
from hwnas.models.builder import build
from hwnas.models.counts import Counts, count, effectiveness
from hwnas.models.spaces.base import register_space
from hwnas.models.structure import (
    BASIC,
    BOTTLENECK,
    CONV,
    INVERTED,
    MAX_BLOCKS,
    MAX_SUB_LAYERS,
    Block,
    Structure,
    chain,
    parse,
)
from hwnas.models.units import round8

WIDTH_RATIOS = (2.5, 2.0, 1.5, 1.25, 1.0, 1 / 1.25, 1 / 1.5, 1 / 2, 1 / 2.5)
MIN_WIDTH, MAX_WIDTH = 8, 2048
SPLIT_THRESHOLD = 6
IMAGE_CHANNELS = 3  # every network of these spaces reads an RGB image

# (kind, kernel, expansion) of every residual block type, by mutation group.
XXBL_TYPES = tuple((BOTTLENECK, k, None) for k in (3, 5, 7)) + tuple((BASIC, k, None) for k in (3, 5, 7))
IDW_TYPES = tuple((INVERTED, k, e) for k in (3, 5, 7) for e in (1, 2, 4, 6))
GROUPS = {BOTTLENECK: XXBL_TYPES, BASIC: XXBL_TYPES, INVERTED: IDW_TYPES}

# Initial networks of the official search scripts. ImageNet: the masternet of
# scripts/Zen_NAS_ImageNet_latency*.sh, whose last conv reads "(256,512,1,1)"
# there (unchained, the official parser does not check); here it takes the 512
# channels its predecessor outputs. CIFAR: scripts/Zen_NAS_cifar_params1M.sh.
IMAGENET_INITIAL = (
    "SuperConvK3BNRELU(3,32,2,1)SuperResK3K3(32,64,2,32,1)SuperResK3K3(64,128,2,64,1)"
    "SuperResK3K3(128,256,2,128,1)SuperResK3K3(256,512,2,256,1)SuperConvK1BNRELU(512,512,1,1)"
)
CIFAR_INITIAL = (
    "SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,1,8,1)SuperResK3K3(16,32,2,16,1)"
    "SuperResK3K3(32,64,2,32,1)SuperResK3K3(64,64,2,32,1)SuperConvK1BNRELU(64,128,1,1)"
)



def width_choices(channels: int) -> list[int]:
    """The widths a mutation may give a block whose width is ``channels``: ``smart_round(c·r, base=8)`` of
    the official code, which is :func:`round8` (max(8, 8·round(x/8)), ties to even)."""
    return sorted({int(round8(min(MAX_WIDTH, max(MIN_WIDTH, channels * r)))) for r in WIDTH_RATIOS})


def sub_layer_choices(sub_layers: int) -> list[int]:
    return sorted({min(MAX_SUB_LAYERS, max(1, sub_layers + d)) for d in (-2, -1, 0, 1, 2)})


def mutate_block(block: Block, rng: random.Random) -> Block:
    """One block of Alg. 3 (its input width is re-chained by the caller)."""
    if block.kind == CONV:
        return block.with_(out_channels=rng.choice(width_choices(block.out_channels)))
    kind, kernel, expansion = rng.choice(GROUPS[block.kind])
    out = rng.choice(width_choices(block.out_channels))
    sub_layers = rng.choice(sub_layer_choices(block.sub_layers))
    mid = rng.choice(width_choices(block.mid))
    return Block(kind, kernel, block.in_channels, out, block.stride, sub_layers, mid, expansion)


def split(structure: Structure, threshold: int = SPLIT_THRESHOLD) -> Structure:
    """Split every residual block with L ≥ threshold into L = threshold//2 and the rest (official ``split``)."""
    blocks: list[Block] = []
    extra = sum(1 for b in structure.blocks if b.is_residual and b.sub_layers >= threshold)
    if len(structure.blocks) + extra > MAX_BLOCKS:
        return structure
    for b in structure.blocks:
        if b.is_residual and b.sub_layers >= threshold:
            first = threshold // 2
            blocks.append(b.with_(sub_layers=first))
            blocks.append(b.with_(in_channels=b.out_channels, stride=1, sub_layers=b.sub_layers - first))
        else:
            blocks.append(b)
    return Structure(tuple(blocks))


@dataclass(frozen=True)
class ZenNASSpace:
    """A structure-string space searched at one resolution and class count."""

    name: str
    resolution: int
    num_classes: int
    initial_text: str
    default_proxy: ClassVar[str] = "zen"  # the proxy a search uses unless told otherwise

    # text <-> architecture
    def parse(self, text: str) -> Structure:
        arch = parse(text)
        if arch.in_channels != IMAGE_CHANNELS:
            raise StructureError(f"the stem takes {arch.in_channels} input channels; expected {IMAGE_CHANNELS} "
                                 "(the RGB image)", text.strip(), text.strip().index("(") + 1)
        return arch

    def format(self, arch: Structure) -> str:
        return str(arch)

    # modules and counts
    def build(self, arch: Structure, *, no_residual: bool = False, use_se: bool = False) -> nn.Module:
        return build(arch, num_classes=self.num_classes, use_se=use_se, no_residual=no_residual)

    def counts(self, arch: Structure, *, use_se: bool = False) -> Counts:
        return count(arch, resolution=self.resolution, num_classes=self.num_classes, use_se=use_se)

    def fits(self, arch: Structure, max_params: float | None = None, max_flops: float | None = None) -> bool:
        """Whether the network's true params / table-rule FLOPs are within the budgets."""
        if max_params is None and max_flops is None:
            return True
        c = self.counts(arch)
        return (max_params is None or c.params <= max_params) and (max_flops is None or c.flops <= max_flops)

    # search
    def initial(self) -> Structure:
        return parse(self.initial_text)

    def mutate(self, arch: Structure, rng: random.Random, num_blocks: int = 1) -> Structure:
        """A mutant with ``num_blocks`` distinct blocks replaced (Alg. 3); the parent is untouched."""
        chosen = rng.sample(range(len(arch.blocks)), min(num_blocks, len(arch.blocks)))
        new = list(arch.blocks)
        for i in sorted(chosen):
            new[i] = mutate_block(new[i], rng)
        return split(chain(new))

    def sample(self, rng: random.Random, max_params: float | None = None,
               max_flops: float | None = None, steps: int = 24) -> Structure:
        """A random walk of ``steps`` mutations from the initial network, keeping only mutants within budget.

        When the initial network itself is over budget the walk starts from its
        narrowest form (every width 8, every L = 1); BudgetError if even that is over.
        """
        arch = self.initial()
        if not self.fits(arch, max_params, max_flops):
            arch = self.smallest()
            if not self.fits(arch, max_params, max_flops):
                c = self.counts(arch)
                raise BudgetError(
                    f"no network of space {self.name} fits params <= {max_params} and FLOPs <= {max_flops}: "
                    f"the narrowest initial network has {c.params} params and {c.flops} FLOPs")
        for _ in range(steps):
            candidate = self.mutate(arch, rng)
            if self.fits(candidate, max_params, max_flops):
                arch = candidate
        return arch

    def smallest(self) -> Structure:
        """The narrowest form of the initial network: every width 8, every L = 1 (strides never change, so
        no mutant of it is smaller)."""
        return chain(b.with_(out_channels=MIN_WIDTH, sub_layers=1, mid=None if b.mid is None else MIN_WIDTH)
                     for b in self.initial().blocks)

    def with_input(self, resolution: int | None = None, num_classes: int | None = None) -> "ZenNASSpace":
        return replace(self, resolution=resolution or self.resolution, num_classes=num_classes or self.num_classes)

    def effectiveness(self, arch: Structure) -> float:
        return effectiveness(arch)


@register_space("imagenet224")
def imagenet224() -> ZenNASSpace:
    return ZenNASSpace("imagenet224", 224, 1000, IMAGENET_INITIAL)


@register_space("cifar32")
def cifar32() -> ZenNASSpace:
    return ZenNASSpace("cifar32", 32, 10, CIFAR_INITIAL)
