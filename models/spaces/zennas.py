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
from dataclasses import dataclass
from typing import Iterator

from torch import nn

from hwnas.errors import BudgetError, HwnasError
from hwnas.models.builder import UnitModule, build
from hwnas.models.counts import Counts, count
from hwnas.models.spaces.base import Part, register_space
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
from hwnas.models.units import block_units, out_size

WIDTH_RATIOS = (2.5, 2.0, 1.5, 1.25, 1.0, 1 / 1.25, 1 / 1.5, 1 / 2, 1 / 2.5)
MIN_WIDTH, MAX_WIDTH, WIDTH_BASE = 8, 2048, 8
SPLIT_THRESHOLD = 6

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

# Width grids of grid_parts, and the largest part (MACs per image) a grid holds.
GRID_MAX_MACS = 400e6
GRID_WIDTHS = {
    # Powers of two and, next to each, a width that is a multiple of 8 but not of 16: CPUs with
    # AVX-512 (ONNX Runtime's 16-float blocks) run such convs on a slower path, so the table needs both.
    "coarse": (8, 16, 24, 32, 40, 64, 72, 128, 136, 256, 264, 512, 520, 1024, 1032, 2048),
    "full": (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048),
}


def round_width(x: float) -> int:
    """``smart_round(x, base=8)`` of the official code: max(8, 8·round(x/8)), ties to even."""
    return max(WIDTH_BASE, round(x / WIDTH_BASE) * WIDTH_BASE)


def width_choices(channels: int) -> list[int]:
    """The widths a mutation may give a block whose width is ``channels``."""
    return sorted({round_width(min(MAX_WIDTH, max(MIN_WIDTH, channels * r))) for r in WIDTH_RATIOS})


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


def _units_per_sub_layer(kind: str) -> int:
    return 2 if kind in (BOTTLENECK, INVERTED) else 1


@dataclass(frozen=True)
class ZenNASSpace:
    """A structure-string space searched at one resolution and class count."""

    name: str
    resolution: int
    num_classes: int
    initial_text: str

    # text <-> architecture
    def parse(self, text: str) -> Structure:
        return parse(text)

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
            arch = chain(b.with_(out_channels=MIN_WIDTH, sub_layers=1,
                                 mid=None if b.mid is None else MIN_WIDTH) for b in arch.blocks)
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

    # latency-table parts
    def parts(self, arch: Structure, use_se: bool = False) -> list[Part]:
        """One part per sub-layer of every block, then the head (pooling + classifier)."""
        out: list[Part] = []
        h = self.resolution
        for b in arch.blocks:
            h_out = out_size(h, b.stride)
            se = use_se and b.is_residual
            for i in range(b.sub_layers):
                out.append(Part(op=b.name, cin=b.in_channels if i == 0 else b.out_channels, cout=b.out_channels,
                                resolution=h if i == 0 else h_out, stride=b.stride if i == 0 else 1,
                                mid=b.mid or 0, first=i == 0, se=se))
            h = h_out
        out.append(Part(op="head", cin=arch.out_channels, cout=self.num_classes, resolution=h))
        return out

    def build_part(self, part: Part) -> tuple[nn.Module, tuple[int, int, int]]:
        shape = (part.cin, part.resolution, part.resolution)
        if part.op == "head":
            return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(part.cin, part.cout)), shape
        block = _part_block(part)
        skip = 0 if part.first else _units_per_sub_layer(block.kind)
        units = list(block_units(block, use_se=part.se and block.is_residual))[skip:]
        return nn.Sequential(*(UnitModule(u) for u in units)), shape

    def grid_parts(self, grid: str = "coarse") -> Iterator[Part]:
        """Parts on a width grid, at the positions (input size, stride) where the space can produce them.

        Strides never change under mutation, so the initial network fixes every
        position: the stem; each residual block's first sub-layer at its input
        size and stride (and, for the blocks a split creates, at stride 1 on the
        output size); later sub-layers at the output size; the final 1×1 conv
        (any in × out width) and the head on the last size. Widths come from the
        grid, inner widths are cout/4, cout/2, cout, a stride-2 first sub-layer
        reads cout/2 channels. Parts over ``GRID_MAX_MACS`` (per image, more than
        a whole network of the latency range would spend in one sub-layer) are
        left out. The coarse grid holds the block group of the initial network
        (XXBL or IDW), the full grid both.
        """

        try:
            widths = GRID_WIDTHS[grid]
        except KeyError:
            raise HwnasError(f"unknown grid {grid!r}; expected one of: {', '.join(GRID_WIDTHS)}") from None
        initial = self.initial()
        residual = [b for b in initial.blocks if b.is_residual]
        groups = {GROUPS[b.kind] for b in residual} if grid == "coarse" else {XXBL_TYPES, IDW_TYPES}
        types = [t for g in groups for t in g]
        ops = [Block(kind, k, 8, 8, 1, 1, 8, e).name for kind, k, e in types]
        h = self.resolution
        first_slots, later_sizes, convs = set(), set(), []
        for b in initial.blocks:
            h_out = out_size(h, b.stride)
            if b.is_residual:
                first_slots.update({(h, b.stride), (h_out, 1)})
                later_sizes.add(h_out)
            else:
                convs.append((b, h))
            h = h_out
        last = h

        def small(part: Part) -> bool:
            block = _part_block(part)
            skip = 0 if part.first else _units_per_sub_layer(block.kind)
            size, macs = part.resolution, 0
            for u in list(block_units(block))[skip:]:
                for c in u.convs:
                    size = out_size(size, c.stride)
                    macs += c.weights * size * size
                size = out_size(part.resolution, part.stride)
            return macs <= GRID_MAX_MACS

        for b, size in convs:
            if b.in_channels == 3:  # the stem
                for w in widths:
                    yield Part(b.name, 3, w, size, b.stride, 0, True)
            else:  # a 1×1 (or k×k) conv on the trunk: any in × out width
                for cin in widths:
                    for w in widths:
                        part = Part(b.name, cin, w, size, b.stride, 0, True)
                        if small(part):
                            yield part
        for w in widths:
            yield Part("head", w, self.num_classes, last)
            mids = sorted({round_width(w / 4), round_width(w / 2), w})
            for op in ops:
                for mid in mids:
                    for size, stride in sorted(first_slots):
                        cin = w // 2 if stride == 2 else w
                        part = Part(op, cin, w, size, stride, mid, True)
                        if cin >= MIN_WIDTH and small(part):
                            yield part
                    for size in sorted(later_sizes):
                        part = Part(op, w, w, size, 1, mid, False)
                        if small(part):
                            yield part


def _part_block(part: Part) -> Block:
    """The one-block structure whose sub-layer 0 (``first``) or 1 (otherwise) this part is."""
    sub_layers = 1 if part.first else 2
    if part.op.startswith("SuperConv"):
        text = f"{part.op}({part.cin},{part.cout},{part.stride},{sub_layers})"
    else:
        text = f"{part.op}({part.cin},{part.cout},{part.stride},{part.mid},{sub_layers})"
    return parse(text).blocks[0]


@register_space("imagenet224")
def imagenet224() -> ZenNASSpace:
    return ZenNASSpace("imagenet224", 224, 1000, IMAGENET_INITIAL)


@register_space("cifar32")
def cifar32() -> ZenNASSpace:
    return ZenNASSpace("cifar32", 32, 10, CIFAR_INITIAL)
