"""Torchvision's ImageNet classifiers as baselines: published top-1 and latency measured on the profile's device.

They are not in any search space, so a profile cannot predict them: each is
built (random weights: timing does not depend on them, nothing is downloaded),
timed whole with the profile's backend and settings through the interleaved
timing of :mod:`hwnas.latency.timing`, and only on the profile's own device
(:meth:`Profile.check` with ``host=True``). Top-1 and GFLOPs come from
torchvision's weight metadata (``weights.meta["_metrics"]``, ``meta["_ops"]``)
of each model's default weights, at their own evaluation crop size. Results
are cached in a JSON file per profile hash, written after every group of
networks, so a rerun (or a killed run) measures nothing twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hwnas.atomic import atomic_write
from hwnas.errors import one_line
from hwnas.latency.profile import Profile
from hwnas.latency.timing import CHUNK, ExportedModules, measure_interleaved, network_ms


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hwnas" / "reference-latency"


def catalog(max_gflops: float | None = None, names: list[str] | None = None) -> list[dict]:
    """Torchvision's classification models with their default weights' published ImageNet-1K top-1, GFLOPs
    and crop size, by name (at most ``max_gflops`` when given; only ``names`` when given)."""
    import torchvision.models as tvm

    rows = []
    for name in names or tvm.list_models(module=tvm):
        weights = tvm.get_model_weights(name).DEFAULT
        meta = weights.meta
        crop = getattr(weights.transforms, "keywords", {}).get("crop_size", 224)
        row = {"name": name, "weights": str(weights), "top1": float(meta["_metrics"]["ImageNet-1K"]["acc@1"]),
               "gflops": float(meta.get("_ops", float("nan"))), "params_m": meta.get("num_params", 0) / 1e6,
               "resolution": int(crop)}
        if max_gflops is None or row["gflops"] <= max_gflops:
            rows.append(row)
    return rows


def _build(row: dict):
    import torchvision.models as tvm

    kwargs = {"image_size": row["resolution"]} if row["name"].startswith("vit_") else {}
    return tvm.get_model(row["name"], weights=None, **kwargs).eval()


def _key(row: dict, backend) -> str:
    return json.dumps([row["name"], row["weights"], row["resolution"], backend.versions()], sort_keys=True)


def measure(profile: Profile, rows: list[dict], cache_dir: str | Path | None = None,
            on_progress=None) -> list[dict]:
    """``rows`` (from :func:`catalog`) with ``measured_ms`` per image on this machine, which must be the
    profile's device (ProfileError otherwise, before any work). Cached per profile hash and runtime version;
    a network that cannot be built or exported gets ``error`` instead."""
    from hwnas.latency.validate import backend_for

    profile.check(host=True)
    backend = backend_for(profile)
    path = Path(cache_dir or default_cache_dir()) / f"{profile.hash}.json"
    cache = json.loads(path.read_text()) if path.is_file() else {}
    todo = [r for r in rows if _key(r, backend) not in cache]

    for start in range(0, len(todo), CHUNK):
        group = todo[start:start + CHUNK]
        # each network exported once for its passes
        with ExportedModules(backend, _build, lambda r: (3, r["resolution"], r["resolution"]),
                             key=lambda r: _key(r, backend)) as exported:
            try:
                found = list(zip(group, measure_interleaved(backend, group, exported.prepare)))
            except Exception:  # noqa: BLE001 - one network failed to build or export: time them one by one
                found = []
                for row in group:
                    try:
                        found.append((row, measure_interleaved(backend, [row], exported.prepare)[0]))
                    except Exception as err:  # noqa: BLE001 - any runtime's failure is noted the same way
                        cache[_key(row, backend)] = {"error": one_line(f"{type(err).__name__}: {err}", 200)}
        for row, m in found:
            cache[_key(row, backend)] = {"measured_ms": network_ms(m) / profile.batch}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(json.dumps(cache, indent=1)), binary=False)
        if on_progress is not None:
            on_progress(min(start + CHUNK, len(todo)), len(todo))
    return [{**r, **cache[_key(r, backend)]} for r in rows]
