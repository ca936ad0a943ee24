"""profile-device: measure every part of a space's grid, then whole networks for the calibration.

Procedure (one backend, fixed settings):

1. Enumerate the grid's parts (``space.grid_parts(grid)``), in a fixed order.
2. Measure each part in isolation (warm-up, median over repeats, p10/p90); a
   part whose p10-p90 band is wider than 15% of its median is measured again
   and the tighter of the two kept. Every ``REF_EVERY`` parts a fixed
   *reference part* is measured too; at the end every part's median is scaled
   by (median reference time / reference time nearest in the run) to take out
   the machine's drift over the run (the raw median is kept as well).
3. Measure ``networks`` random whole networks of the space, spread over its
   size range, end to end under the same settings (with the reference
   interleaved the same way), and fit the calibration on them
   (:func:`hwnas.latency.predictor.fit_calibration`).

Resumable: every result is appended to ``<out>/journal.jsonl`` (one JSON
line, flushed and fsynced) as soon as it is measured; a rerun with the same
settings skips what the journal holds, so nothing is measured twice. When
everything is measured, ``table.parquet`` and ``metadata.json`` are written
atomically and the journal is removed.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from hwnas.errors import HwnasError, ProfileError
from hwnas.latency import device as device_mod
from hwnas.latency.backends import get_backend
from hwnas.latency.profile import PART_COLUMNS, Profile
from hwnas.models.spaces.base import Part, get_space

REF_EVERY = 25
RESPREAD = 0.15
# Size range of the networks sampled for calibration and validation, per space:
# (counted quantity, low, high). The 224 range is a phone-class CPU target's.
SIZE_RANGES = {
    "imagenet224": ("flops", 50e6, 1.5e9),
    "cifar32": ("params", 0.1e6, 2.5e6),
}


def _key(part: Part) -> str:
    return json.dumps([getattr(part, c) for c in PART_COLUMNS])


def _part_from_key(key: str) -> Part:
    return Part(**dict(zip(PART_COLUMNS, json.loads(key))))


def sample_networks(space, n: int, seed: int) -> list:
    """``n`` distinct random architectures spread evenly (in log size) over the space's size range."""
    rng = random.Random(seed)
    rule = SIZE_RANGES.get(space.name)
    if rule is None:  # a finite cell space: plain uniform samples
        seen, out = set(), []
        for _ in range(n * 50):
            arch = space.sample(rng)
            if arch not in seen:
                seen.add(arch)
                out.append(arch)
            if len(out) == n:
                break
        return out
    what, lo, hi = rule
    pool = {}
    for _ in range(n * 6):
        target = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        kwargs = {"max_flops": target} if what == "flops" else {"max_params": target}
        arch = space.sample(rng, **kwargs)
        size = getattr(space.counts(arch), what)
        if lo <= size <= hi:
            pool[arch] = size
    if len(pool) < n:
        raise HwnasError(f"could sample only {len(pool)} distinct {space.name} networks with {what} in "
                         f"[{lo:g}, {hi:g}], {n} were requested")
    ranked = sorted(pool, key=pool.get)
    picks = np.linspace(0, len(ranked) - 1, n).round().astype(int)
    chosen, used = [], set()
    for i in picks:  # evenly spaced ranks; nudge past duplicates
        j = int(i)
        while j in used:
            j = j + 1 if j + 1 < len(ranked) else 0
        used.add(j)
        chosen.append(ranked[j])
    return chosen


def measure_network(space, arch, backend, **kw):
    """Batch-time Measurement of a whole network of ``space`` built from ``arch``."""
    module = space.build(arch)
    return backend.measure_module(module, (3, space.resolution, space.resolution), **kw)


