"""A search's output folder: held by one writer while a search runs, read back once it has finished.

The search writes ``best.txt`` (the best structure), ``config.json`` (the
search's settings, the space's resolution and class count, the profile it
used) and ``summary.json``; this module is the one reader of that format, so
that deploy, the CLI and the curves take a run folder without knowing it.
:func:`hold_for_search` decides, under the folder's lock, whether a search
starts there from the start, continues its checkpoint, or is refused.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from hwnas.atomic import atomic_write, folder_lock, stale_temporaries
from hwnas.errors import HwnasError
from hwnas.models.structure import read_first_line
from hwnas.search.checkpoint import CHECKPOINT, load_checkpoint

BEST = "best.txt"
CONFIG = "config.json"
SUMMARY = "summary.json"
FAILED = "failed.txt"  # the error a search ended with; the next search in the folder may start over
# What a search leaves besides its checkpoint (config.json comes first, the others when it ends).
RESULT_FILES = (BEST, "population.parquet", "history.parquet", CONFIG, SUMMARY, FAILED)


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


@contextmanager
def hold_for_search(out: str | Path, resume: bool) -> Iterator[dict | None]:
    """Hold folder ``out`` for one search; yield the checkpoint to continue, or None to start from the start.

    Under the folder's lock (:func:`hwnas.atomic.folder_lock`; a second writer is
    refused in one line) temporary files of a writer killed mid-write are removed, and:

    - no progress (empty; or its checkpoint is the one written before the first
      iteration, as after a kill in the first second): start from the start,
      with or without ``resume``, replacing what is there;
    - a search that ended with an error (:func:`mark_failed`): ``resume``
      continues its checkpoint, a run without it starts from the start;
    - a search killed or finished: ``resume`` continues it; without it, refused,
      so nothing a search computed is lost.
    """
    out = Path(out)
    with folder_lock(out):
        for tmp in stale_temporaries(out, (CHECKPOINT, *RESULT_FILES)):
            tmp.unlink(missing_ok=True)
        state = load_checkpoint(out)
        results = [name for name in RESULT_FILES if name not in (CONFIG, FAILED) and (out / name).exists()]
        if state is None and results:
            raise HwnasError(f"{out} holds search results ({', '.join(results)}) but no {CHECKPOINT} to continue "
                             "from; expected an empty folder or a search's --out: choose another --out")
        failed = (out / FAILED).exists()
        if state is not None and state["iteration"] > 0 and not resume and not failed:
            done = "finished" if (out / SUMMARY).exists() else "unfinished"
            raise HwnasError(f"{out} already holds a search ({done}, checkpoint at iteration {state['iteration']}); "
                             "pass --resume to continue it or choose another --out")
        if state is None or state["iteration"] == 0 or not resume:
            # The checkpoint first and failed.txt last: a kill in between leaves a folder still taken over.
            for name in (CHECKPOINT, *RESULT_FILES):
                (out / name).unlink(missing_ok=True)
            state = None
        yield state


def mark_failed(out: str | Path, error: BaseException) -> None:
    """Record that the search in ``out`` ended with ``error``: the next search there may start over."""
    message = str(error).splitlines()[0] if str(error) else ""
    atomic_write(Path(out) / FAILED, lambda f: f.write(f"{type(error).__name__}: {message}\n"), binary=False)
