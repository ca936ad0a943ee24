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
anything else with a :class:`~hwnas.errors.ProfileError`.
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

SCHEMA_VERSION = 1
GRAPH_FILE = "graph.parquet"
PART_COLUMNS = ["op", "cin", "cout", "resolution", "stride", "mid", "first", "se", "extra"]
VALUE_COLUMNS = ["median_ms", "p10_ms", "p90_ms", "repeats", "raw_median_ms"]
REQUIRED_METADATA = ["schema_version", "name", "space", "backend", "settings", "device", "versions", "date",
                     "grid", "calibration", "hash"]
DEFAULT_PROFILE = "ort-cpu1-b1-imagenet224"
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


def list_profiles() -> list[dict]:
    """Summary of every shipped profile (name, space, backend, device, batch, ...), sorted by name."""
    out = []
    for meta_file in sorted(shipped_dir().glob("*/metadata.json")):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        s = meta.get("settings", {})
        cal = meta.get("calibration", {})
        out.append({"name": meta_file.parent.name, "space": meta.get("space"), "backend": meta.get("backend"),
                    "device": meta.get("device", {}).get("name"), "precision": s.get("precision"),
                    "batch": s.get("batch"), "threads": s.get("threads"), "parts": meta.get("parts"),
                    "calibration": cal.get("form"), "date": meta.get("date"),
                    "default": meta_file.parent.name == DEFAULT_PROFILE})
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

    # I/O
    @classmethod
    def load(cls, name_or_path: str | os.PathLike | None = None) -> "Profile":
        """A shipped profile by name, or a profile folder (or its metadata.json) by path."""
        if name_or_path is None:
            name_or_path = default_profile_name()
        text = str(name_or_path)
        path = Path(text)
        if path.name == "metadata.json":
            path = path.parent
        if not (path / "metadata.json").exists():
            shipped = shipped_dir() / text
            if (shipped / "metadata.json").exists() and "/" not in text:
                path = shipped
            else:
                names = ", ".join(p["name"] for p in list_profiles()) or "none"
                raise ProfileError(f"no profile {text!r}: not a folder with metadata.json, nor a shipped profile "
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
