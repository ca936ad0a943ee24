"""Latency profiles: a per-part lookup table plus metadata, stored as ``profiles/<name>/``.

Files:

- ``table.parquet``: one row per measured part (the :class:`~hwnas.latency.kernels.base.Part`
  fields) with ``median_ms``, ``p10_ms``, ``p90_ms``, ``repeats`` (batch times,
  drift-corrected, see :mod:`hwnas.latency.profiler`) and ``raw_median_ms``.
- ``graph.parquet`` (finite spaces profiled with ONNX Runtime on CPU only): the
  operator counts of the optimized graph of every architecture of the space
  (see :mod:`hwnas.latency.graph`).
- ``metadata.json``: schema version, space, device identity, backend and its
  settings (precision, batch, threads, ...), library versions, date, grid,
  profiling time, the end-to-end calibration (form, coefficients, the
  networks it was fitted on, leave-one-out figures) and ``hash``, a SHA-256 of
  the table's content and of every other metadata field.

Reading checks the schema version, the columns and the hash, and refuses
anything else with a :class:`~hwnas.errors.ProfileError`. :meth:`Profile.check`
says whether a profile fits a use: its space, its batch and, where networks
will be measured, this machine (:func:`hwnas.latency.device.host_differences`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from hwnas.atomic import atomic_write_bytes
from hwnas.errors import ProfileError
from hwnas.files import shown_path
from hwnas.latency import device as device_mod

SCHEMA_VERSION = 1
GRAPH_FILE = "graph.parquet"
NETWORK_OP = "network"  # a table row that is a whole network (its architecture string in ``extra``)
PART_COLUMNS = ["op", "cin", "cout", "resolution", "stride", "mid", "first", "se", "extra"]
VALUE_COLUMNS = ["median_ms", "p10_ms", "p90_ms", "repeats", "raw_median_ms"]
REQUIRED_METADATA = ["schema_version", "name", "space", "backend", "settings", "device", "versions", "date",
                     "grid", "calibration", "hash"]
DEFAULT_PROFILE = "ort-cpu1-b1-imagenet224"
_SPEED_PASSED: set[str] = set()  # hashes of the profiles whose speed check passed in this process (Profile.check)
# The default profile for each space: what `search` and `latency predict` use without --profile.
DEFAULT_BY_SPACE = {"imagenet224": "ort-cpu1-b1-imagenet224", "cifar32": "ort-cpu1-b1-cifar32",
                    "nb201": "ort-cpu1-b1-nb201"}


def default_profile_name(space: str | None = None) -> str:
    """The shipped profile used when no --profile is given (per space if one is named)."""
    if space is None:
        return DEFAULT_PROFILE
    try:
        return DEFAULT_BY_SPACE[space]
    except KeyError:
        raise ProfileError(f"no shipped default profile for space {space!r}; "
                           f"shipped defaults exist for: {', '.join(sorted(DEFAULT_BY_SPACE))}") from None


def shipped_dir() -> Path:
    """The folder of the installed package ``hwnas.profiles``."""
    return Path(str(resources.files("hwnas.profiles")))


def profile_name(backend: str, settings: dict, space: str, gpu: str | None = None) -> str:
    """The default name of a profile: ``ort-cpu1-b1-imagenet224``, ``trt-v100-fp16-b64-imagenet224``."""
    short = {"onnxruntime": "ort", "tensorrt": "trt"}.get(backend, backend)
    if settings.get("device", "cpu") == "cpu":
        return f"{short}-cpu{settings['threads']}-b{settings['batch']}-{space}"
    slug = "".join(ch for ch in (gpu or "gpu").lower() if ch.isalnum())
    return f"{short}-{slug}-{settings['precision']}-b{settings['batch']}-{space}"


def profile_command(metadata: dict) -> str:
    """The command that profiles this machine for a profile's space, backend and settings, into a folder that
    does not shadow a shipped profile."""
    settings = metadata["settings"]
    if settings.get("device", "cpu") == "cpu":
        target = f"--cpu --backend {metadata['backend']} --threads {settings.get('threads', 1)}"
    else:
        target = f"--gpu NAME --backend {metadata['backend']} --precision {settings['precision']}"
    out = f"local-profiles/{profile_name(metadata['backend'], {'threads': 1, **settings}, metadata['space'])}"
    return f"profile-device {target} --batch {settings['batch']} --space {metadata['space']} --out {out}"


def _source(meta: dict) -> str:
    """Where a profile's numbers came from."""
    src = meta.get("source")
    if src and src.get("kind") == "imported":
        calibrated = meta.get("calibration", {}).get("fitted_on")
        return (f"imported: {src['measured_by']}, {src['repository']} ({src['license']})"
                + (f"; calibrated on {calibrated.split(' (')[0]}" if calibrated else ""))
    if src and src.get("kind") == "quick":
        minutes = meta.get("profiling_seconds") or 0
        return (f"quick profile, {minutes / 60:.0f} min: {src['parts_measured']} parts and "
                f"{src['networks_measured']} networks measured here, the rest carried over from {src['from']} "
                f"({src['from_device']})")
    minutes = meta.get("profiling_seconds")
    text = "measured by profile-device" + (f", {minutes / 60:.0f} min" if minutes else "")
    if meta.get("networks_remeasured"):
        text += f"; networks re-measured {meta['networks_remeasured'][:10]}"
    return text


