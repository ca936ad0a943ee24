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
from typing import Iterator

import numpy as np
from torch import nn

from hwnas.errors import BudgetError, HwnasError
from hwnas.models.builder import BN_EPS, SqueezeExcite, build
from hwnas.models.counts import Counts, count, effectiveness
from hwnas.models.spaces.base import PROJECTION, Part, conv_part, conv_spec, register_space
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
from hwnas.models.units import BlockColumns, out_size, round8, se_reduced, unit_specs

WIDTH_RATIOS = (2.5, 2.0, 1.5, 1.25, 1.0, 1 / 1.25, 1 / 1.5, 1 / 2, 1 / 2.5)
MIN_WIDTH, MAX_WIDTH = 8, 2048
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
    # AVX-512 (ONNX Runtime's 16-float blocks) run such convs on a slower path, so the table needs both
    # families, each a grid of its own (the predictor interpolates within a family).
    "coarse": (8, 16, 24, 32, 40, 64, 72, 128, 136, 256, 264, 512, 520, 1024, 1032, 2048),
    "full": (8, 16, 24, 32, 40, 48, 56, 64, 72, 96, 104, 128, 136, 192, 200, 256, 264, 384, 392, 512, 520,
             768, 776, 1024, 1032, 1536, 1544, 2048),
}


_CONV_OPS: dict[tuple[int, bool], str] = {}


def _conv_op(kernel: int, depthwise) -> str:
    """The part op of a conv kernel (the name :func:`conv_part` gives it), memoized; ``depthwise`` may be a
    boolean array that is all true or all false (block columns)."""
    if isinstance(depthwise, np.ndarray):
        if depthwise.any() != depthwise.all():
            raise ValueError("block columns mix dense and depthwise convolutions at one position")
        depthwise = bool(depthwise.all())
    op = _CONV_OPS.get((kernel, depthwise))
    if op is None:
        op = _CONV_OPS[(kernel, depthwise)] = conv_part(2, 2, kernel, 1, 2 if depthwise else 1, 1).op
    return op


