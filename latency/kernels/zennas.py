"""How a Zen-NAS structure (spaces ``imagenet224``, ``cifar32``) splits into timed parts.

Every convolution of a block with its BN and ReLU is one part
(:func:`~hwnas.latency.kernels.base.conv_part`), a projection shortcut one
``proj`` part, an SE module one ``se`` part (``cin`` its channels, ``cout``
the reduced width); then the head (pooling + classifier). Residual additions
are not parts: the calibration's per-part terms account for them.

A network is a sum of per-block rows (each block at its input size, and the
head), so the predictor caches rows by block: :func:`block_fields` is a
block's value as a tuple (its cache key) and :class:`BlockColumns` holds many
new blocks of one kind as integer columns, which :func:`kernel_specs` expands
with the same rules as one block (:func:`hwnas.models.units.unit_rules`).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Iterator, NamedTuple

import numpy as np
from torch import nn

from hwnas.errors import HwnasError
from hwnas.latency.kernels.base import PROJECTION, Decomposition, Part, conv_part, conv_spec, register
from hwnas.models.builder import BN_EPS, SqueezeExcite
from hwnas.models.spaces.zennas import IDW_TYPES, XXBL_TYPES, ZenNASSpace
from hwnas.models.structure import CONV, INVERTED, KERNELS, Block, Structure
from hwnas.models.units import out_size, se_reduced, unit_rules

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
# Size range of the networks sampled for calibration and validation, per space: (counted quantity, low,
# high). The 224 range is a phone-class CPU target's.
SIZE_RANGES = {
    "imagenet224": ("flops", 50e6, 1.5e9),
    "cifar32": ("params", 0.1e6, 2.5e6),
}

BLOCK_FIELDS = ("kind", "kernel", "in_channels", "out_channels", "stride", "sub_layers", "mid", "expansion")
# A block's value as a tuple (equal blocks, equal tuples): hashed and compared in C, the row cache's key.
block_fields = attrgetter(*BLOCK_FIELDS)
_KIND_ORDER = {kind: i for i, kind in enumerate(KERNELS)}  # the order of the column groups


class BlockColumns(NamedTuple):
    """Many blocks of one ``kind`` and ``kernel`` as columns: the other fields of :class:`Block` as integer
    numpy arrays (one entry per block); ``sub_layers`` is the number of sub-layers expanded for every block.
    :func:`kernel_specs` reads it like a block and answers in columns too."""

    kind: str
    kernel: int
    in_channels: np.ndarray
    out_channels: np.ndarray
    stride: np.ndarray
    sub_layers: int
    mid: np.ndarray | None = None
    expansion: np.ndarray | None = None


def block_columns(keys: list[tuple]) -> dict[str, np.ndarray]:
    """The fields of many :func:`block_fields` keys as columns by field name (``kind`` as strings; 0 for a
    field that is None)."""
    fields = list(zip(*keys))
    out = {"kind": np.array(fields[0], dtype=object)}
    for name, values in zip(BLOCK_FIELDS[1:], fields[1:]):
        out[name] = np.array([0 if v is None else v for v in values], dtype=np.int64)
    return out


_CONV_OPS: dict[tuple[int, bool], str] = {}


def _conv_op(kernel: int, depthwise) -> str:
    """The part op of a conv kernel (the name :func:`conv_part` gives it), memoized; ``depthwise`` may be a
    boolean array that is all true or all false (block columns)."""
    if depthwise.__class__ is bool:  # a Block's kernel: the memo first (the one-at-a-time hot path)
        op = _CONV_OPS.get((kernel, depthwise))
        if op is not None:
            return op
    elif isinstance(depthwise, np.ndarray):
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
    for i, convs, _, projection, se_after, stride in unit_rules(block, use_se, sub_layers):
        size = h
        for j, (cin, cout, kernel, s, groups) in enumerate(convs):
            yield i, _conv_op(kernel, groups != 1), cin, cout, size, s, True
            size = (size - 1) // s + 1
            if j == se_after:
                yield i, "se", cout, se_reduced(cout), size, 1, True
        yield i, PROJECTION, convs[0][0], convs[-1][1], h, stride, projection is not None and projection
        h = size


@register(ZenNASSpace)
class ZenNASKernels(Decomposition):
    """The parts of a :class:`~hwnas.models.spaces.zennas.ZenNASSpace`: the kernels of every block, then the
    head."""

    block_arch = Structure
    block_key = staticmethod(block_fields)  # the row cache's key of a block

    @property
    def size_range(self):
        return SIZE_RANGES.get(self.space.name)

    def block_kernels(self, block: Block, resolution: int, use_se: bool = False,
                      sub_layers: int | None = None) -> list[tuple]:
        """The parts of :meth:`block_parts` as plain tuples ``(sub_layer, op, cin, cout, resolution, stride)``
        (no :class:`Part` objects); ``sub_layers`` keeps only the parts of the first ``sub_layers``
        sub-layers."""
        return [k[:6] for k in kernel_specs(block, resolution, use_se and block.is_residual, sub_layers) if k[6]]

    def weighted_kernels(self, block: Block, resolution: int) -> list[tuple]:
        """The parts of one block as ``(weight, op, cin, cout, resolution, stride)``: those of its first two
        sub-layers only, every sub-layer after the first being the same (the second one's count L − 1
        times)."""
        later = float(block.sub_layers - 1)
        return [(1.0 if sub == 0 else later, op, cin, cout, size, stride)
                for sub, op, cin, cout, size, stride, present in kernel_specs(block, resolution, sub_layers=2)
                if present]

    def kernel_columns(self, keys: list[tuple], sizes: np.ndarray) -> tuple:
        """:meth:`weighted_kernels` of many blocks (:func:`block_fields` keys at input sizes ``sizes``) at once,
        as columns: ``(owner, weight, ops, code, cin, cout, size, stride)``, one entry per kernel; ``owner``
        is the index of its block in ``keys``, ``code`` its op's index in ``ops``.

        One pass of :func:`kernel_specs` per (kind, kernel) on :class:`BlockColumns`.
        """
        fields = block_columns(keys)
        kinds = fields["kind"]
        group = np.array([_KIND_ORDER[k] for k in kinds.tolist()], dtype=np.int64) * 16 + fields["kernel"]
        order = np.argsort(group, kind="stable")
        groups, first = np.unique(group[order], return_index=True)
        names: dict[str, int] = {}
        owner, weight, code, counts, cin, cout, size, stride = [], [], [], [], [], [], [], []
        for at in np.split(order, first[1:]):
            kind, m = kinds[at[0]], len(at)
            f = {name: column[at] for name, column in fields.items()}
            cols = BlockColumns(kind, int(f["kernel"][0]), f["in_channels"], f["out_channels"], f["stride"], 2,
                                None if kind == CONV else f["mid"], f["expansion"] if kind == INVERTED else None)
            later = (f["sub_layers"] - 1).astype(float)
            multi = f["sub_layers"] >= 2  # blocks that have a second sub-layer
            all_multi = bool(multi.all())
            ones = np.ones(m)
            for sub, op, ci, co, sz, st, present in kernel_specs(cols, sizes[at], sub_layers=2):
                w = ones if sub == 0 else later
                keep = present  # the parts that exist: True, or a mask over the blocks
                if sub > 0 and not all_multi:
                    keep = multi & present
                own = at
                if keep is not True:
                    keep = np.asarray(keep)
                    k = int(np.count_nonzero(keep))
                    if k == 0:
                        continue
                    if k < m:
                        own, w = at[keep], w[keep]
                        ci, co, sz, st = (v[keep] if isinstance(v, np.ndarray) else v for v in (ci, co, sz, st))
                owner.append(own)
                weight.append(w)
                code.append(names.setdefault(op, len(names)))
                counts.append(len(own))
                for column, value in ((cin, ci), (cout, co), (size, sz), (stride, st)):
                    column.append(value if isinstance(value, np.ndarray) else np.full(len(own), value, dtype=np.int64))
        return (np.concatenate(owner), np.concatenate(weight), list(names),
                np.repeat(np.array(code, dtype=np.int64), counts),
                *(np.concatenate(c) for c in (cin, cout, size, stride)))

    def block_parts(self, block: Block, resolution: int, use_se: bool = False) -> list[Part]:
        """The kernels of one block on a ``resolution``² input, in forward order."""
        return [Part(op, cin, cout, size, stride) for _, op, cin, cout, size, stride
                in self.block_kernels(block, resolution, use_se)]

    def head_part(self, width: int, resolution: int) -> Part:
        """The head (pooling + classifier) on a ``width``-channel ``resolution``² input."""
        return Part(op="head", cin=width, cout=self.space.num_classes, resolution=resolution)

    def parts(self, arch: Structure, use_se: bool = False) -> list[Part]:
        """Every kernel of every block (:meth:`block_parts`), then the head."""
        out: list[Part] = []
        h = self.space.resolution
        for b in arch.blocks:
            out += self.block_parts(b, h, use_se)
            h = out_size(h, b.stride)
        out.append(self.head_part(arch.out_channels, h))
        return out

    def build_part(self, part: Part) -> tuple[nn.Module, tuple[int, int, int]]:
        shape = (part.cin, part.resolution, part.resolution)
        if part.op == "head":
            return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(part.cin, part.cout)), shape
        if part.op == "se":
            return SqueezeExcite(part.cin), shape
        spec = conv_spec(part)
        if spec is None:
            raise HwnasError(f"space {self.space.name} has no part {part.op!r}")
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
        for every grid width. Both grids hold the kernels of both block groups
        (XXBL and IDW: a profile covers every block the parser accepts, the
        ZenNet zoo's inverted-residual networks included); the full grid has
        more widths.
        """
        try:
            widths = GRID_WIDTHS[grid]
        except KeyError:
            raise HwnasError(f"unknown grid {grid!r}; expected one of: {', '.join(GRID_WIDTHS)}") from None
        initial = self.space.initial()
        types = [*XXBL_TYPES, *IDW_TYPES]
        probes: list[tuple[Block, int]] = []  # blocks whose kernels mark the positions
        h = self.space.resolution
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
            yield self.head_part(w, last)