def list_profiles() -> list[dict]:
    """Summary of every shipped profile (name, space, device and its ISA, runtime settings, where its numbers came
    from, whether it fits this machine), sorted by name."""
    out = []
    for meta_file in sorted(shipped_dir().glob("*/metadata.json")):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        s = meta.get("settings", {})
        cal = meta.get("calibration", {})
        dev = meta.get("device", {})
        runtime = device_mod.RUNTIME_LIBRARY.get(meta.get("backend"))
        differences = device_mod.host_differences(meta)
        out.append({"name": meta_file.parent.name, "space": meta.get("space"), "backend": meta.get("backend"),
                    "device": " ".join(filter(None, (dev.get("name"), device_mod.cpuid_text(dev)))),
                    "cores": dev.get("logical_cores"), "isa": dev.get("simd"),
                    "runtime": " ".join(filter(None, (meta.get("backend"), meta.get("versions", {}).get(runtime)))),
                    "precision": s.get("precision"), "batch": s.get("batch"), "threads": s.get("threads"),
                    "parts": meta.get("parts"), "calibration": cal.get("form"), "source": _source(meta),
                    "date": meta.get("date"), "default": meta_file.parent.name == DEFAULT_PROFILE,
                    "fits_host": not differences, "host_differences": differences})
    return out


def content_hash(table: pd.DataFrame, metadata: dict, graph: pd.DataFrame | None = None) -> str:
    """SHA-256 of the table's values (canonical CSV), of the graph table if any, and of the metadata without its
    ``hash``."""
    h = hashlib.sha256()
    canon = table[PART_COLUMNS + VALUE_COLUMNS].sort_values(PART_COLUMNS).reset_index(drop=True)
    h.update(canon.to_csv(index=False, float_format="%.9g").encode())
    if graph is not None:
        h.update(graph.sort_values("arch").reset_index(drop=True).to_csv(index=False).encode())
    meta = {k: v for k, v in metadata.items() if k != "hash"}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _has_metadata(folder: Path) -> bool:
    """Whether ``folder`` holds a metadata.json (a name the system cannot even look up holds none)."""
    try:
        return (folder / "metadata.json").is_file()
    except (OSError, ValueError):
        return False


