"""A finished search's output folder, read back: the best structure and the settings it was searched with.

The search writes ``best.txt`` (the best structure), ``config.json`` (the
search's settings, the space's resolution and class count, the profile it
used) and ``summary.json``; this module is the one reader of that format, so
that deploy, the CLI and the curves take a run folder without knowing it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hwnas.errors import HwnasError
from hwnas.models.structure import read_first_line

BEST = "best.txt"
CONFIG = "config.json"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class SearchRun:
    folder: Path
    structure: str  # the best structure's text
    space: str
    resolution: int | None
    num_classes: int | None
    profile: str | None  # the profile's path, else its name, else None (no latency budget)
    config: dict

    @property
    def summary_path(self) -> Path:
        return self.folder / SUMMARY


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is a folder that holds a search's best structure."""
    path = Path(path)
    return path.is_dir() and (path / BEST).is_file()


def read_json(path: Path) -> dict:
    """A JSON object the search wrote; HwnasError naming the file if it is missing or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise HwnasError(f"{path}: cannot read it ({err}); expected a file written by hwnas search") from None
    if not isinstance(data, dict):
        raise HwnasError(f"{path}: expected a JSON object, as hwnas search writes")
    return data


def read_run(path: str | Path) -> SearchRun:
    """The run in folder ``path``; HwnasError when it is not a finished search's folder."""
    folder = Path(path)
    if not is_run(folder):
        raise HwnasError(f"{folder}: no {BEST}; expected the --out folder of a finished search "
                         f"({BEST} and {CONFIG})")
    config = read_json(folder / CONFIG)
    space = config.get("space")
    if not isinstance(space, str):
        raise HwnasError(f"{folder / CONFIG}: no space; expected a file written by hwnas search")
    info = config.get("profile_info") or {}
    profile = info.get("path") or info.get("name") or config.get("profile")
    return SearchRun(folder, read_first_line(folder / BEST), space, config.get("resolution"),
                     config.get("num_classes"), profile, config)
