"""profile-device: measure every part of a space's grid, then whole networks for the calibration.

Procedure (one backend, fixed settings):

1. Enumerate the grid's parts (``kernels_for(space).grid_parts(grid)``).
2. Measure each part in isolation, in a seeded shuffle of the grid (warm-up, the fastest of
   ``PART_SESSIONS`` fresh sessions, median over its repeats, p10/p90); a part whose p10-p90 band
   is wider than 15% of its median is measured again and the tighter of the two
   kept. Every ``REF_EVERY`` parts a fixed *reference part* is measured too; at
   the end every part's median is scaled by (median reference time / running
   median of the references nearest in the run) to take out the machine's
   drift over the run (the raw median is kept as well).
3. Measure ``networks`` random whole networks of the space, spread over its
   size range, end to end under the same settings, in rounds interleaved
   across networks, in ``PASSES`` passes over all of them (:func:`measure_networks`;
   a network's batch time is the 10th percentile of its samples in its fastest
   pass, :func:`hwnas.latency.timing.network_ms`), and fit the calibration on them
   (:func:`hwnas.latency.calibration.fit_calibration`).

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
from hwnas.latency import transfer
from hwnas.latency.kernels import Part, kernels_for
from hwnas.latency.part_table import channel_block
from hwnas.latency.timing import (CHUNK, NETWORK_TIMING, PASSES, Measurement, Progress,
                                  exported_networks, fastest_pass, measure_networks, network_ms, pass_order)
from hwnas.models.spaces.base import get_space

REF_EVERY = 25
DRIFT_WINDOW = 5  # references in the running median that corrects the drift
RESPREAD = 0.15
# Each part is the fastest of this many fresh sessions (as a whole network is the fastest of its passes), its
# repeats split between them: timing.timed_sessions.
PART_SESSIONS = 3
PART_TIMING = (f"median over repeats in the fastest of {PART_SESSIONS} sessions, in a shuffled order, drift-corrected "
               "by an interleaved reference part")
# Calibration networks by default: with 80, fresh imagenet224 networks were within ±10% for 96% on average (over
# splits of 130 measured networks); with 129, 98-99% (docs/latency.md).
NETWORKS = 240
# ... and where the graph form applies (it has ~70 coefficients): 400 reached 100% within ±10% in 10-fold CV.
GRAPH_NETWORKS = 500
WALK_STEPS = (24, 300)  # range of random-walk lengths of the sampled structure networks (log-uniform)


def _key(part: Part) -> str:
    return json.dumps([getattr(part, c) for c in PART_COLUMNS])


def _part_from_key(key: str) -> Part:
    return Part(**dict(zip(PART_COLUMNS, json.loads(key))))


def sample_networks(space, n: int, seed: int) -> list:
    """``n`` distinct random architectures spread evenly (in log size) over the space's size range."""
    rng = random.Random(seed)
    rule = kernels_for(space).size_range  # (counted quantity, low, high)
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
        # Random walks of 24 to 300 mutations: long walks grow the deep, many-block networks a search ends
        # in (a 1000-iteration search's best had 142 parts; 24-step walks have 15-90).
        kwargs["steps"] = int(round(math.exp(rng.uniform(math.log(WALK_STEPS[0]), math.log(WALK_STEPS[1])))))
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
    from hwnas.latency.part_table import part_features

    macs = [part_features(p)[0] for p in parts]
    order = np.argsort(macs)
    return parts[int(order[int(len(order) * 0.6)])]