@dataclass
class Profile:
    table: pd.DataFrame
    metadata: dict = field(default_factory=dict)
    path: Path | None = None
    graph: pd.DataFrame | None = None  # graph.parquet, see hwnas.latency.graph

    # metadata views
    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def space(self) -> str:
        return self.metadata["space"]

    @property
    def backend(self) -> str:
        return self.metadata["backend"]

    @property
    def settings(self) -> dict:
        return dict(self.metadata["settings"])

    @property
    def batch(self) -> int:
        return int(self.metadata["settings"]["batch"])

    @property
    def precision(self) -> str:
        return self.metadata["settings"]["precision"]

    @property
    def threads(self) -> int | None:
        return self.metadata["settings"].get("threads")

    @property
    def resolution(self) -> int:
        return int(self.metadata["resolution"])

    @property
    def hash(self) -> str:
        return self.metadata["hash"]

    @property
    def calibration(self) -> dict:
        return self.metadata["calibration"]

    # fit
    def check(self, *, space=None, batch: int | None = None, host: bool = False, doing: str = "measured",
              speed: bool = True) -> None:
        """Refuse (ProfileError, one line) a profile that does not fit: another ``space`` (name and resolution)
        or ``batch``, or with ``host``, because networks will be ``doing`` on this machine, another device. Every
        difference is named, each with what to do.

        With ``host`` and ``speed``, where the recorded identity matches, a few of the profile's calibration
        networks are also timed here (a few seconds, :func:`hwnas.latency.speed.check_speed`): a machine that runs
        them far faster or slower than the profiled device did is another device. A profile that passed is not
        timed again in the same process (`search --measure` checks before its search and again when it measures;
        a sweep, at every search)."""
        problems = []
        if space is not None and self.space != space.name:
            problems.append(f"it is a profile of space {self.space!r}, not {space.name!r} "
                            f"(pass --space {self.space} or a profile of {space.name})")
        elif space is not None and self.resolution != int(space.resolution):
            problems.append(f"its resolution {self.resolution} does not match the space's {space.resolution}, "
                            f"expected a profile measured at {space.resolution}x{space.resolution}")
        if batch is not None and int(batch) != self.batch:
            problems.append(f"it was measured at batch {self.batch}, latency is asked at batch {batch} (expected "
                            f"a profile measured at batch {batch})")
        differences = device_mod.host_differences(self.metadata) if host else []
        source = self.metadata.get("source", {})
        if differences and source.get("kind") == "imported":
            problems.append(f"it holds published measurements of {self.metadata.get('device', {}).get('name')} "
                            f"by {source.get('measured_by')}, imported, and this machine is not that device, so "
                            f"networks cannot be {doing} here for it (predictions need no device: search without "
                            "measuring)")
        elif differences:
            problems.append(f"it was measured on {device_mod.describe(self.metadata.get('device', {}))} and "
                            f"{', '.join(differences)}, so networks cannot be {doing} here for it (to measure on "
                            f"this machine, profile it: {profile_command(self.metadata)}, and pass that folder as "
                            "--profile)")
        if problems:
            raise ProfileError(f"profile {self.name} does not fit: {'; '.join(problems)}")
        key = self.metadata.get("hash")
        if host and speed and (key is None or key not in _SPEED_PASSED):
            from hwnas.latency.speed import check_speed

            check_speed(self, doing=doing)
            if key is not None:
                _SPEED_PASSED.add(key)

    def network_table(self) -> dict[str, float] | None:
        """Architecture string → batch ms when the table holds whole networks (an imported profile such as
        HW-NAS-Bench's), else None (a table of parts)."""
        rows = self.table
        if rows.empty or not (rows.op == NETWORK_OP).all():
            return None
        return dict(zip(rows.extra.tolist(), rows.median_ms.astype(float).tolist()))

    # I/O
    @classmethod
    def for_space(cls, space, name_or_path: str | os.PathLike | None = None, *,
                  batch: int | None = None) -> "Profile":
        """The named profile, or the space's shipped default, checked to fit ``space`` and ``batch``."""
        profile = cls.load(name_or_path if name_or_path else default_profile_name(space.name))
        profile.check(space=space, batch=batch)
        return profile

    @classmethod
    def load(cls, name_or_path: str | os.PathLike | None = None) -> "Profile":
        """A shipped profile by name, or a profile folder (or its metadata.json) by path."""
        if name_or_path is None:
            name_or_path = default_profile_name()
        text = str(name_or_path)
        path = Path(text)
        if path.name == "metadata.json":
            path = path.parent
        if not _has_metadata(path):
            shipped = shipped_dir() / text
            if "/" not in text and _has_metadata(shipped):
                path = shipped
            else:
                names = ", ".join(p["name"] for p in list_profiles()) or "none"
                shown = shown_path(text)
                raise ProfileError(f"no profile {shown!r}: not a folder with metadata.json, nor a shipped profile "
                                   f"(shipped: {names})")
        try:
            metadata = json.loads((path / "metadata.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ProfileError(f"profile {path}: unreadable metadata.json ({err})") from None
        if not isinstance(metadata, dict):
            raise ProfileError(f"profile {path}: metadata.json is not an object")
        version = metadata.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ProfileError(f"profile {path}: schema version {version!r}, this hwnas reads version "
                               f"{SCHEMA_VERSION}; re-run profile-device")
        missing = [k for k in REQUIRED_METADATA if k not in metadata]
        if missing:
            raise ProfileError(f"profile {path}: metadata.json lacks {', '.join(missing)}")
        try:
            table = pd.read_parquet(path / "table.parquet")
        except Exception as err:  # pyarrow raises several types for a damaged file
            raise ProfileError(f"profile {path}: unreadable table.parquet ({type(err).__name__}: {err})") from None
        absent = [c for c in PART_COLUMNS + VALUE_COLUMNS if c not in table.columns]
        if absent:
            raise ProfileError(f"profile {path}: table.parquet lacks columns {', '.join(absent)}")
        graph = None
        if (path / GRAPH_FILE).exists():
            try:
                graph = pd.read_parquet(path / GRAPH_FILE)
            except Exception as err:
                raise ProfileError(f"profile {path}: unreadable {GRAPH_FILE} ({type(err).__name__}: {err})") from None
            if "arch" not in graph.columns:
                raise ProfileError(f"profile {path}: {GRAPH_FILE} lacks the column arch")
        if content_hash(table, metadata, graph) != metadata["hash"]:
            raise ProfileError(f"profile {path}: content hash mismatch: table.parquet, {GRAPH_FILE} or "
                               "metadata.json was changed or damaged after profiling")
        return cls(table=table, metadata=metadata, path=path, graph=graph)

    def save(self, path: str | os.PathLike) -> Path:
        """Write table.parquet and metadata.json (each atomically), stamping schema version and hash."""
        path = Path(path)
        self.metadata["schema_version"] = SCHEMA_VERSION
        self.metadata.setdefault("name", path.name)
        table = self.table[PART_COLUMNS + VALUE_COLUMNS].sort_values(PART_COLUMNS).reset_index(drop=True)
        self.table = table
        self.metadata["parts"] = int(len(table))
        self.metadata["hash"] = content_hash(table, self.metadata, self.graph)
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path) as tmp:
            tmp_file = Path(tmp) / "t.parquet"
            table.to_parquet(tmp_file, index=False)
            atomic_write_bytes(path / "table.parquet", tmp_file.read_bytes())
            if self.graph is not None:
                self.graph.to_parquet(tmp_file, index=False)
                atomic_write_bytes(path / GRAPH_FILE, tmp_file.read_bytes())
            else:
                (path / GRAPH_FILE).unlink(missing_ok=True)
        atomic_write_bytes(path / "metadata.json",
                           (json.dumps(self.metadata, indent=1, sort_keys=True, default=str) + "\n").encode())
        self.path = path
        return path
