"""Alibaba TinyNAS's published TensorRT latencies of single convolutions on an NVIDIA V100, as a profile.

The tables (``conv_data.out`` FP32, ``.fp16``, ``.int8``; Apache-2.0, from
github.com/alibaba/lightweight-neural-architecture-search) hold one row per
convolution: ``{Conv_type,Batch,In_C,In_H,In_W,Out_C,Kernel,Stride,ElmtFused} ms``
(the whole batch; ``-1`` where their measurement failed). BN is folded and the
activation fused by TensorRT, as in an hwnas convolution part.

What the import does, and what it cannot know:

- Rows with ``ElmtFused = 0`` at the requested batch become the table's
  convolution parts (``convK``, ``dwconvK``; a projection shortcut is looked
  up as ``conv1`` as always). hwnas does not key a part by "the residual add is
  fused into me", so the fused rows are not used: the sum leaves the adds out,
  as TinyNAS's own tables do for unfused convolutions.
- Published sizes are a grid of 19 (5…480); the space's sizes that are not on
  it (224, 112, 28, 7 for the ImageNet space) are interpolated per (kernel,
  stride, widths) linearly in log(ms) over log(size) between the two nearest
  published sizes where that convolution was measured. The widths are
  interpolated by the predictor as for a measured profile.
- The tables have no classifier head, no SE module and no pooling. The head
  (global pooling + a linear layer, a few microseconds on a V100) is
  **modelled** as the published 1×1 convolution of the same widths on the
  smallest published map (5×5), an upper bound, and labelled so in the
  metadata. SE is not modelled: a network with SE is refused by the predictor.
- The TensorRT version is not recorded upstream (TensorRT dropped the V100 in
  10.5, so an older one).

``convention="zennas"`` makes the profile ZenNAS's latency unit instead: the
same table with a calibration fitted on the published V100 FP16 batch-64 latencies
of the ZenNet zoo (timed in PyTorch by ZenNAS, and rounded to their budgets),
labelled as calibrated on those few figures, with its leave-one-out error.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from hwnas.errors import ProfileError
from hwnas.latency.kernels import kernels_for
from hwnas.latency.profile import Profile
from hwnas.latency.sources import license_files, register_source
from hwnas.models.spaces.base import get_space

UPSTREAM = {"repository": "github.com/alibaba/lightweight-neural-architecture-search",
            "commit": "8ccaf889fcd06079d268a355c765e9d0af071612",
            "path": "tinynas/latency/op_profiler/V100/", "license": "Apache-2.0",
            "measured_by": "Alibaba TinyNAS authors"}
FILES = {"fp32": "conv_data.out", "fp16": "conv_data.out.fp16", "int8": "conv_data.out.int8"}
BATCHES = (1, 32, 64, 128)
MAX_BYTES = 64 << 20
HEAD_SIZE = 5
LARGE_MS = 0.1  # hold-out figures are also given for rows of at least this batch time: they dominate a network  # the smallest published map: where the head's 1x1 stand-in is read
_ROW = re.compile(r"\{(Regular|Depthwise),(\d+),(\d+),(\d+),(\d+),(\d+),(\d+),(\d+),([01])\}\s+(\S+)")
_COLUMNS = ["depthwise", "batch", "cin", "hw", "cout", "kernel", "stride", "fused", "ms"]


def read_table(path: str | Path) -> pd.DataFrame:
    """The published rows of one TinyNAS table file (failed measurements, ms < 0, dropped)."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: not a file; expected a TinyNAS table such as {FILES['fp16']}")
    if path.stat().st_size > MAX_BYTES:
        raise ProfileError(f"{path}: {path.stat().st_size} bytes; a TinyNAS table is at most {MAX_BYTES >> 20} MiB")
    rows = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            line = raw.decode("ascii", errors="replace").strip()
            if not line:
                continue
            m = _ROW.fullmatch(line)
            if m is None:
                raise ProfileError(f"{path}:{number}: not a TinyNAS row; expected "
                                   "{Conv_type,Batch,In_C,In_H,In_W,Out_C,Kernel,Stride,ElmtFused} ms")
            kind, batch, cin, h, w, cout, kernel, stride, fused, ms = m.groups()
            if h != w:
                raise ProfileError(f"{path}:{number}: input {h}x{w} is not square")
            try:
                value = float(ms)
            except ValueError:
                raise ProfileError(f"{path}:{number}: latency {ms!r} is not a number") from None
            rows.append((kind == "Depthwise", int(batch), int(cin), int(h), int(cout), int(kernel), int(stride),
                         int(fused), value))
    if not rows:
        raise ProfileError(f"{path}: no rows; expected a TinyNAS table such as {FILES['fp16']}")
    table = pd.DataFrame(rows, columns=_COLUMNS)
    table = table[np.isfinite(table.ms) & (table.ms > 0)]
    if table.empty:
        raise ProfileError(f"{path}: no usable rows")
    return table.reset_index(drop=True)


