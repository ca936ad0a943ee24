"""Measured kernel times per position, interpolated in width (the grids of a
:class:`~hwnas.latency.part_table.PartTable`).

A kernel's batch time is interpolated bilinearly in (log in-width, log
out-width) over the measured width grid of its position (kernel op, stride,
input size), in log time, and extrapolated linearly beyond it. Convolutions
whose channel counts are not multiples of the CPU's SIMD block (16 floats with
AVX-512, else 8) run on a slower code path in ONNX Runtime (up to 1.8× here),
so the grid holds both families of widths and a kernel is interpolated only
from grid points of its own family (in-width aligned or not × out-width
aligned or not). :class:`KernelGrid` answers one kernel; :class:`FlatGrids`
holds every grid in flat arrays and answers many kernels in one numpy pass.
"""

from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np

from hwnas.errors import ProfileError


def width_family(cin, cout, block: int | None):
    """(in aligned, out aligned) of scalar or array widths for a SIMD ``block`` (a 3-channel input counts as
    aligned; without a block there is one family)."""
    if block is None:
        return True, True
    return (cin == 3) | (cin % block == 0), cout % block == 0


class KernelGrid:
    """Measured times of one kernel position, interpolated bilinearly in log-log space per width family.

    ``points`` maps (cin, cout) to ms. A family is (cin aligned, cout aligned)
    for the SIMD ``block`` (:func:`width_family`; depthwise kernels are keyed
    (1, channels)). Within a family the grid is the product of the measured in-
    and out-widths; a product point that was not measured (over the grid's MAC
    cap) is filled from the nearest measured point, scaled by MACs. A query
    falls in the family of its own widths (the nearest family that was
    measured, if its own was not); an axis measured at one width only answers
    for that width. :class:`FlatGrids` interpolates many kernels at once (the batch path).
    """

    def __init__(self, points: dict[tuple[int, int], float], block: int | None):
        self.block = block
        fams: dict[tuple[bool, bool], dict] = {}
        for (cin, cout), ms in points.items():
            fams.setdefault(width_family(cin, cout, block), {})[(cin, cout)] = ms
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
        """One kernel (the generic per-part path; :class:`FlatGrids` does the same for many at once)."""
        xs, ys, t = self.families[self.family_for(width_family(cin, cout, self.block))]
        for axis, width in ((xs, cin), (ys, cout)):
            if len(axis) == 1 and abs(axis[0] - math.log(width)) > 1e-9:
                raise ProfileError(f"the profile measured this kernel position only at width "
                                   f"{round(math.exp(axis[0]))}, not {width}; its grid does not cover this part "
                                   "of the architecture")
        i0, i1, u = self._cell(xs, math.log(cin))
        j0, j1, v = self._cell(ys, math.log(cout))
        return math.exp((1 - u) * ((1 - v) * t[i0][j0] + v * t[i0][j1]) + u * ((1 - v) * t[i1][j0] + v * t[i1][j1]))


class FlatGrids:
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

    def grid_id(self, key, grid: KernelGrid, fam: tuple[bool, bool]) -> int:
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
