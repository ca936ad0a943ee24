"""Budget sweeps: one search per (proxy, latency budget, seed), resumable, summarised in ``sweep.csv``.

A sweep folder holds ``sweep.json`` (the shared search settings, the proxies,
budgets and seeds), one search ``--out`` folder per combination
(``<proxy label>/<budget>ms/seed<seed>``) and ``sweep.csv``. Running the same
sweep again skips every finished search, resumes a started one through the
search's own checkpoint, and may add budgets, seeds or proxies; changing a
shared setting (space, profile, population, iterations ...) is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from hwnas.errors import HwnasError
from hwnas.search.checkpoint import CHECKPOINT, write_json
from hwnas.search.evolution import SearchConfig, prepare, search
from hwnas.search.runs import SUMMARY, is_run, read_json

SWEEP = "sweep.json"
SWEEP_CSV = "sweep.csv"
SWEEP_VERSION = 1
NB201_DATASETS = ("cifar10", "cifar100", "imagenet16")
# The settings every search of one sweep shares; the rest (proxy, budget, seed) vary.
SHARED = ("space", "profile", "population", "iterations", "batch_size", "repeat", "proxy_options", "workers",
          "initial", "early_batch", "early_margin", "flops", "params", "max_layers", "rho_max")
# Called with (iterations done over the whole sweep, total iterations of the sweep, statistics or None).
SweepProgress = Callable[[int, int, "dict | None"], None]


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep runs: every combination of ``proxies`` x ``budgets_ms`` x ``seeds`` with ``base``'s settings."""

    proxies: tuple[str, ...]
    budgets_ms: tuple[float, ...]
    seeds: tuple[int, ...]
    base: SearchConfig

    def shared(self) -> dict:
        c = asdict(self.base)
        b = c.pop("budgets")
        c.update({k: b[k] for k in ("flops", "params", "max_layers", "rho_max")})
        return {k: c[k] for k in SHARED}


def proxy_label(proxy: str) -> str:
    """A folder name for a proxy: its name, or ``expr-<8 hex>`` for an expression."""
    if re.fullmatch(r"[A-Za-z0-9_]+", proxy):
        return proxy
    return "expr-" + hashlib.sha1(proxy.encode()).hexdigest()[:8]


def split_proxies(text: str) -> list[str]:
    """``zen,naswot+log(synflow)`` -> its proxies: commas split only outside parentheses."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    if any(not p for p in parts):
        raise HwnasError(f"--proxy {text!r}: an empty proxy; expected names or expressions separated by commas")
    return parts


def proxies_for(text: str | None, space: str) -> list[str]:
    """The proxies of ``--proxy TEXT``; without it, the space's own (``default_proxy``: the search's default)."""
    if text is None:
        from hwnas.models.spaces.base import get_space

        return [get_space(space).default_proxy]
    return split_proxies(text)


def run_folder(out: Path, proxy: str, budget_ms: float, seed: int) -> Path:
    return Path(out) / proxy_label(proxy) / f"{budget_ms:g}ms" / f"seed{seed}"


def _config(spec: SweepSpec, proxy: str, budget_ms: float, seed: int) -> SearchConfig:
    return replace(spec.base, proxy=proxy, seed=seed, budgets=replace(spec.base.budgets, latency_ms=budget_ms))


def check(spec: SweepSpec, out: str | Path) -> None:
    """Every input of the sweep, before any search runs: the folder, each proxy and each budget.

    HwnasError (one line) for a folder that is not a sweep or one of other
    shared settings, an unknown proxy, or a budget no network of the space meets.
    """
    out = Path(out)
    if not spec.proxies or not spec.budgets_ms or not spec.seeds:
        raise HwnasError("a sweep needs at least one proxy, one --latency-ms budget and one seed")
    for b in spec.budgets_ms:
        if not (math.isfinite(b) and b > 0):
            raise HwnasError(f"--latency-ms {b!r}: expected positive budgets in ms")
    if len(set(spec.budgets_ms)) != len(spec.budgets_ms) or len(set(spec.seeds)) != len(spec.seeds):
        raise HwnasError("--latency-ms and --seeds must not repeat a value")
    if out.exists() and not out.is_dir():
        raise HwnasError(f"--out {out}: a file; expected a sweep folder (new, empty, or holding {SWEEP})")
    if out.is_dir():
        if (out / SWEEP).is_file():
            stored = read_json(out / SWEEP).get("shared")
            mine = json.loads(json.dumps(spec.shared()))
            if stored != mine:
                changed = sorted(k for k in set(mine) | set(stored or {}) if (stored or {}).get(k) != mine.get(k))
                raise HwnasError(f"--out {out}: a sweep with other settings ({', '.join(changed)}); expected the "
                                 "same search settings (only budgets, seeds and proxies may be added) or a new --out")
        elif any(out.iterdir()):
            raise HwnasError(f"--out {out}: not a sweep folder (no {SWEEP}) and not empty; expected a new or empty "
                             "folder, or one written by hwnas sweep")
    for proxy in spec.proxies:
        # the smallest budget is the strictest: if it passes, every larger one does too
        prepare(_config(spec, proxy, min(spec.budgets_ms), spec.seeds[0]))


def _accuracies(space: str, structure: str) -> dict:
    if not space.startswith("nb201"):
        return {}
    from hwnas.models.spaces.nb201 import accuracy_table

    table = accuracy_table().set_index("arch")
    if structure not in table.index:
        return {}
    return {f"accuracy_{d}": float(table.at[structure, d]) for d in NB201_DATASETS if d in table.columns}


def row(spec_space: str, proxy: str, budget_ms: float, seed: int, folder: Path, out: Path) -> dict:
    """One line of sweep.csv from a finished search's summary."""
    s = read_json(folder / SUMMARY)
    return {"proxy": proxy, "budget_ms": budget_ms, "seed": seed, "best_structure": s["best_structure"],
            "predicted_latency_ms": s.get("latency_ms"), "measured_latency_ms": s.get("measured_ms"),
            "flops": s.get("flops"), "params": s.get("params"), "score": s.get("score"),
            **_accuracies(spec_space, s["best_structure"]), "run": str(folder.relative_to(out))}