def _series(rows: pd.DataFrame) -> dict:
    """(depthwise, kernel, stride, cin, cout) → (sorted log sizes, log ms) of the unfused rows."""
    out = {}
    for key, g in rows.groupby(["depthwise", "kernel", "stride", "cin", "cout"]):
        g = g.groupby("hw").ms.median().sort_index()
        out[tuple(int(v) for v in key)] = (np.log(g.index.to_numpy(float)), np.log(g.to_numpy(float)))
    return out


def at_size(log_sizes: np.ndarray, log_ms: np.ndarray, size: int) -> float | None:
    """ms at ``size``: the published value, or log-log interpolation between the nearest published sizes on
    either side; None outside the published range."""
    q = math.log(size)
    if q < log_sizes[0] - 1e-9 or q > log_sizes[-1] + 1e-9:
        return None
    return float(math.exp(np.interp(q, log_sizes, log_ms)))


def _positions(space) -> set[tuple[str, int, int]]:
    """(op, stride, input size) of every convolution position the space can produce (its full grid)."""
    return {("conv1" if p.op == "proj" else p.op, p.stride, p.resolution)
            for p in kernels_for(space).grid_parts("full") if p.op != "head"}


def _op(depthwise: bool, kernel: int) -> str:
    return f"{'dw' if depthwise else ''}conv{kernel}"


def table_rows(series: dict, positions) -> list[dict]:
    """Profile rows (one per published width pair) at every position the published sizes cover."""
    rows = []
    for (dw, kernel, stride, cin, cout), (log_sizes, log_ms) in series.items():
        op = _op(bool(dw), kernel)
        for size in sorted({r for o, s, r in positions if o == op and s == stride}):
            ms = at_size(log_sizes, log_ms, size)
            if ms is not None:
                rows.append({"op": op, "cin": cin, "cout": cout, "resolution": size, "stride": stride, "ms": ms})
    return rows


def head_rows(series: dict, num_classes: int, size: int) -> list[dict]:
    """The modelled head: a 1×1 convolution cin → num_classes on the smallest published map, per published
    in-width, interpolated over out-widths in log-log space."""
    by_cin: dict[int, list] = {}
    for (dw, kernel, stride, cin, cout), (log_sizes, log_ms) in series.items():
        if not dw and kernel == 1 and stride == 1:
            ms = at_size(log_sizes, log_ms, HEAD_SIZE)
            if ms is not None:
                by_cin.setdefault(cin, []).append((math.log(cout), math.log(ms)))
    rows = []
    for cin, points in sorted(by_cin.items()):
        points.sort()
        if len(points) >= 2 and cin > 3:
            x, y = np.array(points).T
            ms = math.exp(np.interp(math.log(num_classes), x, y))
            rows.append({"op": "head", "cin": cin, "cout": num_classes, "resolution": size, "stride": 1, "ms": ms})
    return rows