def profile_device(space_name: str, backend_name: str, settings: dict, out: str | os.PathLike, *,
                   grid: str = "coarse", networks: int | None = None, seed: int = 0,
                   max_minutes: float | None = None,
                   gpu: str | None = None, on_progress: Progress | None = None, parts: list[Part] | None = None,
                   name: str | None = None, quick_from: Profile | None = None) -> Profile | None:
    """Measure a profile into ``out``; returns it, or None when ``max_minutes`` ran out first (rerun resumes).
    ``on_progress(done, total, what)`` is called as parts and networks are measured. ``quick_from``: a quick
    profile carried over from that profile's table (:mod:`hwnas.latency.transfer`)."""
    from hwnas.latency.graph import supports_graph_features

    space = get_space(space_name)
    kernels = kernels_for(space)
    dev = device_mod.identity(settings.get("device", "cpu"), gpu)
    backend = get_backend(backend_name, **settings)
    if quick_from is not None:
        _check_quick_source(quick_from, space, backend_name, dev)
        parts = transfer.stratified_parts(quick_from.table, transfer.QUICK_PARTS, seed)
        grid = quick_from.metadata.get("grid", grid)
    graph_form = supports_graph_features(space, backend_name, backend.settings)
    if networks is None and quick_from is not None:
        networks = transfer.QUICK_GRAPH_NETWORKS if graph_form else transfer.QUICK_NETWORKS
    if networks is None:
        networks = GRAPH_NETWORKS if graph_form else NETWORKS
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid_parts = list(dict.fromkeys(parts if parts is not None else kernels.grid_parts(grid)))
    if not grid_parts:
        raise ProfileError(f"space {space_name} has no parts on grid {grid!r}")
    header = {"space": space_name, "backend": backend_name, "settings": backend.settings, "grid": grid,
              "networks": networks, "seed": seed, "device": dev["name"], "parts": len(grid_parts),
              "network_timing": NETWORK_TIMING, "part_timing": PART_TIMING}
    if quick_from is not None:
        header["quick_from"] = quick_from.hash
    journal = Journal(out / "journal.jsonl", header)
    done = {r["key"] for r in journal.records if r["kind"] == "part"}
    done_nets = {(r["key"], r["pass"]) for r in journal.records if r["kind"] == "network"}
    ref = _reference_part(grid_parts)
    nets = sample_networks(space, networks, seed + 1_000_003) if networks else []
    # Parts in a seeded shuffle, not grid order: an episode of load from elsewhere (minutes) then slows parts of
    # many positions a little instead of all of one position's together, and a network's sum over its parts
    # averages such errors out instead of inheriting one position's bias.
    pending = [(_key(p), p) for p in random.Random(seed).sample(grid_parts, len(grid_parts)) if _key(p) not in done]
    # whole networks in passes over all of them (pass-major, so passes are minutes apart), see measure_interleaved
    by_key = {space.format(a): a for a in nets}
    keys = list(by_key)
    passes_todo = [[k for k in (keys[i] for i in pass_order(len(keys), p)) if (k, p) not in done_nets]
                   for p in range(PASSES)]
    total = len(grid_parts) + PASSES * len(keys)
    deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes
    done_count = total - len(pending) - sum(map(len, passes_todo))
    what = f"profiling {space_name}"
    report = on_progress or (lambda done, total, what: None)
    report(done_count, total, what)
    since_ref = REF_EVERY
    for key, obj in pending:
        if deadline is not None and time.monotonic() > deadline:
            return None
        if since_ref >= REF_EVERY:
            module, shape = kernels.build_part(ref)
            t = time.monotonic()
            m = backend.measure_module(module, shape, sessions=PART_SESSIONS)
            journal.append({"kind": "ref", "key": _key(ref), "median_ms": m.median_ms, "seconds": time.monotonic() - t})
            since_ref = 0
        t = time.monotonic()
        module, shape = kernels.build_part(obj)
        m = backend.measure_module(module, shape, sessions=PART_SESSIONS)
        if m.spread > RESPREAD:
            again = backend.measure_module(module, shape, sessions=PART_SESSIONS)
            m = min(m, again, key=lambda x: x.spread)
        journal.append({"kind": "part", "key": key, **m.as_dict(), "seconds": time.monotonic() - t,
                        "ref_index": sum(1 for r in journal.records if r["kind"] == "ref") - 1})
        since_ref += 1
        done_count += 1
        report(done_count, total, what)
    with exported_networks(space, backend) as exported:  # each network exported once for all its passes
        for p, chunk in ((p, todo[i:i + CHUNK]) for p, todo in enumerate(passes_todo)
                         for i in range(0, len(todo), CHUNK)):
            if deadline is not None and time.monotonic() > deadline:
                return None
            t = time.monotonic()
            measured = measure_networks(space, [by_key[key] for key in chunk], backend, passes=1, exported=exported)
            seconds = (time.monotonic() - t) / len(chunk)
            for key, m in zip(chunk, measured):
                journal.append({"kind": "network", "key": key, "pass": p, **m.as_dict(), "seconds": seconds})
            done_count += len(chunk)
            report(done_count, total, what)
    profile = _finalize(space, backend, dev, grid, journal, out, seed, name or out.name, on_progress is not None,
                        quick_from)
    (out / "journal.jsonl").unlink(missing_ok=True)
    return profile