def _write_csv(out: Path, rows: list[dict]) -> Path:
    import pandas as pd

    from hwnas.atomic import atomic_write

    path = out / SWEEP_CSV
    frame = pd.DataFrame(rows).sort_values(["proxy", "budget_ms", "seed"], kind="stable")
    atomic_write(path, lambda f: frame.to_csv(f, index=False), binary=False)
    return path


def sweep(spec: SweepSpec, out: str | Path, *, progress: SweepProgress | None = None,
          measure: Callable[[Path], None] | None = None) -> dict:
    """Run every search of the sweep not yet finished (resuming a started one); write sweep.csv.

    ``measure`` (optional) is called with each finished search's folder that has
    no measurement yet (e.g. :func:`hwnas.search.results.measure_best`).
    """
    out = Path(out)
    check(spec, out)
    out.mkdir(parents=True, exist_ok=True)
    record = read_json(out / SWEEP) if (out / SWEEP).is_file() else {"version": SWEEP_VERSION, "proxies": [],
                                                                      "budgets_ms": [], "seeds": []}
    record["shared"] = json.loads(json.dumps(spec.shared()))
    for key, values in (("proxies", spec.proxies), ("budgets_ms", spec.budgets_ms), ("seeds", spec.seeds)):
        record[key] = list(record[key]) + [v for v in values if v not in record[key]]
    record["labels"] = {proxy_label(p): p for p in record["proxies"]}
    write_json(out / SWEEP, record)

    jobs = [(p, b, s) for p in spec.proxies for b in sorted(spec.budgets_ms) for s in spec.seeds]
    per = spec.base.iterations
    total = per * len(jobs)
    skipped = sum(1 for p, b, s in jobs if is_run(run_folder(out, p, b, s)))
    done = per * skipped
    if progress:
        progress(done, total, None)
    ran = resumed = 0
    for p, b, s in jobs:
        folder = run_folder(out, p, b, s)
        if is_run(folder):
            continue
        resume = (folder / CHECKPOINT).is_file()  # killed: the search resumes it (a folder without progress
        # starts from the start, see hwnas.search.runs.hold_for_search)

        def inner(i: int, _total: int, stats: dict | None = None, _base=done, _label=f"{proxy_label(p)} {b:g}ms "
                  f"s{s}") -> None:
            if progress:
                progress(_base + i, total, {"run": _label, **(stats or {})} if stats else None)

        search(_config(spec, p, b, s), folder, resume=True, progress=inner)
        ran += 1
        resumed += resume
        done += per
    rows = []  # every finished search of the sweep, this run's and earlier runs'
    for p, b, s in ((p, b, s) for p in record["proxies"] for b in sorted(record["budgets_ms"])
                    for s in record["seeds"]):
        folder = run_folder(out, p, b, s)
        if not is_run(folder):
            continue
        if measure is not None and "measured_ms" not in read_json(folder / SUMMARY):
            measure(folder)
        rows.append(row(spec.base.space, p, b, s, folder, out))
    csv = _write_csv(out, rows)
    return {"out": str(out), "csv": str(csv), "searches": len(jobs), "ran": ran, "resumed": resumed,
            "skipped": skipped, "rows": rows}


def read_sweep(folder: str | Path) -> tuple[dict, "object"]:
    """(sweep.json, sweep.csv as a DataFrame) of a finished sweep; HwnasError when ``folder`` is not one."""
    import pandas as pd

    folder = Path(folder)
    if not (folder / SWEEP).is_file() or not (folder / SWEEP_CSV).is_file():
        raise HwnasError(f"{folder}: no {SWEEP} and {SWEEP_CSV}; expected the --out folder of a finished hwnas sweep")
    try:
        frame = pd.read_csv(folder / SWEEP_CSV)
    except (OSError, ValueError) as err:
        raise HwnasError(f"{folder / SWEEP_CSV}: cannot read it ({err}); expected a file written by hwnas sweep") \
            from None
    return read_json(folder / SWEEP), frame