class Journal:
    """Append-only JSON-lines record of a profiling run; a torn last line is ignored."""

    def __init__(self, path: Path, header: dict):
        self.path = path
        self.records: list[dict] = []
        if path.exists():
            lines = path.read_text().splitlines()
            try:
                first = json.loads(lines[0]) if lines else None
            except json.JSONDecodeError:
                first = None
            if first is not None and first.get("header") != header:
                raise ProfileError(f"{path} belongs to a profiling run with other settings "
                                   f"({first.get('header')}); use another --out or delete that journal")
            for line in lines[1:]:
                try:
                    self.records.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # killed mid-write: everything before is intact
            if first is None:
                lines = []
            # Rewrite without a torn tail so later appends start on a clean line.
            if len(self.records) != len(lines) - 1:
                self._rewrite(header)
        else:
            self._rewrite(header)

    def _rewrite(self, header: dict) -> None:
        from hwnas.atomic import atomic_write_bytes

        text = "".join(json.dumps(r) + "\n" for r in [{"header": header}] + self.records)
        atomic_write_bytes(self.path, text.encode())

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)


def _reference_part(parts: list[Part]) -> Part:
    from hwnas.latency.predictor import part_features

    macs = [part_features(p)[0] for p in parts]
    order = np.argsort(macs)
    return parts[int(order[int(len(order) * 0.6)])]


def profile_device(space_name: str, backend_name: str, settings: dict, out: str | os.PathLike, *,
                   grid: str = "coarse", networks: int = 40, seed: int = 0, max_minutes: float | None = None,
                   gpu: str | None = None, progress: bool = True, parts: list[Part] | None = None,
                   name: str | None = None) -> Profile | None:
    """Measure a profile into ``out``; returns it, or None when ``max_minutes`` ran out first (rerun resumes)."""
    from tqdm import tqdm

    space = get_space(space_name)
    dev = device_mod.identity(settings.get("device", "cpu"), gpu)
    backend = get_backend(backend_name, **settings)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid_parts = list(dict.fromkeys(parts if parts is not None else space.grid_parts(grid)))
    if not grid_parts:
        raise ProfileError(f"space {space_name} has no parts on grid {grid!r}")
    header = {"space": space_name, "backend": backend_name, "settings": backend.settings, "grid": grid,
              "networks": networks, "seed": seed, "device": dev["name"], "parts": len(grid_parts)}
    journal = Journal(out / "journal.jsonl", header)
    done = {r["key"] for r in journal.records if r["kind"] in ("part", "network")}
    ref = _reference_part(grid_parts)
    nets = sample_networks(space, networks, seed + 1_000_003) if networks else []
    todo = [("part", _key(p), p) for p in grid_parts] + [("network", space.format(a), a) for a in nets]
    pending = [t for t in todo if t[1] not in done]
    deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes
    bar = tqdm(total=len(todo), initial=len(todo) - len(pending), disable=not progress, unit="item",
               desc=f"profiling {space_name}", smoothing=0.05)
    since_ref = REF_EVERY
    for kind, key, obj in pending:
        if deadline is not None and time.monotonic() > deadline:
            bar.close()
            return None
        if since_ref >= REF_EVERY:
            module, shape = space.build_part(ref)
            t = time.monotonic()
            m = backend.measure_module(module, shape)
            journal.append({"kind": "ref", "key": _key(ref), "median_ms": m.median_ms, "seconds": time.monotonic() - t})
            since_ref = 0
        t = time.monotonic()
        if kind == "part":
            module, shape = space.build_part(obj)
            m = backend.measure_module(module, shape)
            if m.spread > RESPREAD:
                again = backend.measure_module(module, shape)
                m = min(m, again, key=lambda x: x.spread)
        else:
            m = measure_network(space, obj, backend)
            if m.spread > RESPREAD:
                again = measure_network(space, obj, backend)
                m = min(m, again, key=lambda x: x.spread)
        journal.append({"kind": kind, "key": key, **m.as_dict(), "seconds": time.monotonic() - t,
                        "ref_index": sum(1 for r in journal.records if r["kind"] == "ref") - 1})
        since_ref += 1
        bar.update(1)
    bar.close()
    profile = _finalize(space, backend, dev, grid, journal, out, seed, name or out.name)
    (out / "journal.jsonl").unlink(missing_ok=True)
    return profile


