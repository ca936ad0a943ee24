"""Batch-time cost of any part of a profile's space, from the profile's table.

Convolution kernels are looked up in a :class:`~hwnas.latency.grids.KernelGrid`
per position (see :mod:`hwnas.latency.grids`). Any other part (the head,
NB201 cell ops) is interpolated within its group (everything but the widths)
by a small cost model ``a + b·MACs + c·activation elements`` times the
measured/model ratio, interpolated linearly in log-width space.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.optimize import nnls

from hwnas.errors import ProfileError
from hwnas.latency.grids import FlatGrids, KernelGrid, width_family
from hwnas.latency.kernels import PROJECTION, Part, conv_spec
from hwnas.models.units import out_size


def part_features(part: Part) -> tuple[float, float, float]:
    """(MACs, input elements, output elements) of one part at batch 1.

    Exact for convolution kernels and the head; for other ops (NB201 cell ops,
    SE) a width-scaling proxy, which only shapes interpolation between grid widths.
    """
    r_in = part.resolution
    r_out = out_size(r_in, part.stride)
    inp = float(part.cin * r_in * r_in)
    spec = conv_spec(part)
    if spec is not None:
        kernel, groups = spec
        macs = part.cin // groups * part.cout * kernel * kernel * r_out * r_out
        return float(macs), inp, float(part.cout * r_out * r_out)
    if part.op == "head":
        return inp + part.cin * part.cout, inp, float(part.cout)
    macs = float(max(part.cin, 1) * max(part.cout, 1) * r_out * r_out + max(part.mid, 0) * r_out * r_out)
    return macs, inp, float(max(part.cout, 1) * r_out * r_out)


@lru_cache(maxsize=None)
def op_shape(op: str) -> tuple[bool, int, bool]:
    """(dense convolution, weights per (in, out) channel pair, depthwise) of a part op: a part's weights are
    that × (cout if depthwise else cin × cout); k² for a k×k kernel, 1 for the head's classifier, 0 for other
    ops."""
    if op == "head":
        return False, 1, False
    spec = conv_spec(Part(op, 1, 1, 1))
    if spec is None:
        return False, 0, False
    depthwise = op.startswith("dw")
    return not depthwise, spec[0] * spec[0], depthwise


def misaligned(dense, cin, cout, block: int):
    """The misalignment rule, on scalars or numpy arrays: a dense convolution (``dense``) whose channel
    counts are not multiples of ``block`` (a 3-channel input, the stem, does not count)."""
    return dense & (cin > 3) & ((cin % block != 0) | (cout % block != 0))


def channel_block(metadata: dict) -> int:
    """SIMD block of the profiled device in floats: 16 with AVX-512, 8 otherwise (and on GPUs)."""
    simd = metadata.get("device", {}).get("simd", [])
    return 16 if "avx512f" in simd else 8


def _table_op(part: Part) -> str:
    return "conv1" if part.op == PROJECTION else part.op


def _group_key(part: Part):
    return (_table_op(part), bool(part.first), int(part.stride), bool(part.se), str(part.extra), int(part.resolution))


def _log_widths(parts) -> np.ndarray:
    return np.log2(np.array([[max(p.cin, 1), max(p.cout, 1), max(p.mid, 1)] for p in parts], dtype=float))



class _Interp:
    """Linear interpolation of a value over grid points in log-width space (nearest point outside the hull)."""

    def __init__(self, x: np.ndarray, value: np.ndarray):
        # Keep one column of every set of columns that move together (cin = cout, cin = cout/2 ...).
        keep = []
        for j in range(x.shape[1]):
            if np.ptp(x[:, j]) < 1e-9:
                continue
            if any(np.ptp(x[:, j] - x[:, k]) < 1e-9 for k in keep):
                continue
            keep.append(j)
        self.keep = keep
        self.x, self.value = x[:, keep], value
        self._simplices = None
        if len(keep) >= 2 and len(value) > len(keep):
            from scipy.spatial import Delaunay, QhullError

            try:
                tri = Delaunay(self.x)
                # Barycentric maps of every simplex, computed once (batched), searched by brute force:
                # groups hold tens of points, and this beats scipy's per-call find_simplex.
                simplices = tri.simplices
                corners = self.x[simplices]  # (n, d+1, d)
                origin = corners[:, -1, :]
                edges = np.transpose(corners[:, :-1, :] - origin[:, None, :], (0, 2, 1))
                ok = np.abs(np.linalg.det(edges)) > 1e-12
                self._simplices, self._origin = simplices[ok], origin[ok]
                self._inverse = np.linalg.inv(edges[ok])
            except (QhullError, ValueError):
                self._simplices = None
        elif len(keep) == 1:
            order = np.argsort(self.x[:, 0])
            self.x1, self.v1 = self.x[order, 0], value[order]

    def __call__(self, logw: np.ndarray) -> float:
        if not self.keep:
            return float(np.median(self.value))
        q = logw[self.keep]
        if len(self.keep) == 1:
            return float(np.interp(q[0], self.x1, self.v1))
        if self._simplices is not None and len(self._simplices):  # linear (barycentric) inside the hull
            bary = np.einsum("nij,nj->ni", self._inverse, q - self._origin)
            inside = (bary >= -1e-9).all(axis=1) & (bary.sum(axis=1) <= 1 + 1e-9)
            hits = np.flatnonzero(inside)
            if hits.size:
                i = hits[0]
                return float(self.value[self._simplices[i]] @ np.append(bary[i], 1.0 - bary[i].sum()))
        return float(self.value[np.argmin(((self.x - q) ** 2).sum(axis=1))])  # nearest grid point outside


class _Group:
    """Cost model ``a + b·MACs + c·activations`` (non-negative, fitted for relative error) and the
    interpolated measured/model ratio of one group of non-kernel parts."""

    def __init__(self, parts: list[Part], ms: np.ndarray):
        feats = np.array([part_features(p) for p in parts])
        design = np.column_stack([np.ones(len(parts)), feats[:, 0] / 1e6, (feats[:, 1] + feats[:, 2]) / 1e6])
        if len(parts) < 3:
            design = design[:, :2]  # too few points for three coefficients
        w = 1.0 / ms
        coef, _ = nnls(design * w[:, None], ms * w)
        if not np.any(coef > 0):
            coef = np.zeros(design.shape[1])
            coef[0] = float(np.median(ms))
        self.coef = coef
        self.ratio = _Interp(_log_widths(parts), ms / np.maximum(design @ coef, 1e-12))

    def ms(self, part: Part) -> float:
        f = part_features(part)
        row = np.array([1.0, f[0] / 1e6, (f[1] + f[2]) / 1e6])[: len(self.coef)]
        return float(row @ self.coef) * self.ratio(_log_widths([part])[0])


class PartTable:
    """Batch-time cost of any part of a profile's space, from the profile's table.

    ``block`` is the device's SIMD block in floats (:func:`channel_block`); with
    it, convolution kernels are interpolated within their width family (see
    :class:`KernelGrid`). A projection shortcut is looked up as the 1×1 kernel
    at its position.
    """

    def __init__(self, table, block: int | None = None):
        self.block = block
        self._cache: dict[Part, float] = {}
        groups: dict[tuple, list] = {}
        for row in table.itertuples(index=False):
            part = Part(op=row.op, cin=int(row.cin), cout=int(row.cout), resolution=int(row.resolution),
                        stride=int(row.stride), mid=int(row.mid), first=bool(row.first), se=bool(row.se),
                        extra=str(row.extra))
            ms = float(row.median_ms)
            if not (ms > 0 and math.isfinite(ms)):
                raise ProfileError(f"profile table has a non-positive or non-finite latency for {part}")
            self._cache[part] = ms
            groups.setdefault(_group_key(part), []).append((part, ms))
        self._raw_groups = groups
        self._measured = tuple(self._cache)
        self._groups: dict[tuple, object] = {}
        self._flat = FlatGrids()
        self._positions: dict = {}
        self._position_index: dict = {}  # (op, resolution, stride) -> row of _position_rows
        self._position_rows = np.zeros((64, 5), dtype=np.int64)

    def _group(self, key, part: Part):
        group = self._groups.get(key)
        if group is None:
            rows = self._raw_groups.get(key)
            if rows is None:
                hint = ("profiles measured before the depthwise kernels of inverted-residual (IDW) blocks were in "
                        "the grid lack them: use one that has them (the shipped ort-cpu1-b1-imagenet224-avx2 or "
                        "-zen5) or profile this machine" if part.op.startswith("dw") else
                        "was it measured for another space?")
                raise ProfileError(
                    f"the profile has no measurements for op {part.op} (stride={part.stride}, first={part.first}, "
                    f"se={part.se}) at input resolution {part.resolution}; the profile's grid does not cover this "
                    f"part of the architecture ({hint})")
            spec = conv_spec(rows[0][0])
            if spec is not None and rows[0][0].op.startswith("dw"):  # depthwise: one width (in = out)
                group = KernelGrid({(1, p.cout): ms for p, ms in rows}, self.block)
            elif spec is not None:
                group = KernelGrid({(p.cin, p.cout): ms for p, ms in rows}, self.block)
            else:
                group = _Group([p for p, _ in rows], np.array([ms for _, ms in rows]))
            self._groups[key] = group
        return group

    def ms(self, part: Part) -> float:
        """Batch time (ms) of one part measured in isolation, interpolated between grid widths."""
        hit = self._cache.get(part)
        if hit is not None:
            return hit
        group = self._group(_group_key(part), part)
        if isinstance(group, KernelGrid):  # a projection reads its 1x1 twin's grid (exact on grid points)
            value = group(1 if part.op.startswith("dw") else part.cin, part.cout)
        else:
            value = max(group.ms(part), 1e-6)
        if len(self._cache) > 1_000_000:  # a long search: keep memory bounded
            self._cache = {p: self._cache[p] for p in self._measured}
        self._cache[part] = value
        return value


    def many_ms(self, ops, cin, cout, resolution, stride) -> np.ndarray:
        """:meth:`ms` of many parts with default ``mid``, ``first``, ``se`` and ``extra``, given as columns.

        Convolution kernels are interpolated all at once (:class:`FlatGrids`);
        other parts (rare) go through :meth:`ms` one by one.
        """
        names = list(dict.fromkeys(ops))
        index = {op: i for i, op in enumerate(names)}
        return self.coded_ms(names, np.fromiter((index[op] for op in ops), dtype=np.int64, count=len(ops)),
                             cin, cout, resolution, stride)

    def _position(self, op: str, resolution: int, stride: int):
        """(grid id of each of the four width families, depthwise) of a kernel position, memoized; None for
        a part that is not a convolution kernel."""
        key = (op, resolution, stride)
        hit = self._positions.get(key, False)
        if hit is False:
            part = Part(op, 1, 1, resolution, stride)
            gkey = _group_key(part)
            group = self._group(gkey, part)
            hit = None
            if isinstance(group, KernelGrid):
                fams = ((True, True), (True, False), (False, True), (False, False))
                hit = [self._flat.grid_id(gkey, group, f) for f in fams], op.startswith("dw")
            self._positions[key] = hit
        return hit

    def coded_ms(self, names: list, code, cin, cout, resolution, stride) -> np.ndarray:
        """:meth:`many_ms` with the ops given as indices ``code`` into ``names``."""
        cin, cout = np.asarray(cin, dtype=np.int64), np.asarray(cout, dtype=np.int64)
        resolution, stride = np.asarray(resolution, dtype=np.int64), np.asarray(stride, dtype=np.int64)
        n = len(cin)
        pos = (code * (int(resolution.max()) + 1) + resolution) * (int(stride.max()) + 1) + stride
        positions, first, inverse = np.unique(pos, return_index=True, return_inverse=True)
        # Per position: the grid id of each of the four width families (-1: not a kernel position), and
        # whether it is depthwise, as a row of the memo (_position_rows).
        index, memo = [], self._position_index
        for c, r, st in zip(code[first].tolist(), resolution[first].tolist(), stride[first].tolist()):
            key = (names[c], r, st)
            i = memo.get(key)
            if i is None:
                hit = self._position(*key)
                i = memo[key] = len(memo)
                if i >= len(self._position_rows):
                    self._position_rows = np.concatenate([self._position_rows, np.zeros_like(self._position_rows)])
                self._position_rows[i] = (-1, -1, -1, -1, 0) if hit is None else (*hit[0], int(hit[1]))
            index.append(i)
        table = self._position_rows[index]
        gids, depthwise = table[:, :4], table[:, 4].astype(bool)
        inverse = inverse.reshape(n)
        widths = np.where(depthwise[inverse], 1, cin)  # depthwise kernels are keyed (1, channels)
        fin, fout = width_family(widths, cout, self.block)
        gid = gids[inverse, 2 * (1 - np.asarray(fin, dtype=np.int64)) + (1 - np.asarray(fout, dtype=np.int64))]
        out = np.empty(n)
        kernel = gid >= 0
        if kernel.all():
            out[:] = self._flat(gid, widths, cout)
        else:
            out[kernel] = self._flat(gid[kernel], widths[kernel], cout[kernel])
            out[~kernel] = [self.ms(Part(names[code[j]], int(cin[j]), int(cout[j]), int(resolution[j]),
                                         int(stride[j]))) for j in np.flatnonzero(~kernel)]
        return np.maximum(out, 1e-6)