def kernel_specs(block: Block | BlockColumns, resolution, use_se: bool = False,
                 sub_layers: int | None = None) -> Iterator[tuple]:
    """The parts of a block's units, stated once for a :class:`Block` and for :class:`BlockColumns`.

    Yields ``(sub_layer, op, cin, cout, resolution, stride, present)`` in
    forward order: every convolution (:func:`conv_part`'s op), an SE module
    after the conv the unit names (``"se"``, ``cin`` its channels, ``cout``
    the reduced width), then the unit's projection shortcut (:data:`PROJECTION`),
    which is ``present`` only where the unit has one (everything else is always
    present). For columns (and an array ``resolution``) the widths, sizes,
    strides and ``present`` are arrays, one entry per block.
    """
    h = resolution
    for i, convs, _, shortcut, se_after, stride in unit_specs(block, use_se, sub_layers=sub_layers):
        size = h
        for j, (cin, cout, kernel, s, groups) in enumerate(convs):
            yield i, _conv_op(kernel, groups != 1), cin, cout, size, s, True
            size = (size - 1) // s + 1
            if j == se_after:
                yield i, "se", cout, se_reduced(cout), size, 1, True
        yield i, PROJECTION, convs[0][0], convs[-1][1], h, stride, shortcut == "proj"
        h = size


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

    # latency-table parts
    def block_kernels(self, block: Block, resolution: int, use_se: bool = False,
                      sub_layers: int | None = None) -> list[tuple]:
        """The parts of :meth:`block_parts` as plain tuples ``(sub_layer, op, cin, cout, resolution, stride)``.

        The fast form the predictor reads (no :class:`Part` objects), from
        :func:`kernel_specs`; ``sub_layers`` keeps only the parts of the first
        ``sub_layers`` sub-layers.
        """
        return [k[:6] for k in kernel_specs(block, resolution, use_se and block.is_residual, sub_layers) if k[6]]

    def block_parts(self, block: Block, resolution: int, use_se: bool = False) -> list[Part]:
        """The kernels of one block on a ``resolution``² input, in forward order.

        Every convolution with its BN and ReLU is one part (:func:`conv_part`),
        a projection shortcut one ``proj`` part, an SE module one ``se`` part
        (``cin`` its channels, ``cout`` the reduced width). Residual additions
        are not parts: the calibration's per-part terms account for them.
        """
        return [Part(op, cin, cout, size, stride) for _, op, cin, cout, size, stride
                in self.block_kernels(block, resolution, use_se)]

    def parts(self, arch: Structure, use_se: bool = False) -> list[Part]:
        """Every kernel of every block (:meth:`block_parts`), then the head (pooling + classifier)."""
        out: list[Part] = []
        h = self.resolution
        for b in arch.blocks:
            out += self.block_parts(b, h, use_se)
            h = out_size(h, b.stride)
        out.append(Part(op="head", cin=arch.out_channels, cout=self.num_classes, resolution=h))
        return out

    def build_part(self, part: Part) -> tuple[nn.Module, tuple[int, int, int]]:
        shape = (part.cin, part.resolution, part.resolution)
        if part.op == "head":
            return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(part.cin, part.cout)), shape
        if part.op == "se":
            return SqueezeExcite(part.cin), shape
        spec = conv_spec(part)
        if spec is None:
            raise HwnasError(f"space {self.name} has no part {part.op!r}")
        kernel, groups = spec
        conv = nn.Conv2d(part.cin, part.cout, kernel, part.stride, kernel // 2, groups=groups,
                         bias=part.op == PROJECTION)
        tail = [] if part.op == PROJECTION else [nn.ReLU()]
        return nn.Sequential(conv, nn.BatchNorm2d(part.cout, eps=BN_EPS), *tail), shape

    def grid_parts(self, grid: str = "coarse") -> Iterator[Part]:
        """Kernels on a width grid, at every position (kernel, stride, input size) the space can produce.

        Strides never change under mutation, so the initial network fixes the
        positions: the kernels of each block type of the grid's group(s) as the
        first sub-layer of a residual block at its input size and stride (and at
        stride 1 on its output size, where a split starts a block), as a later
        sub-layer on the output size, and the stem and the final conv where the
        initial network has them. At each position every (in, out) width pair
        of the grid is measured (depthwise kernels: in = out; the stem: in = 3),
        except kernels over ``GRID_MAX_MACS`` per image (more than a whole
        network of the latency range spends in one layer). Projection shortcuts
        are measured as the 1×1 kernel at their position. The head is measured
        for every grid width. The coarse grid holds the block group of the
        initial network (XXBL or IDW), the full grid both and more widths.
        """
        try:
            widths = GRID_WIDTHS[grid]
        except KeyError:
            raise HwnasError(f"unknown grid {grid!r}; expected one of: {', '.join(GRID_WIDTHS)}") from None
        initial = self.initial()
        residual = [b for b in initial.blocks if b.is_residual]
        groups = {GROUPS[b.kind] for b in residual} if grid == "coarse" else {XXBL_TYPES, IDW_TYPES}
        types = [t for g in groups for t in g]
        probes: list[tuple[Block, int]] = []  # blocks whose kernels mark the positions
        h = self.resolution
        for b in initial.blocks:
            h_out = out_size(h, b.stride)
            if b.is_residual:
                for kind, k, e in types:
                    for size, stride in ((h, b.stride), (h_out, 1)):
                        probes.append((Block(kind, k, 16, 16, stride, 2, 16, e), size))
            else:
                probes.append((b, h))
            h = h_out
        last = h
        # A position may hold a stem (3 input channels) and a block's kernel at once (cifar32's first
        # block runs at the stem's size and stride): both sets of widths are measured there.
        positions: set[tuple[str, int, int, str]] = set()
        for block, size in probes:
            for p in self.block_parts(block, size):
                op = "conv1" if p.op == PROJECTION else p.op
                shape = "stem" if p.cin == 3 else "depthwise" if op.startswith("dw") else "full"
                positions.add((op, p.stride, p.resolution, shape))
        for op, stride, size, shape in sorted(positions):
            kernel = conv_spec(Part(op, 1, 1, size))[0]
            area = out_size(size, stride) ** 2 * kernel * kernel
            if shape == "stem":
                pairs = [(3, w) for w in widths]
            elif shape == "depthwise":
                pairs = [(w, w) for w in widths]
            else:
                pairs = [(a, w) for a in widths for w in widths if a * w * area <= GRID_MAX_MACS]
            for cin, cout in pairs:
                yield Part(op, cin, cout, size, stride)
        for w in widths:
            yield Part("head", w, self.num_classes, last)

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
