"""Quick profiles: a source profile's part table carried over to this machine.

A full profile times every part of a space's grid (thousands) and hundreds of
whole networks: 20-25 minutes on a 2-core machine. A quick profile (the
LitePred idea: adapt a measured table with a few measurements on the new
device) times instead

1. a stratified sample of the source table's parts (:func:`stratified_parts`:
   every op and position, spread over the parts' sizes), and
2. a few dozen whole networks for the calibration,

then fits how this machine's part times differ from the source's
(:class:`Transfer`: a ridge regression of log(this / source) on the part's op,
stride, log MACs and bytes and its channel alignment, plus a shrunk offset per
position) and applies it to every
part of the source table. Parts measured here keep their measured times. The
calibration is then fitted on the networks measured here, as for a full
profile. The profile's metadata names its source profile and what was
measured (``source.kind == "quick"``).
"""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd

from hwnas.errors import ProfileError
from hwnas.latency.kernels import Part
from hwnas.latency.part_table import part_features
from hwnas.latency.profile import PART_COLUMNS

# Parts re-measured and whole networks measured by a quick profile (chosen by leave-out simulation on a full
# profile of a machine other than the source's device: docs/latency.md, "Quick profiles"). 320 parts, not 400:
# with each part timed in 3 sessions, 400 took an imagenet224 quick profile to 5 min 28 s on a 2-core AMD EPYC
# without AVX-512, over its 5-minute budget (parts 206 s, networks 120 s).
QUICK_PARTS = 320
QUICK_NETWORKS = 60
# ... where the graph calibration form applies (NB201 on ONNX Runtime CPU: ~70 coefficients; 60 networks fit only
# the simple forms, 50 % within ±10 %): small networks, quick to time.
QUICK_GRAPH_NETWORKS = 300
RIDGE = 1.0
POSITION_SHRINK = 2.0


def _keys(table: pd.DataFrame) -> list[tuple]:
    """The part columns of every row, in :data:`PART_COLUMNS` order (``Part(*key)`` is the row's part)."""
    return list(table[PART_COLUMNS].itertuples(index=False, name=None))


def _position(part: Part) -> tuple:
    """The stratum of a part: everything but its widths."""
    return part.op, part.stride, part.resolution, part.mid, part.first, part.se, part.extra


def stratified_parts(table: pd.DataFrame, k: int, seed: int = 0) -> list[Part]:
    """About ``k`` parts of ``table`` (at least one per position), each position's picks spread evenly over
    its parts ranked by MACs."""
    parts = [Part(*row) for row in _keys(table)]
    by_position: dict[tuple, list[Part]] = {}
    for p in parts:
        by_position.setdefault(_position(p), []).append(p)
    share = k / max(len(parts), 1)
    rng = random.Random(seed)
    chosen = []
    for position in sorted(by_position, key=repr):
        group = sorted(by_position[position], key=lambda p: (part_features(p)[0], p.cin, p.cout))
        m = min(len(group), max(1, round(share * len(group))))
        offset = rng.random()
        picks = sorted({min(len(group) - 1, int((i + offset) * len(group) / m)) for i in range(m)})
        chosen += [group[i] for i in picks]
    return chosen