def _network_record(key: str, m: Measurement, passes: int) -> dict:
    """A measured calibration network as the profile stores it (``m``: its fastest pass's measurement)."""
    return {"arch": key, "measured_batch_ms": network_ms(m), **m.as_dict(), "passes": passes}


def _measurement(d: dict) -> Measurement:
    return Measurement(d["median_ms"], d["p10_ms"], d["p90_ms"], d["repeats"])


def _check_quick_source(source: Profile, space, backend_name: str, dev: dict) -> None:
    """Refuse a quick profile's source that cannot be carried over (one line)."""
    problems = []
    if source.space != space.name:
        problems.append(f"it is a profile of space {source.space!r}, not {space.name!r}")
    if source.backend != backend_name:
        problems.append(f"it was measured with {source.backend}, not {backend_name}")
    if source.metadata.get("device", {}).get("kind") != dev.get("kind"):
        problems.append(f"it describes a {source.metadata.get('device', {}).get('kind')} device, not a {dev.get('kind')}")
    if source.network_table() is not None:
        problems.append("it holds whole networks, not parts")
    if problems:
        raise ProfileError(f"profile {source.name} cannot be the source of a quick profile: {'; '.join(problems)} "
                           f"(pass --quick-from a {backend_name} profile of {space.name})")


def _finalize(space, backend, dev, grid, journal: Journal, out: Path, seed: int, name: str,
              progress: bool = False, quick_from: Profile | None = None) -> Profile:
    from hwnas.latency.graph import supports_graph_features

    refs = np.array([r["median_ms"] for r in journal.records if r["kind"] == "ref"])
    ref_median = float(np.median(refs))
    # A single reference measurement is as noisy as any part's (±10-20% from session to session): the drift is
    # the running median of DRIFT_WINDOW references around each, so one unlucky reference moves no parts.
    half = DRIFT_WINDOW // 2
    smooth = np.array([np.median(refs[max(0, i - half):i + half + 1]) for i in range(len(refs))])
    drift = lambda r: ref_median / smooth[r["ref_index"]]  # noqa: E731
    rows, passes = [], {}
    for r in journal.records:
        if r["kind"] == "part":
            f = drift(r)
            rows.append({**asdict(_part_from_key(r["key"])), "median_ms": r["median_ms"] * f,
                         "p10_ms": r["p10_ms"] * f, "p90_ms": r["p90_ms"] * f, "repeats": r["repeats"],
                         "raw_median_ms": r["median_ms"]})
        elif r["kind"] == "network":
            passes.setdefault(r["key"], []).append(_measurement(r))
    nets = [_network_record(key, fastest_pass(ms), len(ms)) for key, ms in passes.items()]
    table = pd.DataFrame(rows)
    quick = None
    if quick_from is not None:
        measured = len(table)
        table, fit = transfer.transfer_table(quick_from.table, table, channel_block({"device": dev}))
        quick = {"kind": "quick", "from": quick_from.name, "from_hash": quick_from.hash,
                 "from_device": device_mod.describe(quick_from.metadata.get("device", {})),
                 "from_settings": quick_from.settings, "parts_measured": measured,
                 "networks_measured": len(nets), "transfer": fit}
    seconds = float(sum(r.get("seconds", 0.0) for r in journal.records))
    metadata = {
        "name": name, "space": space.name, "resolution": space.resolution, "num_classes": space.num_classes,
        "backend": backend.name, "settings": backend.settings, "device": dev,
        "versions": {**device_mod.library_versions(), **backend.versions()},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "grid": grid,
        "timing": f"batch time in ms; parts: {PART_TIMING}; whole networks: {NETWORK_TIMING}",
        "reference": {"part": next((json.loads(r["key"]) for r in journal.records if r["kind"] == "ref"), None),
                      "median_ms": ref_median, "min_ms": float(refs.min()), "max_ms": float(refs.max()),
                      "count": int(refs.size)},
        "profiling_seconds": round(seconds, 1), "seed": seed, "calibration": {},
    }
    if quick is not None:
        metadata["source"] = quick
    graph = None
    if supports_graph_features(space, backend.name, backend.settings):
        from hwnas.latency.graph import graph_table

        t = time.monotonic()
        same_runtime = quick_from is not None and quick_from.graph is not None and \
            quick_from.metadata.get("versions", {}).get("onnxruntime") == metadata["versions"].get("onnxruntime") \
            and all(quick_from.settings.get(k) == backend.settings.get(k) for k in ("threads", "batch"))
        # The optimized graph depends on the ONNX Runtime version, threads and batch, not on the device: a quick
        # profile takes its source's graph table where those agree.
        graph = quick_from.graph if same_runtime else graph_table(space, backend.settings, progress=progress)
        metadata["profiling_seconds"] = round(seconds + time.monotonic() - t, 1)  # the graph table counts too
        metadata["graph"] = {"file": "graph.parquet", "rows": int(len(graph)),
                             "what": "operator counts of the graph ONNX Runtime optimizes from each architecture"}
    profile = Profile(table=table, metadata=metadata, graph=graph)
    if len(nets) >= 3:
        profile.metadata["calibration"] = _calibration(profile, space, nets)
    profile.save(out)
    return profile


