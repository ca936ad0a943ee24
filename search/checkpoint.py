"""A search's checkpoint and result files, all written atomically (``hwnas.atomic``)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from hwnas.atomic import atomic_write
from hwnas.errors import HwnasError

CHECKPOINT = "checkpoint.pkl"
CHECKPOINT_VERSION = 1


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), binary=False)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_parquet(path: Path, frame) -> None:
    atomic_write(path, lambda f: frame.to_parquet(f, index=False))


def save_checkpoint(out: Path, state: dict) -> None:
    payload = {"version": CHECKPOINT_VERSION, **state}
    atomic_write(Path(out) / CHECKPOINT, lambda f: pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL))


def load_checkpoint(out: Path) -> dict | None:
    """The saved state, or None when the folder holds no checkpoint."""
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except Exception as err:  # a truncated or foreign file: say so, do not guess
        raise HwnasError(f"cannot read checkpoint {path}: {err}; expected a file written by hwnas search") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise HwnasError(f"checkpoint {path} has an unknown format; expected version {CHECKPOINT_VERSION}")
    return state