def holdout(rows: pd.DataFrame, sample: int = 2000, seed: int = 0) -> dict:
    """How well the import's interpolations recover published rows left out.

    ``size``: every unfused row at a published size strictly inside its
    convolution's range, predicted from the two nearest other sizes (as an
    off-grid size of the space is). ``widths``: a seeded sample of rows,
    each predicted from the other rows at its position by the predictor's
    width interpolation (as a width between grid points is). Each also for
    the rows of at least ``LARGE_MS`` (``*_large``): below it, TensorRT's
    timings are dominated by launch overhead and tactic choice, and a network's
    sum by its larger convolutions.
    """
    from hwnas.latency.grids import KernelGrid

    def summary(err: np.ndarray) -> dict:
        a = np.abs(err)
        return {"n": int(a.size), "median_abs_pct": float(np.median(a) * 100),
                "p90_abs_pct": float(np.percentile(a, 90) * 100), "max_abs_pct": float(a.max() * 100),
                "within_10pct": float((a <= 0.10).mean()), "within_5pct": float((a <= 0.05).mean())}

    size_err, size_ms = [], []
    for log_sizes, log_ms in _series(rows).values():
        for i in range(1, len(log_sizes) - 1):
            keep = np.arange(len(log_sizes)) != i
            guess = np.interp(log_sizes[i], log_sizes[keep], log_ms[keep])
            size_err.append(math.exp(guess - log_ms[i]) - 1)
            size_ms.append(math.exp(log_ms[i]))
    rng = np.random.default_rng(seed)
    width_err, width_ms = [], []
    groups = {k: g for k, g in rows.groupby(["depthwise", "kernel", "stride", "hw"]) if len(g) >= 4}
    keys = list(groups)
    for _ in range(sample):
        g = groups[keys[rng.integers(len(keys))]]
        i = int(rng.integers(len(g)))
        rest = g.drop(g.index[i])
        dw = bool(g.depthwise.iloc[0])
        points = {(1 if dw else int(r.cin), int(r.cout)): float(r.ms) for r in rest.itertuples()}
        left = g.iloc[i]
        try:
            guess = KernelGrid(points, 8)(1 if dw else int(left.cin), int(left.cout))
        except ProfileError:  # an axis left with one width: that point cannot be interpolated
            continue
        width_err.append(guess / float(left.ms) - 1)
        width_ms.append(float(left.ms))
    out = {"seed": seed, "large_ms": LARGE_MS}
    for what, err, ms in (("size", size_err, size_ms), ("widths", width_err, width_ms)):
        err, ms = np.array(err), np.array(ms)
        out[what] = summary(err)
        out[f"{what}_large"] = summary(err[ms >= LARGE_MS])
    return out


def _profile(rows: list[dict], metadata: dict) -> Profile:
    table = pd.DataFrame(rows)
    table = table.groupby(["op", "cin", "cout", "resolution", "stride"], as_index=False).ms.median()
    for column, default in (("mid", 0), ("first", False), ("se", False), ("extra", "")):
        table[column] = default
    for column in ("median_ms", "p10_ms", "p90_ms", "raw_median_ms"):
        table[column] = table.ms
    table["repeats"] = 0  # one published figure per row
    return Profile(table=table.drop(columns="ms"), metadata=metadata)


