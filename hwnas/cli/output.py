"""Printing results: JSON for machines, aligned tables for people, progress bars on stderr."""

from __future__ import annotations

import json
import math
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence

import click


def _plain(value: Any) -> Any:
    """Make numpy scalars, paths and non-finite floats JSON-safe."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(_plain(data), indent=2))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e7:
            return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
        return f"{value:.3e}"
    return str(value)


def echo_table(rows: Iterable[dict], columns: Sequence[str]) -> None:
    """Print dict rows as a left/right aligned text table."""
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in cells:
        click.echo("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths)))


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@contextmanager
def progress_bar(desc: str, unit: str, enabled: bool = True) -> Iterator[Callable | None]:
    """A progress callback ``(done, total, statistics=None)`` that draws a tqdm bar on stderr (None when not
    ``enabled``); the bar opens at the first call and closes on leaving the block."""
    if not enabled:
        yield None
        return
    bar = None

    def update(done: int, total: int, statistics: dict | None = None) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=done, unit=unit, dynamic_ncols=True, desc=desc, file=sys.stderr)
        else:
            bar.update(done - bar.n)
        if statistics:
            bar.set_postfix(statistics, refresh=False)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()
