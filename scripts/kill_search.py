#!/usr/bin/env python3
"""kill -9 one `search` at seeded random moments, resume it each time, and compare with an uninterrupted run.

The search runs as the `search` console script (a real process with its worker
processes). Each session is killed with SIGKILL on its main process at a
random moment (the first within the first second of the process, the others
within 1/--window of the uninterrupted run's time after the session took the
folder's lock, i.e. after its imports and checks), then continued with `--resume`; after
--kills kills the last session runs to the end. The result is compared with
an uninterrupted run of the same command: history (without the time column),
population, best.txt, the summary's best structure and score, and the final
checkpoint's random state, population and score cache.

    python scripts/kill_search.py --kills 10 --seed 0 --workers 1 --window 5 --work /tmp/kill-search

Prints one JSON object: the kill moments, the checkpoint iteration each kill
left, and whether the result is identical.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

SEARCH = ["--space", "cifar32", "--proxy", "zen", "--batch-size", "2", "--params", "3e5", "--max-layers", "12",
          "--population", "8", "--iterations", "120", "--seed", "7", "--checkpoint-every", "1",
          "--no-progress"]


WORKERS = ["--workers", "1"]


def command(out: Path, resume: bool) -> list[str]:
    script = Path(sys.executable).with_name("search")
    return [str(script), *SEARCH, *WORKERS, "--out", str(out), *(["--resume"] if resume else [])]


def checkpoint(out: Path) -> dict | None:
    try:
        with open(out / "checkpoint.pkl", "rb") as f:
            return pickle.load(f)
    except FileNotFoundError:
        return None


def session(out: Path, resume: bool, kill_at: float | None, from_lock: bool = True) -> dict:
    """One run of the command; SIGKILL to its main process ``kill_at`` seconds after it took the folder's
    lock (``from_lock``, i.e. once its imports and checks are done), else after its start (None: no kill)."""
    start = time.monotonic()
    proc = subprocess.Popen(command(out, resume), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    locked = None
    while from_lock and proc.poll() is None:
        try:
            if (out / ".lock").read_text().strip() == str(proc.pid):
                locked = time.monotonic()
                break
        except OSError:
            pass
        time.sleep(0.005)
    try:
        proc.wait(timeout=None if kill_at is None else max(0.0, (locked or start) + kill_at - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    end = time.monotonic()
    orphans = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the worker processes notice their parent is gone
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        orphans = 1
        os.killpg(proc.pid, signal.SIGKILL)
    state = checkpoint(out)
    return {"kill_at_s": kill_at, "after": "lock" if locked else "start", "exit": proc.returncode,
            "seconds": round(end - start, 2), "seconds_after_lock": None if locked is None else round(end - locked, 2),
            "checkpoint_iteration": None if state is None else state["iteration"],
            "temporary_files": sorted(p.name for p in out.glob(".*.tmp")) if out.exists() else [],
            "workers_left_after_30s": orphans, "stderr": proc.stderr.read().decode()[-300:]}


def strip_times(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "time_s"} for row in history]


def identical(a: Path, b: Path) -> dict:
    import pandas as pd

    checks = {}
    for name in ("history.parquet", "population.parquet"):
        fa, fb = (pd.read_parquet(x / name).drop(columns=["time_s"], errors="ignore") for x in (a, b))
        checks[name] = bool(fa.equals(fb))
    checks["best.txt"] = (a / "best.txt").read_text() == (b / "best.txt").read_text()
    sa, sb = (json.loads((x / "summary.json").read_text()) for x in (a, b))
    checks["summary best and score"] = sa["best_structure"] == sb["best_structure"] and sa["score"] == sb["score"]
    ca, cb = checkpoint(a), checkpoint(b)
    checks["checkpoint rng, population, cache, history"] = (
        ca["rng"] == cb["rng"] and ca["population"] == cb["population"] and ca["cache"] == cb["cache"]
        and strip_times(ca["history"]) == strip_times(cb["history"]))
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/kill-search"))
    parser.add_argument("--workers", type=int, default=1, help="search --workers (K > 1: K processes spawned "
                        "after the lock, which under load can take most of a session)")
    parser.add_argument("--window", type=float, default=5.0, help="kill within 1/WINDOW of the uninterrupted "
                        "run's time after the lock")
    args = parser.parse_args()
    WORKERS[1] = str(args.workers)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    rng = random.Random(args.seed)

    ref = session(args.work / "ref", False, None)
    if ref["exit"] != 0:
        raise SystemExit(f"the uninterrupted run failed: {ref['stderr']}")
    out = args.work / "killed"
    sessions = []
    for k in range(args.kills):
        # the first in the first second of the process; the others within 1/window of the uninterrupted run's
        # time under the lock, so that each session gets on a little and the kills spread over the search
        at = rng.uniform(0.0, 1.0) if k == 0 else rng.uniform(0.0, ref["seconds_after_lock"] / args.window)
        sessions.append(session(out, resume=k > 0, kill_at=at, from_lock=k > 0))
        if sessions[-1]["exit"] != -signal.SIGKILL:
            break  # the session ended before its kill moment
    last = session(out, resume=True, kill_at=None)
    result = {"command": " ".join(command(out, True)[1:]), "reference_seconds": ref["seconds"],
              "reference_seconds_after_lock": ref["seconds_after_lock"],
              "kills": sum(1 for s in sessions if s["exit"] == -signal.SIGKILL), "sessions": sessions,
              "last_exit": last["exit"], "last_stderr": last["stderr"]}
    if last["exit"] == 0:
        result["checks"] = identical(args.work / "ref", out)
        result["identical"] = all(result["checks"].values())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