@register_source("tinynas")
def import_tinynas(path: str | Path, *, precision: str = "fp16", batch: int = 64, space: str = "imagenet224",
                   convention: str = "tensorrt", name: str | None = None, holdout_sample: int = 2000) -> Profile:
    """A profile of ``space`` from one TinyNAS V100 table (see the module's doc)."""
    if precision not in FILES:
        raise ProfileError(f"unknown precision {precision!r}; TinyNAS published {', '.join(FILES)}")
    if batch not in BATCHES:
        raise ProfileError(f"batch {batch} was not published; TinyNAS measured batches {', '.join(map(str, BATCHES))}")
    if convention not in ("tensorrt", "zennas"):
        raise ProfileError(f"unknown convention {convention!r}; expected tensorrt or zennas")
    if convention == "zennas" and (precision, batch) != ("fp16", 64):
        raise ProfileError("the ZenNAS convention is FP16 at batch 64 (its published latencies); "
                           f"got {precision} at batch {batch}")
    sp = get_space(space)
    published = read_table(path)
    licenses = license_files(path)
    rows = published[(published.batch == batch) & (published.fused == 0)]
    if rows.empty:
        raise ProfileError(f"{path}: no unfused rows at batch {batch}")
    series = _series(rows)
    positions = _positions(sp)
    conv_rows = table_rows(series, positions)
    last = min(r for _, _, r in positions)
    heads = head_rows(series, sp.num_classes, last)
    covered = {(r["op"], r["stride"], r["resolution"]) for r in conv_rows}
    backend = "tensorrt" if convention == "tensorrt" else "torch"
    short = "trt" if convention == "tensorrt" else "zennas"
    metadata = {
        "name": name or f"{short}-v100-{precision}-b{batch}-{space}",
        "space": sp.name, "resolution": sp.resolution, "num_classes": sp.num_classes,
        "backend": backend, "settings": {"device": "cuda", "precision": precision, "batch": batch},
        "device": {"kind": "gpu", "name": "Tesla V100", "as": "published by the source; not measured by hwnas"},
        "versions": {"tensorrt": "unknown, < 10.5"},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "grid": "published",
        "timing": "batch time in ms as published (one figure per convolution)",
        "source": {"kind": "imported", "format": "tinynas", "file": Path(path).name, **UPSTREAM,
                   "tensorrt_version": "not recorded by the source; older than 10.5, which dropped the V100",
                   "license_files": licenses,
                   "rows_used": int(len(rows)), "rows_in_file": int(len(published)),
                   "interpolated_sizes": sorted({r for _, _, r in covered} - set(rows["hw"].tolist())),
                   "uncovered_positions": sorted(f"{o} stride {s} at {r}" for o, s, r in positions - covered),
                   "modelled": {"head": f"the published 1x1 convolution of the same widths on a {HEAD_SIZE}x"
                                        f"{HEAD_SIZE} map (an upper bound of pooling + linear)"},
                   "not_in_table": ["SE modules (refused)", "pooling", "residual adds (not part of the sum)"],
                   "holdout": holdout(rows, sample=holdout_sample)},
        "calibration": {},
    }
    profile = _profile(conv_rows + heads, metadata)
    if convention == "zennas":
        profile.metadata["backend_note"] = ("ZenNAS's unit: PyTorch FP16 batch 64 on a V100, per image, as its "
                                            "published latencies")
        profile.metadata["calibration"] = _published_calibration(profile, sp)
    return profile


def _published_calibration(profile: Profile, space) -> dict:
    """The calibration fitted on the zoo's published V100 FP16 batch-64 latencies of the profile's space
    (networks without SE only: the table has none)."""
    from hwnas.latency import Predictor, fit_calibration
    from hwnas.models import zoo

    nets = [m for m in zoo.models().values()
            if m.latency_ms_v100_fp16_b64 is not None and m.resolution == space.resolution and not m.use_se]
    if len(nets) < 4:
        raise ProfileError(f"only {len(nets)} published latencies at resolution {space.resolution}; need 4")
    bare = Predictor(Profile(table=profile.table, metadata={**profile.metadata, "calibration": {}}))
    F = np.array([bare.features(m.structure) for m in nets], dtype=float)
    y = np.array([m.latency_ms_v100_fp16_b64 * profile.batch for m in nets])
    cal = fit_calibration(F, y, forms=("affine", "loglog"))
    cal["fitted_on"] = (f"{len(nets)} published ZenNet latencies (V100, PyTorch FP16, batch 64, per image; rounded "
                        "to their budgets by ZenNAS)")
    cal["networks"] = [{"arch": str(m.structure), "name": m.name, "measured_batch_ms": float(t),
                        "published_ms": m.latency_ms_v100_fp16_b64, "raw_sum_ms": float(f[0])}
                       for m, t, f in zip(nets, y, F)]
    return cal