def _calibration(profile: Profile, space, nets: list[dict]) -> dict:
    """Fit the calibration of ``profile`` (its table and graph table) on measured whole networks."""
    from hwnas.latency.calibration import fit_calibration
    from hwnas.latency.predictor import Predictor

    bare = Profile(table=profile.table, metadata={**profile.metadata, "calibration": {}}, graph=profile.graph)
    pred = Predictor(bare)
    archs = [space.parse(n["arch"]) for n in nets]
    network_features = [pred.features(a) for a in archs]
    F = np.array(network_features, dtype=float)
    x = graph_ops = None
    if profile.graph is not None:
        from hwnas.latency.graph import GraphFeatures

        features = GraphFeatures(space, profile.graph)
        x, graph_ops = np.array([features(a) for a in archs]), features.ops
    cal = fit_calibration(F, np.array([n["measured_batch_ms"] for n in nets]), x=x)
    if graph_ops is not None:
        cal["graph_ops"] = graph_ops
    for n, f in zip(nets, network_features):
        n.update(f._asdict())
    cal["networks"] = nets
    return cal


def recalibrate(path: str | os.PathLike, remeasure: bool = False, on_progress: Progress | None = None,
                networks: int | None = None) -> Profile:
    """Refit a profile's calibration on its whole networks with the current predictor, in place.

    Without ``remeasure`` nothing is measured: the table and the networks'
    stored times stay as they are. With it, the stored networks are measured
    again end to end (:func:`measure_networks`) with the profile's backend and
    settings — on the profiled device only — and the fit uses the new times;
    with ``networks`` as well, a fresh set of that many networks is sampled
    (:func:`sample_networks`, the profile's calibration seed stream) and
    measured instead. The table (the parts) is never re-measured; the hash changes.
    """
    profile = Profile.load(path)
    if remeasure:
        profile.check(host=True, doing="re-measured")  # before anything is sampled or measured
    nets = profile.calibration.get("networks", [])
    space = get_space(profile.space)
    if networks is not None:
        if not remeasure:
            raise ProfileError("a new set of calibration networks has to be measured: add --remeasure")
        nets = [{"arch": space.format(a)}
                for a in sample_networks(space, networks, int(profile.metadata.get("seed", 0)) + 1_000_003)]
    if len(nets) < 3:
        raise ProfileError(f"profile {profile.name} has {len(nets)} calibration networks; 3 or more are needed")
    if remeasure:
        backend = get_backend(profile.backend, **profile.settings)
        measured = measure_networks(space, [space.parse(n["arch"]) for n in nets], backend,
                                    on_progress=on_progress, what="re-measuring")
        nets = [_network_record(n["arch"], m, PASSES) for n, m in zip(nets, measured)]
        parts_timing = profile.metadata.get("timing", "").split("; whole networks:")[0]  # parts not re-measured
        profile.metadata["timing"] = f"{parts_timing}; whole networks: {NETWORK_TIMING}"
        profile.metadata["networks_remeasured"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    profile.metadata["calibration"] = _calibration(profile, space, nets)
    profile.save(profile.path)
    return profile