class Transfer:
    """log(this machine's part time / the source's) as a ridge regression on part features, plus, per position
    (op, stride, resolution, ...: :func:`_position`), the mean of the regression's residuals over the parts
    timed at that position, shrunk towards 0 by :data:`POSITION_SHRINK` parts' worth of weight."""

    def __init__(self, block: int):
        self.block = block  # this machine's SIMD block in floats (channel alignment)
        self.ops: list[str] = []
        self.coef: np.ndarray | None = None
        self.offsets: dict[tuple, float] = {}

    def _design(self, parts: list[Part]) -> np.ndarray:
        rows = []
        for p in parts:
            macs, inp, outp = part_features(p)
            row = [1.0 if p.op == op else 0.0 for op in self.ops]
            dense = p.op.startswith("conv") and p.cin > 3
            row += [float(p.stride == 2), math.log(max(macs, 1.0)), math.log(max(inp, 1.0)),
                    math.log(max(outp, 1.0)),
                    float(dense and (p.cin % self.block != 0 or p.cout % self.block != 0)),
                    float(dense and (p.cin % 16 != 0 or p.cout % 16 != 0))]
            rows.append(row)
        return np.array(rows, dtype=float)

    def fit(self, parts: list[Part], source_ms: np.ndarray, target_ms: np.ndarray) -> dict:
        """Fit on parts timed on both machines; returns the fit's leave-one-out error of part times."""
        if len(parts) < 10:
            raise ProfileError(f"a transfer needs at least 10 parts timed on both machines, got {len(parts)}")
        self.ops = sorted({p.op for p in parts})
        X = self._design(parts)
        y = np.log(np.asarray(target_ms) / np.asarray(source_ms))
        self.mean, self.scale = X.mean(axis=0), X.std(axis=0)
        self.scale[self.scale == 0] = 1.0
        Z = (X - self.mean) / self.scale
        A = np.c_[np.ones(len(Z)), Z]
        penalty = RIDGE * np.eye(A.shape[1])
        penalty[0, 0] = 0.0
        inverse = np.linalg.pinv(A.T @ A + penalty)
        self.coef = inverse @ A.T @ y
        residual = y - A @ self.coef
        hat = np.einsum("ij,jk,ik->i", A, inverse, A)  # leave-one-out residuals of a ridge fit: r / (1 - h)
        loo = residual / np.clip(1 - hat, 1e-6, None)
        positions = [_position(p) for p in parts]
        sums: dict[tuple, float] = {}
        counts: dict[tuple, int] = {}
        for pos, r in zip(positions, residual):
            sums[pos] = sums.get(pos, 0.0) + r
            counts[pos] = counts.get(pos, 0) + 1
        self.offsets = {pos: sums[pos] / (counts[pos] + POSITION_SHRINK) for pos in sums}
        # ... and each part's position offset without that part
        others = [(sums[pos] - r, counts[pos] - 1 + POSITION_SHRINK) for pos, r in zip(positions, residual)]
        loo = loo - np.array([total / weight if weight > 0 else 0.0 for total, weight in others])
        err = np.abs(np.exp(loo) - 1)
        return {"parts": len(parts), "ops": self.ops, "loo_mape_pct": float(100 * err.mean()),
                "loo_within_10pct": float((err <= 0.10).mean()),
                "median_ratio": float(np.exp(np.median(y)))}

    def ratio(self, parts: list[Part]) -> np.ndarray:
        """This machine's time / the source's, predicted for ``parts`` (ops not seen in the fit: the mean)."""
        Z = (self._design(parts) - self.mean) / self.scale
        offsets = np.array([self.offsets.get(_position(p), 0.0) for p in parts])
        return np.exp(np.c_[np.ones(len(Z)), Z] @ self.coef + offsets)


def transfer_table(source: pd.DataFrame, measured: pd.DataFrame, block: int) -> tuple[pd.DataFrame, dict]:
    """The source's table in this machine's times: ``measured`` parts as measured, every other part the source's
    time × the fitted :class:`Transfer` ratio (``repeats`` 0: not timed here). Returns the table and the fit's
    summary."""
    src = dict(zip(_keys(source), source.median_ms.astype(float)))
    pairs = [(k, m) for k, m in zip(_keys(measured), measured.median_ms.astype(float)) if k in src]
    if not pairs:
        raise ProfileError("none of the parts timed here are in the source profile's table")
    transfer = Transfer(block)
    fit = transfer.fit([Part(*k) for k, _ in pairs], np.array([src[k] for k, _ in pairs]),
                       np.array([m for _, m in pairs]))
    out = source[PART_COLUMNS].copy()
    ratio = transfer.ratio([Part(*k) for k in _keys(source)])
    for column in ("median_ms", "p10_ms", "p90_ms"):
        out[column] = source[column].astype(float).to_numpy() * ratio
    out["repeats"] = 0
    out["raw_median_ms"] = out["median_ms"]
    here = pd.concat([out, measured[out.columns]]).drop_duplicates(PART_COLUMNS, keep="last")
    return here.reset_index(drop=True), fit