def _finalize(space, backend, dev, grid, journal: Journal, out: Path, seed: int, name: str) -> Profile:
    from hwnas.latency.predictor import Predictor, fit_calibration

    refs = np.array([r["median_ms"] for r in journal.records if r["kind"] == "ref"])
    ref_median = float(np.median(refs))
    drift = lambda r: ref_median / refs[r["ref_index"]]  # noqa: E731
    rows, nets = [], []
    for r in journal.records:
        if r["kind"] == "part":
            f = drift(r)
            rows.append({**asdict(_part_from_key(r["key"])), "median_ms": r["median_ms"] * f,
                         "p10_ms": r["p10_ms"] * f, "p90_ms": r["p90_ms"] * f, "repeats": r["repeats"],
                         "raw_median_ms": r["median_ms"]})
        elif r["kind"] == "network":
            nets.append({"arch": r["key"], "measured_batch_ms": r["median_ms"] * drift(r),
                         "raw_batch_ms": r["median_ms"], "p10_ms": r["p10_ms"], "p90_ms": r["p90_ms"]})
    table = pd.DataFrame(rows)
    seconds = float(sum(r.get("seconds", 0.0) for r in journal.records))
    metadata = {
        "name": name, "space": space.name, "resolution": space.resolution, "num_classes": space.num_classes,
        "backend": backend.name, "settings": backend.settings, "device": dev,
        "versions": {**device_mod.library_versions(), **backend.versions()},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "grid": grid,
        "timing": "batch time in ms (median over repeats, drift-corrected by an interleaved reference part)",
        "reference": {"part": next((json.loads(r["key"]) for r in journal.records if r["kind"] == "ref"), None),
                      "median_ms": ref_median, "min_ms": float(refs.min()), "max_ms": float(refs.max()),
                      "count": int(refs.size)},
        "profiling_seconds": round(seconds, 1), "seed": seed, "calibration": {},
    }
    profile = Profile(table=table, metadata=metadata)
    if len(nets) >= 3:
        pred = Predictor(profile)
        feats = [pred.features(space.parse(n["arch"])) for n in nets]
        s, b, k, mis = (np.array(v, dtype=float) for v in zip(*feats))
        y = np.array([n["measured_batch_ms"] for n in nets])
        cal = fit_calibration(s, b, k, y, mis)
        for n, si, bi, ki, mi in zip(nets, s, b, k, mis):
            n.update(raw_sum_ms=float(si), boundary_mb=float(bi), parts=int(ki), misaligned_ms=float(mi))
        cal["networks"] = nets
        profile.metadata["calibration"] = cal
    profile.save(out)
    return profile


def recalibrate(path: str | os.PathLike) -> Profile:
    """Refit a profile's calibration on its stored whole-network measurements with the current predictor.

    Nothing is measured: the table and the networks' measured times stay as
    they are; only the calibration (and hence the hash) changes.
    """
    from hwnas.latency.predictor import Predictor, fit_calibration

    profile = Profile.load(path)
    nets = profile.calibration.get("networks", [])
    if len(nets) < 3:
        raise ProfileError(f"profile {profile.name} stores {len(nets)} measured networks; 3 or more are needed")
    space = get_space(profile.space)
    bare = Profile(table=profile.table, metadata={**profile.metadata, "calibration": {}})
    pred = Predictor(bare)
    feats = [pred.features(space.parse(n["arch"])) for n in nets]
    s, b, k, mis = (np.array(v, dtype=float) for v in zip(*feats))
    cal = fit_calibration(s, b, k, np.array([n["measured_batch_ms"] for n in nets]), mis)
    for n, si, bi, ki, mi in zip(nets, s, b, k, mis):
        n.update(raw_sum_ms=float(si), boundary_mb=float(bi), parts=int(ki), misaligned_ms=float(mi))
    cal["networks"] = nets
    profile.metadata["calibration"] = cal
    profile.save(profile.path)
    return profile
