"""Latency prediction from a profile: calibrated sum of the parts of an architecture.

Three steps, each with one place in this file:

1. **Part cost** (:class:`PartTable`). Convolution kernels (Conv + BN + ReLU,
   see :func:`hwnas.models.spaces.base.conv_part`) are looked up in a
   :class:`_KernelGrid` per position (kernel op, stride, input size): the
   logarithm of the time is interpolated bilinearly in (log in-width, log
   out-width) over the measured width grid, and extrapolated linearly beyond
   it. Convolutions whose channel counts are not multiples of the CPU's SIMD
   block (16 floats with AVX-512, else 8) run on a slower code path in ONNX
   Runtime (up to 1.8× here), so the grid holds both families of widths and a
   kernel is interpolated only from grid points of its own family (in-width
   aligned or not × out-width aligned or not). Any other part (the head, NB201
   cell ops) is interpolated within its group (everything but the widths) by
   a small cost model ``a + b·MACs + c·activation elements`` times the
   measured/model ratio, interpolated linearly in log-width space.
2. **Raw sum** of the part costs, plus network features the calibration may
   use (:data:`FEATURES`): ``boundary_mb``, the activation megabytes handed into
   the parts (each separately timed part pays for receiving and returning its
   activations, a whole network does not), the number of parts,
   ``misaligned_ms``, the part time spent in misaligned convolutions,
   ``weight_mb``, the parts' weights (a part timed alone keeps its weights in
   cache from run to run; in a whole network the other layers evict them), and
   ``boundary_mb2``, the sum of each part's boundary MB squared (a hand-off
   larger than the caches costs more per byte).
3. **Calibration** (:func:`fit_calibration`): a model fitted on whole networks
   measured end to end while profiling, in the form the data supports (chosen
   by leave-one-out error among affine, affine + boundary bytes, affine +
   boundary bytes + part count, the same + weight bytes (+ squared boundary
   bytes), log-log, affine + misaligned time, and affine + misaligned time +
   boundary bytes; for a finite space profiled with ONNX
   Runtime on CPU also ``graph``: + boundary bytes + the operator counts of
   the optimized graph and the cell's fan-out, see :mod:`hwnas.latency.graph`),
   stored in the profile.

Latency is reported per image: batch time / batch.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import Iterable

import numpy as np
from scipy.optimize import nnls

from hwnas.errors import ProfileError
from hwnas.latency.profile import Profile
from hwnas.models.spaces.base import PROJECTION, Part, conv_spec, get_space
from hwnas.models.structure import Structure
from hwnas.models.spaces.zennas import kernel_specs
from hwnas.models.structure import CONV, INVERTED, KINDS, unpack_keys
from hwnas.models.units import BlockColumns, out_size

PREDICTOR_VERSION = 2
# The batch path's block codes: row << 21 | (stride 2) << 20 | input size; head codes: row << 20 | size.
_SIZE_BITS = 20
_SIZE_MASK = (1 << _SIZE_BITS) - 1
_ROW_SHIFT = _SIZE_BITS + 1


_BLOCKS, _LAST, _KEY = attrgetter("blocks"), itemgetter(-1), attrgetter("key")
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_STRIDE, _OUT = attrgetter("stride"), attrgetter("out_channels")
CALIBRATION_FORMS = ("affine", "boundary", "boundary_count", "weights", "weights_b2", "loglog", "misaligned",
                     "misaligned_boundary", "graph")
# The per-network features of a prediction before calibration, in this order (Predictor.features): raw sum of
# part batch times (ms), boundary MB, number of parts, misaligned ms, weight MB, sum of squared boundary MB.
FEATURES = ("s", "b", "n", "m", "w", "b2")
_WIDTH = len(FEATURES)  # columns of the predictor's per-block rows


# --- 1. part cost -------------------------------------------------------------------------------

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


def part_params(part: Part) -> int:
    """Weights of one part (a convolution kernel or the head's classifier; 0 for other ops)."""
    spec = conv_spec(part)
    if spec is not None:
        kernel, groups = spec
        return part.cin // groups * part.cout * kernel * kernel
    return part.cin * part.cout if part.op == "head" else 0


def misaligned(dense, cin, cout, block: int):
    """The misalignment rule, on scalars or numpy arrays: a dense convolution (``dense``) whose channel
    counts are not multiples of ``block`` (a 3-channel input, the stem, does not count)."""
    return dense & (cin > 3) & ((cin % block != 0) | (cout % block != 0))


def is_misaligned(part: Part, block: int) -> bool:
    """Whether a part is a dense convolution with channel counts that are not multiples of ``block``."""
    spec = conv_spec(part)
    return bool(misaligned(spec is not None and spec[1] == 1, part.cin, part.cout, block))


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


def _width_family(cin, cout, block: int | None):
    """(in aligned, out aligned) of scalar or array widths for a SIMD ``block`` (a 3-channel input counts as
    aligned; without a block there is one family)."""
    if block is None:
        return True, True
    return (cin == 3) | (cin % block == 0), cout % block == 0


class _KernelGrid:
    """Measured times of one kernel position, interpolated bilinearly in log-log space per width family.

    ``points`` maps (cin, cout) to ms. A family is (cin aligned, cout aligned)
    for the SIMD ``block`` (:func:`_width_family`; depthwise kernels are keyed
    (1, channels)). Within a family the grid is the product of the measured in-
    and out-widths; a product point that was not measured (over the grid's MAC
    cap) is filled from the nearest measured point, scaled by MACs. A query
    falls in the family of its own widths (the nearest family that was
    measured, if its own was not); an axis measured at one width only answers
    for that width. :class:`_FlatGrids` interpolates many kernels at once (the batch path).
    """

    def __init__(self, points: dict[tuple[int, int], float], block: int | None):
        self.block = block
        fams: dict[tuple[bool, bool], dict] = {}
        for (cin, cout), ms in points.items():
            fams.setdefault(_width_family(cin, cout, block), {})[(cin, cout)] = ms
        self.families = {f: self._build(p) for f, p in fams.items()}

    @staticmethod
    def _build(points: dict):
        xs = sorted({a for a, _ in points})
        ys = sorted({b for _, b in points})
        have = list(points)
        table = []
        for a in xs:
            row = []
            for b in ys:
                ms = points.get((a, b))
                if ms is None:  # over the MAC cap: scale the nearest measured point by MACs
                    na, nb = min(have, key=lambda q: math.log(q[0] / a) ** 2 + math.log(q[1] / b) ** 2)
                    ms = points[(na, nb)] * (a * b) / (na * nb)
                row.append(math.log(ms))
            table.append(row)
        return [math.log(a) for a in xs], [math.log(b) for b in ys], table

    def family_for(self, fam: tuple[bool, bool]) -> tuple[bool, bool]:
        """The measured family a query of family ``fam`` reads: its own, else the nearest."""
        if fam in self.families:
            return fam
        return min(self.families, key=lambda f: (f[0] != fam[0]) + (f[1] != fam[1]))

    @staticmethod
    def _cell(axis: list, q: float):
        if len(axis) == 1:
            return 0, 0, 0.0
        i = min(max(bisect_right(axis, q) - 1, 0), len(axis) - 2)
        return i, i + 1, (q - axis[i]) / (axis[i + 1] - axis[i])

    def __call__(self, cin: int, cout: int) -> float:
        """One kernel (the generic per-part path; :class:`_FlatGrids` does the same for many at once)."""
        xs, ys, t = self.families[self.family_for(_width_family(cin, cout, self.block))]
        for axis, width in ((xs, cin), (ys, cout)):
            if len(axis) == 1 and abs(axis[0] - math.log(width)) > 1e-9:
                raise ProfileError(f"the profile measured this kernel position only at width "
                                   f"{round(math.exp(axis[0]))}, not {width}; its grid does not cover this part "
                                   "of the architecture")
        i0, i1, u = self._cell(xs, math.log(cin))
        j0, j1, v = self._cell(ys, math.log(cout))
        return math.exp((1 - u) * ((1 - v) * t[i0][j0] + v * t[i0][j1]) + u * ((1 - v) * t[i1][j0] + v * t[i1][j1]))


class _FlatGrids:
    """Every (kernel position, width family) grid in flat arrays: kernels of any positions are interpolated
    in one pass of numpy. The cell a width falls in is read from a table per distinct axis (the grids share a
    handful) over integer widths below ``TABLE_WIDTHS``; other widths are searched (searchsorted over all
    grids' log-width axes, each shifted by its grid id)."""

    SHIFT = 64.0  # more than the range of log widths (log 8192 < 10)
    TABLE_WIDTHS = 1 << 14

    def __init__(self):
        self.ids: dict = {}
        self._grids: list = []
        self._packed = None

    def grid_id(self, key, grid: _KernelGrid, fam: tuple[bool, bool]) -> int:
        fam = grid.family_for(fam)
        gid = self.ids.get((key, fam))
        if gid is None:
            gid = self.ids[(key, fam)] = len(self._grids)
            xs, ys, t = grid.families[fam]
            self._grids.append((np.array(xs), np.array(ys), np.array(t)))
            self._packed = None
        return gid

    def _pack(self):
        xs, ys, ts = zip(*self._grids)
        axes = []
        widths = np.log(np.arange(1, self.TABLE_WIDTHS, dtype=float))
        for ax in (xs, ys):
            n = np.array([len(a) for a in ax])
            offset = np.concatenate([[0], np.cumsum(n)[:-1]])
            flat = np.concatenate(ax)
            shifted = np.concatenate([a + g * self.SHIFT for g, a in enumerate(ax)])
            distinct: dict = {}
            which = np.array([distinct.setdefault(a.tobytes(), len(distinct)) for a in ax])
            if max(n) > 127:  # cells are stored as int8
                raise ProfileError("a kernel grid has more than 127 widths on an axis")
            table = np.zeros((len(distinct), self.TABLE_WIDTHS), dtype=np.int8)  # cell of width w (0: unused)
            for key, d in distinct.items():
                a = np.frombuffer(key)
                table[d, 1:] = np.clip(np.searchsorted(a, widths, side="right") - 1, 0, max(len(a) - 2, 0))
            axes.append((flat, shifted, offset, n, which, table))
        t_offset = np.concatenate([[0], np.cumsum([t.size for t in ts])[:-1]])
        self._packed = axes[0], axes[1], np.concatenate([t.ravel() for t in ts]), t_offset
        return self._packed

    def _cell(self, axis, gid: np.ndarray, width: np.ndarray):
        flat, shifted, offset, n, which, table = axis
        o, m = offset[gid], n[gid]
        q = np.log(width.astype(float))
        single = m == 1
        if width.max() < self.TABLE_WIDTHS and width.min() >= 1:
            i = table[which[gid], width]
        else:
            i = np.clip(np.searchsorted(shifted, q + gid * self.SHIFT, side="right") - 1 - o, 0,
                        np.maximum(m - 2, 0))
        i1 = np.where(single, i, i + 1)
        a0, a1 = flat[o + i], flat[o + i1]
        off = single & (np.abs(a0 - q) > 1e-9)
        if off.any():
            k = np.flatnonzero(off)[0]
            raise ProfileError(f"the profile measured this kernel position only at width {round(math.exp(a0[k]))}, "
                               f"not {round(math.exp(q[k]))}; its grid does not cover this part of the architecture")
        return i, i1, np.where(single, 0.0, (q - a0) / np.where(single, 1.0, a1 - a0))

    def __call__(self, gid: np.ndarray, cin: np.ndarray, cout: np.ndarray) -> np.ndarray:
        """Interpolated ms of kernels ``(cin[k], cout[k])`` (integer widths) on grids ``gid[k]``."""
        xaxis, yaxis, t, t_offset = self._packed or self._pack()
        i0, i1, u = self._cell(xaxis, gid, cin)
        j0, j1, v = self._cell(yaxis, gid, cout)
        base, width = t_offset[gid], yaxis[3][gid]
        r0, r1 = base + i0 * width, base + i1 * width
        return np.exp((1 - u) * ((1 - v) * t[r0 + j0] + v * t[r0 + j1]) + u * ((1 - v) * t[r1 + j0] + v * t[r1 + j1]))


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
    :class:`_KernelGrid`). A projection shortcut is looked up as the 1×1 kernel
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
        self._flat = _FlatGrids()
        self._positions: dict = {}
        self._position_index: dict = {}  # (op, resolution, stride) -> row of _position_rows
        self._position_rows = np.zeros((64, 5), dtype=np.int64)

    def group_keys(self):
        return list(self._raw_groups)

    def _group(self, key, part: Part):
        group = self._groups.get(key)
        if group is None:
            rows = self._raw_groups.get(key)
            if rows is None:
                raise ProfileError(
                    f"the profile has no measurements for op {part.op} (stride={part.stride}, first={part.first}, "
                    f"se={part.se}) at input resolution {part.resolution}; the profile's grid does not cover this "
                    "part of the architecture (was it measured for another space?)")
            spec = conv_spec(rows[0][0])
            if spec is not None and rows[0][0].op.startswith("dw"):  # depthwise: one width (in = out)
                group = _KernelGrid({(1, p.cout): ms for p, ms in rows}, self.block)
            elif spec is not None:
                group = _KernelGrid({(p.cin, p.cout): ms for p, ms in rows}, self.block)
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
        if isinstance(group, _KernelGrid):  # a projection reads its 1x1 twin's grid (exact on grid points)
            value = group(1 if part.op.startswith("dw") else part.cin, part.cout)
        else:
            value = max(group.ms(part), 1e-6)
        if len(self._cache) > 1_000_000:  # a long search: keep memory bounded
            self._cache = {p: self._cache[p] for p in self._measured}
        self._cache[part] = value
        return value


    def many_ms(self, ops, cin, cout, resolution, stride) -> np.ndarray:
        """:meth:`ms` of many parts with default ``mid``, ``first``, ``se`` and ``extra``, given as columns.

        Convolution kernels are interpolated all at once (:class:`_FlatGrids`);
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
            if isinstance(group, _KernelGrid):
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
        fin, fout = _width_family(widths, cout, self.block)
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

# --- 3. calibration ------------------------------------------------------------------------------

# The features each calibration form is linear in (plus an intercept); "log_s" is log(raw sum), "graph" the
# architecture's graph features (hwnas.latency.graph: a finite space's profile on ONNX Runtime CPU only).
FORM_FEATURES = {
    "affine": ("s",),
    "boundary": ("s", "b"),
    "boundary_count": ("s", "b", "n"),
    "weights": ("s", "b", "n", "w"),
    "weights_b2": ("s", "b", "n", "w", "b2"),
    "loglog": ("log_s",),
    "misaligned": ("s", "m"),
    "misaligned_boundary": ("s", "m", "b"),
    "graph": ("s", "b", "graph"),
}
# Ridge penalty of the graph form (on the relative-error-weighted design; the intercept is not penalized):
# the best of 0.03-3 in 10-fold cross validation on 400 and 1000 measured NB201 networks.
GRAPH_RIDGE = 0.3


def _features(form: str, f, log):
    """The terms of ``form`` from features ``f`` (indexed in :data:`FEATURES` order: floats of one network,
    or columns of many), graph features aside."""
    if form not in FORM_FEATURES:
        raise ProfileError(f"unknown calibration form {form!r}; expected one of {', '.join(CALIBRATION_FORMS)}")
    return [log(f[0]) if name == "log_s" else f[_COLUMN[name]] for name in FORM_FEATURES[form] if name != "graph"]


_COLUMN = {name: i for i, name in enumerate(FEATURES)}


def _columns(F) -> np.ndarray:
    F = np.asarray(F, dtype=float)
    F = F.reshape(1, -1) if F.ndim == 1 else F
    if F.shape[1] != len(FEATURES):
        raise ProfileError(f"expected {len(FEATURES)} features per network ({', '.join(FEATURES)}), got {F.shape[1]}")
    return F


def _design(form: str, F, x=None) -> np.ndarray:
    F = _columns(F)
    cols = _features(form, F.T, np.log)
    if "graph" in FORM_FEATURES[form]:
        if x is None:
            raise ProfileError("the graph calibration form needs the architectures' graph features")
        cols += list(np.asarray(x, dtype=float).reshape(len(F), -1).T)
    return np.column_stack(cols + [np.ones(len(F))])


def _fit(form: str, F, y, x=None) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    X = _design(form, F, x)
    if form == "loglog":
        coef, *_ = np.linalg.lstsq(X, np.log(y), rcond=None)
        return coef
    A = X / y[:, None]  # least squares on relative error
    if "graph" in FORM_FEATURES[form]:
        penalty = GRAPH_RIDGE * np.eye(A.shape[1])
        penalty[-1, -1] = 0.0
        return np.linalg.solve(A.T @ A + penalty, A.T @ np.ones_like(y))
    coef, *_ = np.linalg.lstsq(A, np.ones_like(y), rcond=None)
    return coef


def apply_calibration(form: str, coef, F, x=None) -> np.ndarray:
    """Calibrated batch ms of networks with features ``F`` (one row per network, :data:`FEATURES` order)."""
    F = _columns(F)
    X = _design(form, F, None if x is None else np.asarray(x, dtype=float).reshape(len(F), -1))
    out = X @ np.asarray(coef, dtype=float)
    return np.exp(out) if form == "loglog" else out


def fit_calibration(F, y, forms: Iterable[str] = CALIBRATION_FORMS, x=None) -> dict:
    """Fit every form on features ``F`` (one row per network, :data:`FEATURES` order[, graph features ``x``])
    → measured batch ms; keep the best by leave-one-out.

    Returns a dict with ``form``, ``coef`` and, per form, the leave-one-out
    MAPE and fraction within ±10% (what the choice was based on). The simplest
    form within 0.1 percentage point of the best leave-one-out MAPE wins. The
    graph form is tried only when ``x`` (one row per network) is given.
    """
    F, y = _columns(F), np.asarray(y, dtype=float)
    x = None if x is None else np.asarray(x, dtype=float).reshape(len(F), -1)
    if not np.any(F[:, _COLUMN["m"]]):  # nothing misaligned: those forms would be singular
        forms = [f for f in forms if not f.startswith("misaligned")]
    if not np.any(F[:, _COLUMN["w"]]):  # no weights (a table of bare ops): likewise
        forms = [f for f in forms if not f.startswith("weights")]
    if x is None:
        forms = [f for f in forms if "graph" not in FORM_FEATURES[f]]
    if len(y) < 3:
        raise ProfileError(f"calibration needs at least 3 measured networks, got {len(y)}")
    report = {}
    for form in forms:
        k = _design(form, F[:1], None if x is None else x[:1]).shape[1]
        if len(y) < k + 2:
            continue
        pred = np.empty_like(y)
        for i in range(len(y)):
            k_ = np.arange(len(y)) != i
            xk, xi = (None, None) if x is None else (x[k_], x[i:i + 1])
            pred[i] = apply_calibration(form, _fit(form, F[k_], y[k_], xk), F[i], xi)[0]
        err = np.abs(pred / y - 1)
        report[form] = {"loo_mape": float(err.mean() * 100), "loo_within_10pct": float((err <= 0.10).mean()),
                        "loo_within_5pct": float((err <= 0.05).mean()), "params": k}
    if not report:
        raise ProfileError(f"calibration needs more measured networks than {len(y)} for any form")
    raw_err = np.abs(F[:, 0] / y - 1)
    best = min(r["loo_mape"] for r in report.values())
    form = min((f for f in report if report[f]["loo_mape"] <= best + 0.1), key=lambda f: report[f]["params"])
    coef = _fit(form, F, y, x)
    return {"form": form, "coef": [float(c) for c in coef], "forms": report,
            "raw_sum_mape": float(raw_err.mean() * 100), "raw_sum_within_10pct": float((raw_err <= 0.1).mean()),
            "predictor_version": PREDICTOR_VERSION}


# --- the predictor -------------------------------------------------------------------------------

class Predictor:
    """Per-image latency (ms) of architectures of a profile's space."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.space = get_space(profile.space)
        self.table = PartTable(profile.table, channel_block(profile.metadata))
        self.batch = profile.batch
        cal = profile.calibration or {}
        self.form = cal.get("form")
        self.coef = np.asarray(cal.get("coef", []), dtype=float)
        self._coef_list = [float(c) for c in self.coef]
        if self.form is not None and self.form not in CALIBRATION_FORMS:
            raise ProfileError(f"profile {profile.name}: unknown calibration form {self.form!r}")
        if self.form is not None and cal.get("predictor_version", PREDICTOR_VERSION) != PREDICTOR_VERSION:
            raise ProfileError(f"profile {profile.name}: calibrated for predictor version "
                               f"{cal.get('predictor_version')}, this hwnas has {PREDICTOR_VERSION}; re-run profile-device")
        self._boundary_mb_per_elem = 4 * self.batch / 1e6  # fp32 activations handed over per input element
        self._weight_mb_per_param = 4 / 1e6
        if profile.precision == "fp16":
            self._boundary_mb_per_elem /= 2
            self._weight_mb_per_param /= 2
        self._graph = None
        if self.form is not None and "graph" in FORM_FEATURES[self.form]:
            from hwnas.latency.graph import GraphFeatures

            if profile.graph is None:
                raise ProfileError(f"profile {profile.name}: calibrated with graph features but has no graph table")
            self._graph = GraphFeatures(self.space, profile.graph, cal.get("graph_ops"))
        self._arch_cache: dict = {}
        from hwnas.latency.sources.hwnasbench import network_table

        self._networks = network_table(profile)  # a profile of whole networks: looked up, not summed
        # Structure spaces get a per-block fast path (see _rows_of): the terms of every (block, input
        # size) seen, and of every head, one row each, kept as an array (batches) and as flat floats (one at a
        # time); the batch path also finds blocks by identity (see _structure_features_many).
        self._structure_space = type(self.space).__name__ == "ZenNASSpace"
        # Every form but loglog (and graph, which structure spaces never have) is linear in the features, and
        # features are sums over cached rows: so each row also caches its share of the calibrated time
        # (_row_weights · row), and a prediction sums one value per row. loglog and no calibration: the raw sum.
        self._row_weights = np.eye(_WIDTH)[0]
        self._intercept = 0.0
        if self.form is not None and self.form != "loglog" and "graph" not in FORM_FEATURES[self.form]:
            self._row_weights = np.zeros(_WIDTH)
            for name, c in zip(FORM_FEATURES[self.form], self._coef_list):
                self._row_weights[_COLUMN[name]] = c
            self._intercept = self._coef_list[-1]
        self._block = channel_block(profile.metadata)
        self.block_cache_limit = 500_000  # rows kept before the cache starts over (a long search)
        self.columns_from = 8  # new blocks of one call expanded in columns from this many on
        self._op_shapes: dict[str, tuple[bool, int, bool]] = {}
        self._clear_block_cache()

    def _part_terms(self, parts) -> tuple[float, ...]:
        total, mb, n, mis, params, mb2 = 0.0, 0.0, 0, 0.0, 0.0, 0.0
        per_elem = self._boundary_mb_per_elem
        for part in parts:
            ms = self.table.ms(part)
            total += ms
            if is_misaligned(part, self._block):
                mis += ms
            handed = part.cin * part.resolution * part.resolution * per_elem
            mb += handed
            mb2 += handed * handed
            params += part_params(part)
            n += 1
        return total, mb, n, mis, params * self._weight_mb_per_param, mb2

    def features(self, arch) -> tuple[float, ...]:
        """The network's features before calibration, in :data:`FEATURES` order: raw sum of part batch times
        (ms), boundary MB, number of parts, misaligned ms, weight MB, sum of squared boundary MB."""
        if isinstance(arch, str):
            arch = self.space.parse(arch)
        if self._networks is not None:  # one whole network, looked up
            return self.predict_batch_ms(arch), 0.0, 1, 0.0, 0.0, 0.0
        if self._structure_space and isinstance(arch, Structure):
            return self._structure_features(arch)
        return self._part_terms(self.space.parts(arch))

    def _clear_block_cache(self) -> None:
        # Rows by value: input size -> {block.key: row} (an int key: hashed and compared in C), and
        # (width, size) -> row of a head.
        self._row_at: dict[int, dict] = {}
        self._head_row: dict[tuple[int, int], int] = {}
        self._rows = np.empty((1024, _WIDTH))
        self._row_time = np.empty(1024)  # each row's share of the calibrated time (see __init__)
        self._row_times: list[float] = []  # the same as plain floats (one at a time: no numpy scalars)
        # The batch path's index by block object: id(block) -> its code (_ROW_SHIFT), and id(last block) -> head
        # row << 20 | size. Every block in it is kept alive in _id_blocks, so an id never names another object
        # while it is cached.
        self._id_code: dict[int, int] = {}
        self._id_head: dict[int, int] = {}
        self._id_blocks: list = []

    def _rows_of(self, archs) -> tuple[list[int], list[int]]:
        """The cache rows of every structure's blocks and head, concatenated, and where each structure starts.

        Rows are the per-block :meth:`_part_terms` (the same parts as
        ``ZenNASSpace.parts``: every block's kernels, then the head; tests check
        both paths agree). Blocks not seen before are computed all at once.
        Mutants share most blocks with their parents, so a search mostly hits
        the cache.
        """
        if self.cached_rows > self.block_cache_limit:  # only between batches: rows of a batch stay valid
            self._clear_block_cache()
        row_at, head_row = self._row_at, self._head_row
        first_new = self.cached_rows
        new: list = []
        rows: list[int] = []
        append = rows.append
        starts: list[int] = []
        resolution = self.space.resolution
        for arch in archs:
            starts.append(len(rows))
            h = resolution
            for b in arch.blocks:
                at = row_at.get(h)
                if at is None:
                    at = row_at[h] = {}
                r = at.get(b.key)
                if r is None:
                    r = at[b.key] = first_new + len(new)
                    new.append((b, h))
                append(r)
                h = (h - 1) // b.stride + 1
            key = (b.out_channels, h)
            r = head_row.get(key)
            if r is None:
                r = head_row[key] = first_new + len(new)
                new.append(("head", *key))
            append(r)
        if new:
            self._add_rows(new)
        return rows, starts

    @property
    def cached_rows(self) -> int:
        """Rows in the block cache (blocks at an input size, and heads)."""
        return len(self._row_times)

    def _add_rows(self, keys: list) -> None:
        """Compute and store the rows of new cache keys, in order.

        A block is expanded to its kernels for its first two sub-layers only:
        every sub-layer after the first is the same, so the second one's kernels
        count L − 1 times. Many new blocks are expanded in columns, one pass of
        :func:`~hwnas.models.spaces.zennas.kernel_specs` per (kind, kernel) on
        :class:`~hwnas.models.units.BlockColumns`; a few, one by one
        (``ZenNASSpace.block_kernels``). Both read the same rules.
        """
        new = np.zeros((len(keys), _WIDTH))
        blocks = [j for j, key in enumerate(keys) if len(key) == 2]
        if len(blocks) >= self.columns_from:
            self._block_rows_columns(keys, blocks, new)
        elif blocks:
            self._block_rows_one_by_one(keys, blocks, new)
        for j, key in enumerate(keys):
            if len(key) == 3:
                _, width, h = key
                new[j] = self._part_terms([Part(op="head", cin=width, cout=self.space.num_classes, resolution=h)])
        used = self.cached_rows
        if used + len(keys) > len(self._rows):
            size = max(2 * len(self._rows), used + len(keys))
            grown, grown_time = np.empty((size, _WIDTH)), np.empty(size)
            grown[:used], grown_time[:used] = self._rows[:used], self._row_time[:used]
            self._rows, self._row_time = grown, grown_time
        time = new @ self._row_weights
        self._rows[used:used + len(keys)] = new
        self._row_time[used:used + len(keys)] = time
        self._row_times += time.tolist()

    def _op_shape(self, op: str) -> tuple[bool, int, bool]:
        """(dense convolution, kernel size squared (0: not a kernel), depthwise) of a part op, memoized: a
        kernel's weights (:func:`part_params`) are square × (cout if depthwise else cin × cout)."""
        shape = self._op_shapes.get(op)
        if shape is None:
            spec = conv_spec(Part(op, 1, 1, 1))
            shape = self._op_shapes[op] = (spec is not None and spec[1] == 1, spec[0] ** 2 if spec else 0,
                                           op.startswith("dw"))
        return shape

    def _block_rows_one_by_one(self, keys: list, blocks: list, new: np.ndarray) -> None:
        ms_of, block, per_elem = self.table.ms, self._block, self._boundary_mb_per_elem
        for j in blocks:
            b, h = keys[j]
            later = float(b.sub_layers - 1)
            total = mb = n = mis = params = mb2 = 0.0
            for sub, op, cin, cout, size, stride in self.space.block_kernels(b, h, sub_layers=2):
                w = 1.0 if sub == 0 else later
                ms = ms_of(Part(op, cin, cout, size, stride))
                handed = cin * size * size * per_elem
                dense, square, depthwise = self._op_shape(op)
                total += w * ms
                mb += w * handed
                mb2 += w * handed * handed
                params += w * square * (cout if depthwise else cin * cout)
                n += w
                if misaligned(dense, cin, cout, block):
                    mis += w * ms
            new[j] = total, mb, n, mis, params * self._weight_mb_per_param, mb2

    def _block_rows_columns(self, keys: list, blocks: list, new: np.ndarray) -> None:
        items = list(map(keys.__getitem__, blocks))
        fields = unpack_keys(np.fromiter(map(_KEY, map(_FIRST, items)), dtype=np.int64, count=len(items)))
        sizes = np.fromiter(map(_SECOND, items), dtype=np.int64, count=len(items))
        group = fields["kind"] * 16 + fields["kernel"]  # one (kind, kernel) group at a time
        order = np.argsort(group, kind="stable")
        groups, first = np.unique(group[order], return_index=True)
        owners = np.asarray(blocks)
        names: dict[str, int] = {}
        owner, weight, code, counts, cin, cout, size, stride = [], [], [], [], [], [], [], []
        for g, at in zip(groups.tolist(), np.split(order, first[1:])):
            kind, kernel, m = KINDS[g // 16], g % 16, len(at)
            f = {name: column[at] for name, column in fields.items()}
            cols = BlockColumns(kind, kernel, f["in_channels"], f["out_channels"], f["stride"], 2,
                                None if kind == CONV else f["mid"], f["expansion"] if kind == INVERTED else None)
            h = sizes[at]
            own = owners[at]
            later = (f["sub_layers"] - 1).astype(float)
            multi = f["sub_layers"] >= 2  # blocks that have a second sub-layer
            all_multi = bool(multi.all())
            ones = np.ones(m)
            for sub, op, ci, co, sz, st, present in kernel_specs(cols, h, sub_layers=2):
                w = ones if sub == 0 else later
                keep = present  # the parts that exist: True, or a mask over the blocks
                if sub > 0 and not all_multi:
                    keep = multi & present
                if keep is not True:
                    keep = np.asarray(keep)
                    k = int(np.count_nonzero(keep))
                    if k == 0:
                        continue
                    if k < m:
                        owner.append(own[keep])
                        weight.append(w[keep])
                        code.append(names.setdefault(op, len(names)))
                        counts.append(k)
                        for column, value in ((cin, ci), (cout, co), (size, sz), (stride, st)):
                            column.append(value[keep] if isinstance(value, np.ndarray)
                                          else np.full(k, value, dtype=np.int64))
                        continue
                owner.append(own)
                weight.append(w)
                code.append(names.setdefault(op, len(names)))
                counts.append(m)
                for column, value in ((cin, ci), (cout, co), (size, sz), (stride, st)):
                    column.append(value if isinstance(value, np.ndarray) else np.full(m, value, dtype=np.int64))
        owner, w = np.concatenate(owner), np.concatenate(weight)
        code = np.repeat(np.array(code, dtype=np.int64), counts)
        cin, cout, size, stride = (np.concatenate(c) for c in (cin, cout, size, stride))
        ops = list(names)
        ms = self.table.coded_ms(ops, code, cin, cout, size, stride)
        dense, square, depthwise = (np.array(c)[code] for c in zip(*map(self._op_shape, ops)))
        mis = misaligned(dense, cin, cout, self._block)
        params = square * np.where(depthwise, cout, cin * cout)  # part_params on columns
        handed = (cin * size * size) * self._boundary_mb_per_elem
        n = len(keys)
        new[:, 0] = np.bincount(owner, w * ms, minlength=n)
        new[:, 1] = np.bincount(owner, w * handed, minlength=n)
        new[:, 2] = np.bincount(owner, w, minlength=n)
        new[:, 3] = np.bincount(owner, w * np.where(mis, ms, 0.0), minlength=n)
        new[:, 4] = np.bincount(owner, w * params, minlength=n) * self._weight_mb_per_param
        new[:, 5] = np.bincount(owner, w * handed * handed, minlength=n)

    def _structure_features(self, arch) -> tuple[float, ...]:
        """features() of one Zen-NAS structure: the sum of its cached rows (see :meth:`_rows_of`)."""
        rows, _ = self._rows_of((arch,))
        total, mb, n, mis, params, mb2 = self._rows[rows].sum(axis=0).tolist()
        return total, mb, int(round(n)), mis, params, mb2

    def _calibrated(self, total):
        """Calibrated batch ms from the sum of a structure's row times (a float or an array)."""
        if self.form == "loglog":
            c = self._coef_list
            return np.exp(c[0] * np.log(total) + c[1]) if isinstance(total, np.ndarray) \
                else math.exp(c[0] * math.log(total) + c[1])
        return total + self._intercept

    @staticmethod
    def _rows_by_value(index: dict, keys: list, items: list, first_new: int, new: list) -> list[int]:
        """The cache rows of ``keys`` in ``index`` (one input size's ``_row_at`` dict, or ``_head_row``, keyed
        as :meth:`_rows_of` keys them); keys not cached get rows numbered after ``first_new`` and the rows
        already queued in ``new``, and ``items`` (their ``new`` entries, aligned with ``keys``) are queued,
        each once."""
        rows = list(map(index.get, keys))
        if None in rows:
            fresh = dict(zip(keys, items))  # the keys not cached, each once (any equal block gives the same row)
            for k in fresh.keys() & index.keys():
                del fresh[k]
            index.update(zip(fresh, range(first_new + len(new), first_new + len(new) + len(fresh))))
            new += fresh.values()
            rows = list(map(index.__getitem__, keys))
        return rows

    def _codes_by_value(self, positions: np.ndarray, flat: list, size: np.ndarray, first_new: int,
                        new: list) -> np.ndarray:
        """Block codes (see ``_ROW_SHIFT``) of the blocks at ``positions`` of ``flat``, whose input sizes are
        ``size``, found by value (:meth:`_rows_by_value`, one input size at a time); their objects are kept
        alive (``_id_blocks``)."""
        out = np.empty(len(positions), dtype=np.int64)
        sizes = size[positions]
        for h in np.unique(sizes).tolist():  # a few input sizes: one C-level pass of look-ups each
            mask = sizes == h
            blocks = list(map(flat.__getitem__, positions[mask].tolist()))
            index = self._row_at.get(h)
            if index is None:
                index = self._row_at[h] = {}
            rows = self._rows_by_value(index, list(map(_KEY, blocks)), list(zip(blocks, repeat(h))), first_new, new)
            halves = np.fromiter(map(_STRIDE, blocks), dtype=np.int64, count=len(blocks)) == 2
            out[mask] = np.array(rows, dtype=np.int64) << _ROW_SHIFT | halves.astype(np.int64) << _SIZE_BITS | h
            self._id_blocks += blocks
        return out

    def _structure_features_many(self, archs) -> np.ndarray:
        """features() of many Zen-NAS structures as an (n, 6) array (see :meth:`_rows_many`)."""
        if not archs:
            return np.zeros((0, _WIDTH))
        block_rows, head_rows, starts = self._rows_many(archs)
        return np.add.reduceat(self._rows[block_rows], starts, axis=0) + self._rows[head_rows]

    def _predict_many_batch_ms(self, archs) -> np.ndarray:
        """Calibrated batch ms of many Zen-NAS structures: one row time per block and head (see __init__)."""
        if not archs:
            return np.zeros(0)
        block_rows, head_rows, starts = self._rows_many(archs)
        return self._calibrated(np.add.reduceat(self._row_time[block_rows], starts) + self._row_time[head_rows])

    def _rows_many(self, archs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The cache rows of many Zen-NAS structures' blocks (concatenated) and heads, and where each
        structure's blocks start: the same rows as :meth:`_rows_of`.

        Blocks are found by identity first (a mutant holds its parent's block
        objects; ``_id_code``, whose codes also hold the block's stride), each
        checked to have been cached at the input size it sits at, which follows
        from the strides before it in its structure (nested ceilings:
        ⌈⌈h/2⌉/2⌉ = ⌈h/4⌉); the rest (new block objects, or a block at another
        size) by value, as in :meth:`_rows_of`. All in C-level passes (``map``)
        and numpy: no Python loop per block.
        """
        n = len(archs)
        if max(self.cached_rows, len(self._id_code), len(self._id_blocks)) > self.block_cache_limit:
            self._clear_block_cache()  # only between batches: rows of a batch stay valid
        id_code, id_head = self._id_code, self._id_head
        blocks_of = list(map(_BLOCKS, archs))
        lens = np.fromiter(map(len, blocks_of), dtype=np.int64, count=n)
        flat = list(chain.from_iterable(blocks_of))
        ids = list(map(id, flat))
        ends = np.cumsum(lens)
        starts = ends - lens
        codes = np.fromiter(map(id_code.get, ids, repeat(-1)), dtype=np.int64, count=len(flat))
        # input size of every position: the resolution halved (rounding up) once per stride-2 block before it
        unknown = np.flatnonzero(codes < 0)
        halves = (codes >> _SIZE_BITS) & 1
        if unknown.size:
            strides = np.fromiter(map(_STRIDE, map(flat.__getitem__, unknown.tolist())), dtype=np.int64,
                                  count=unknown.size)
            if ((strides != 1) & (strides != 2)).any():
                raise ProfileError("block strides must be 1 or 2")
            halves[unknown] = strides == 2
        halved = np.cumsum(halves)
        halved = np.minimum(halved - halves - np.repeat(halved[starts] - halves[starts], lens), 40)
        resolution = self.space.resolution
        if resolution >= _SIZE_MASK:
            raise ProfileError(f"input size {resolution} is too large for the predictor's block cache")
        size = (resolution + (np.int64(1) << halved) - 1) >> halved
        new: list = []
        first_new = self.cached_rows
        bad = (codes < 0) | ((codes & _SIZE_MASK) != size)
        if bad.any():  # new block objects, or one cached at another input size: by value, each object once
            at = np.flatnonzero(bad)
            _, first, inverse = np.unique(np.array(ids, dtype=np.int64)[at], return_index=True, return_inverse=True)
            once = at[first]
            found = self._codes_by_value(once, flat, size, first_new, new)
            codes[at] = found[inverse.reshape(-1)]
            id_code.update(zip(map(ids.__getitem__, once.tolist()), found.tolist()))
            odd = (codes[at] & _SIZE_MASK) != size[at]  # one object at several input sizes in this batch (rare)
            if odd.any():
                codes[at[odd]] = self._codes_by_value(at[odd], flat, size, first_new, new)
        lasts = list(map(_LAST, blocks_of))
        final = (size[ends - 1] - 1) // (1 + halves[ends - 1]) + 1
        heads = np.fromiter(map(id_head.get, map(id, lasts), repeat(-1)), dtype=np.int64, count=n)
        bad = (heads < 0) | ((heads & _SIZE_MASK) != final)
        if bad.any():
            at = np.flatnonzero(bad)
            where = at.tolist()
            widths = list(map(_OUT, map(lasts.__getitem__, where)))
            keys = list(zip(widths, final[at].tolist()))
            rows = self._rows_by_value(self._head_row, keys, [("head", *k) for k in keys], first_new, new)
            fixed = np.array(rows, dtype=np.int64) << _SIZE_BITS | final[at]
            heads[at] = fixed
            id_head.update(zip(map(id, map(lasts.__getitem__, where)), fixed.tolist()))  # every last block is kept
        if new:
            self._add_rows(new)
        return codes >> _ROW_SHIFT, heads >> _SIZE_BITS, starts

    def _calibrate_one(self, f, arch=None) -> float:
        """The calibration applied to one network's features (plain floats: the search's hot path); ``arch``
        gives the graph features where the form uses them."""
        if self.form is None:
            return f[0]
        c = self._coef_list
        terms = _features(self.form, f, math.log)
        if self._graph is not None:
            terms = terms + list(self._graph(arch))
        out = c[-1] + sum(ci * x for ci, x in zip(c, terms))
        return math.exp(out) if self.form == "loglog" else out

    def predict_batch_ms(self, arch) -> float:
        """Calibrated time of one batch of the profile's batch size, in ms."""
        if self._networks is not None:
            return self._networks.get(self.space.format(arch), math.inf)
        if self._structure_space and isinstance(arch, Structure):
            rows = self._rows_of((arch,))[0]  # (may start the cache over: read the row times after it)
            return self._calibrated(sum(map(self._row_times.__getitem__, rows)))
        hit = self._arch_cache.get(arch)  # other spaces: whole-architecture cache
        if hit is None:
            hit = self._calibrate_one(self.features(arch), arch=arch)
            if len(self._arch_cache) > 200_000:
                self._arch_cache.clear()
            self._arch_cache[arch] = hit
        return hit

    def predict_ms(self, arch) -> float:
        """Calibrated per-image latency in ms (batch time / batch)."""
        return self.predict_batch_ms(arch) / self.batch

    def predict_many(self, archs) -> np.ndarray:
        """Per-image latency (ms) of many architectures; Zen-NAS structures are predicted as one batch
        (their new blocks computed together), which is much faster than one at a time."""
        archs = list(archs)
        if self._networks is not None:
            return np.array([self.predict_batch_ms(a) for a in archs], dtype=float) / self.batch
        if self._structure_space and all(map(isinstance, archs, repeat(Structure))):
            return self._predict_many_batch_ms(archs) / self.batch
        return np.fromiter((self.predict_batch_ms(a) for a in archs), dtype=float, count=len(archs)) / self.batch
