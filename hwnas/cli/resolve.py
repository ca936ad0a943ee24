"""One reading of an architecture argument, for every command that takes one.

The argument is a structure or NAS-Bench-201 cell string, a file whose first
line is one, a search run folder (its best structure, in the space it was
searched), or a ZenNet zoo model name (or an unambiguous part of one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Hashable

from hwnas.errors import HwnasError
from hwnas.models import zoo
from hwnas.models.spaces.base import Space, get_space
from hwnas.models.structure import read_first_line
from hwnas.search.runs import SearchRun, is_run, read_run

# Longer arguments are never file names (Linux's PATH_MAX is 4096): they are read as text only.
MAX_PATH_CHARS = 4096
EXAMPLE = "zennet_imagenet1k_latency08ms_res224 or 'SuperConvK3BNRELU(3,8,1,1)SuperConvK1BNRELU(8,64,1,1)'"


@dataclass(frozen=True)
class Resolved:
    """An architecture and the space it is read in, with where it came from."""

    space: Space
    arch: Hashable
    source: str  # "string", "file", "run" or "zoo"
    model: zoo.ZooModel | None = None
    run: SearchRun | None = None


def _looks_like_arch(text: str) -> bool:
    return "(" in text or text.lstrip().startswith("|")


def _default_space(text: str) -> str:
    return "nb201" if text.lstrip().startswith("|") else "imagenet224"


def _names_zoo_model(value: str) -> bool:
    return any(value in name for name in zoo.models())


def _existing_path(value: str) -> Path | None:
    """``value`` as a path that exists, or None (an over-long or unusable name is no path)."""
    if len(value) > MAX_PATH_CHARS or "\0" in value:
        return None
    path = Path(value)
    try:
        return path if path.exists() else None
    except OSError:
        return None


def resolve_arch(value: str, *, space: str | None = None, resolution: int | None = None,
                 num_classes: int | None = None) -> Resolved:
    """The architecture ``value`` names, parsed in its space (see the module docstring).

    The space is ``space`` if given, else the run's, the zoo model's
    (``cifar32`` / ``imagenet224``), else ``nb201`` for a ``|...|`` cell and
    ``imagenet224`` otherwise; a run or zoo model also brings its resolution
    and class count. Explicit ``resolution`` / ``num_classes`` override them.
    """
    if _looks_like_arch(value):
        return resolve_text(value, space=space, resolution=resolution, num_classes=num_classes)
    path = _existing_path(value)
    if path is not None and not path.is_dir():
        return resolve_text(read_first_line(path), source="file", space=space, resolution=resolution,
                            num_classes=num_classes)
    model = run = None
    if path is not None and (is_run(path) or not _names_zoo_model(value)):
        run = read_run(path)  # a folder that is no run is an error, unless the name is a zoo model's
        if space is not None and space != run.space:
            raise HwnasError(f"--space {space} contradicts the search run's space {run.space!r} in {value}")
        source, text, default = "run", run.structure, run.space
        inputs = {"resolution": run.resolution, "num_classes": run.num_classes}
    else:
        if not _names_zoo_model(value):
            raise HwnasError(f"{value[:80]!r} is not a zoo model name, an architecture string, a file or a search "
                             f"run folder; expected e.g. {EXAMPLE}")
        model = zoo.get(value)
        source, text = "zoo", str(model.structure)
        default = "cifar32" if model.resolution == 32 else "imagenet224"
        inputs = {"resolution": model.resolution, "num_classes": model.num_classes}
    sp = get_space(space or default)
    sp = sp.with_input(resolution=resolution or inputs.get("resolution"),
                       num_classes=num_classes or inputs.get("num_classes"))
    return Resolved(sp, sp.parse(text), source, model, run)


def resolve_text(text: str, *, source: str = "string", space: str | None = None, resolution: int | None = None,
                 num_classes: int | None = None) -> Resolved:
    """An architecture given as text (never a name or a path), e.g. ``--nb201 CELL`` or a file's line."""
    sp = get_space(space or _default_space(text)).with_input(resolution=resolution, num_classes=num_classes)
    return Resolved(sp, sp.parse(text), source)

