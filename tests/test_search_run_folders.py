"""Search run folders: one writer per folder, a checkpoint from the first second, and a search killed
with SIGKILL at seeded points (before the first checkpoint, in the middle of a checkpoint write, between
checkpoints) that resumes to exactly the uninterrupted run."""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import random
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hwnas.atomic import folder_lock
from hwnas.errors import HwnasError
from hwnas.search.budgets import Budgets
from hwnas.search.evolution import SearchConfig, search

# A cheap search with a real population: the params proxy needs no forward pass.
SETTINGS = dict(space="cifar32", proxy="params", population=6, iterations=60, seed=11, checkpoint_every_s=0.0)
BUDGETS = dict(params=3e5, max_layers=12)
EVERY = 5  # the kill driver keeps every 5th checkpoint, so that a resume repeats up to 4 iterations


def _config(**changes) -> SearchConfig:
    return SearchConfig(**{**SETTINGS, "budgets": Budgets(**BUDGETS), **changes})


def _checkpoint(out: Path) -> dict:
    with open(out / "checkpoint.pkl", "rb") as f:
        return pickle.load(f)


def _without_times(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "time_s"} for row in history]


# Runs one search in a fresh interpreter and kills it with SIGKILL at a chosen point:
#   before-save N      as the N-th checkpoint of this process is about to be written
#   in-save N          half-way through writing the N-th checkpoint (its temporary file holds half the bytes)
#   after-iteration I  once iteration I is done, before its checkpoint
DRIVER = r"""
import io, json, os, signal, sys
from pathlib import Path

import hwnas.search.checkpoint as checkpoint
import hwnas.search.evolution as evolution
from hwnas.search.budgets import Budgets

kill, at, out, resume, every, settings, budgets = sys.argv[1:]
at, every, settings = int(at), int(every), json.loads(settings)
config = evolution.SearchConfig(**settings, budgets=Budgets(**json.loads(budgets)))
saves = 0


def die():
    os.kill(os.getpid(), signal.SIGKILL)


real_save = evolution.save_checkpoint


def save(folder, state):
    global saves
    if state["iteration"] % every and state["iteration"] < config.iterations:
        return
    saves += 1
    if kill == "before-save" and saves == at:
        die()
    real_save(folder, state)


real_write = checkpoint.atomic_write


def write(path, fill, binary=True):
    if kill == "in-save" and saves == at and Path(path).name == checkpoint.CHECKPOINT:
        def half(f):
            whole = io.BytesIO()
            fill(whole)
            f.write(whole.getvalue()[: len(whole.getvalue()) // 2])
            f.flush()
            os.fsync(f.fileno())
            die()
        return real_write(path, half, binary)
    return real_write(path, fill, binary)


def progress(done, total, statistics):
    if kill == "after-iteration" and done == at:
        die()


evolution.save_checkpoint = save
checkpoint.atomic_write = write
evolution.search(config, out, resume=resume == "resume", progress=progress)
"""


def _killed(out: Path, kill: str, at: int, resume: bool) -> None:
    args = [sys.executable, "-c", DRIVER, kill, str(at), str(out), "resume" if resume else "new", str(EVERY),
            json.dumps(SETTINGS), json.dumps(BUDGETS)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, f"{kill} {at}: exit {proc.returncode}, not killed\n{proc.stderr}"


def _temporaries(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob(".checkpoint.pkl.*.tmp"))


def test_kill9_at_seeded_points_resumes_to_the_uninterrupted_run(tmp_path):
    total = SETTINGS["iterations"]
    search(_config(), tmp_path / "ref")
    out = tmp_path / "killed"
    rng = random.Random(2026)

    # Killed before the first checkpoint: nothing to resume, and --resume starts from the start.
    _killed(out, "before-save", 1, resume=False)
    assert not (out / "checkpoint.pkl").exists()
    # Killed while writing the first checkpoint: half a temporary file, no checkpoint; a plain run takes it.
    _killed(out, "in-save", 1, resume=True)
    assert not (out / "checkpoint.pkl").exists() and len(_temporaries(out)) == 1

    # Killed between checkpoints: the checkpoint is the last multiple of EVERY before the kill.
    stop = rng.randint(EVERY + 1, total // 2)
    _killed(out, "after-iteration", stop, resume=False)
    assert _temporaries(out) == []  # the killed writer's temporary file was cleared under the lock
    reached = _checkpoint(out)["iteration"]
    assert reached == (stop - 1) // EVERY * EVERY

    # Killed in the middle of a later checkpoint write: the previous checkpoint is intact.
    nth = rng.randint(2, 3)
    _killed(out, "in-save", nth, resume=True)
    assert _checkpoint(out)["iteration"] == reached + (nth - 1) * EVERY and len(_temporaries(out)) == 1
    reached = _checkpoint(out)["iteration"]

    stop = rng.randint(reached + 2, total - 1)
    _killed(out, "after-iteration", stop, resume=True)
    assert reached < _checkpoint(out)["iteration"] < stop

    summary = search(_config(), out, resume=True)
    ref_summary = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert summary["best_structure"] == ref_summary["best_structure"] and summary["score"] == ref_summary["score"]
    assert (out / "best.txt").read_text() == (tmp_path / "ref" / "best.txt").read_text()
    for name in ("population.parquet", "history.parquet"):
        a, b = (pd.read_parquet(folder / name) for folder in (tmp_path / "ref", out))
        pd.testing.assert_frame_equal(a.drop(columns=["time_s"], errors="ignore"),
                                      b.drop(columns=["time_s"], errors="ignore"))
    a, b = _checkpoint(tmp_path / "ref"), _checkpoint(out)
    assert a["iteration"] == b["iteration"] == total
    assert a["rng"] == b["rng"]  # the search's random state ends where the uninterrupted run's does
    assert a["population"] == b["population"] and a["cache"] == b["cache"]
    assert _without_times(a["history"]) == _without_times(b["history"])


def test_a_second_writer_is_refused_before_any_work(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "w") as held:  # another process's lock, taken without hwnas
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        with pytest.raises(HwnasError, match="being written by process 4242; expected one writer per folder"):
            search(_config(iterations=5), out)
        proc = subprocess.run([sys.executable, "-c", "from hwnas.cli.main import search_main; search_main()",
                               "--space", "cifar32", "--proxy", "params", "--iterations", "5", "--population", "4",
                               "--params", "3e5", "--out", str(out), "--no-progress"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "being written by" in proc.stderr and "Traceback" not in proc.stderr
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written
    search(_config(iterations=5), out)  # released: the folder is free
    assert (out / "best.txt").is_file()


def test_the_lock_is_held_for_the_whole_run(tmp_path):
    out = tmp_path / "run"
    seen = []

    def progress(done, total, statistics):
        if done == 3 and not seen:
            with open(out / ".lock") as other:  # a second open file: flock conflicts with it
                with pytest.raises(BlockingIOError):
                    fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert (out / ".lock").read_text().strip() == str(os.getpid())
            seen.append(done)

    search(_config(iterations=6), out, progress=progress)
    assert seen == [3]
    with open(out / ".lock") as other:  # released at the end
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_measuring_the_best_is_refused_while_another_process_holds_the_folder(tmp_path):
    from hwnas.search.results import measure_best

    out = tmp_path / "run"
    search(_config(iterations=3), out)
    before = (out / "summary.json").read_bytes()
    with open(out / ".lock", "w") as held:  # e.g. a `search --resume` into the folder
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        with pytest.raises(HwnasError, match="being written by process 4242"):
            measure_best(out)
    assert (out / "summary.json").read_bytes() == before


def test_an_unwritable_folder_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HwnasError, match="--out .*cannot write there"):
        with folder_lock(blocker / "run"):
            pass


def test_the_first_checkpoint_comes_before_any_evaluation(tmp_path, monkeypatch):
    from hwnas.search.evolution import Evolution

    out = tmp_path / "run"
    original = Evolution._step
    states = []

    def step(self):  # one iteration: propose a child, check its budgets, score it
        if not states:
            states.append(_checkpoint(out))
        original(self)

    monkeypatch.setattr(Evolution, "_step", step)
    search(_config(iterations=3, checkpoint_every_s=1e9), out)
    first = states[0]
    assert first["iteration"] == 0 and first["history"] == [] and first["population"] == [] == first["queue"]
    assert first["rng"] == random.Random(SETTINGS["seed"]).getstate()  # the seed's untouched state
    expected = {**_config(iterations=3).identity(), "initial": first["config"]["initial"]}  # prepare fills it in
    assert first["config"] == expected and first["config"]["seed"] == SETTINGS["seed"]
    assert first["config"]["initial"] == json.loads((out / "config.json").read_text())["initial"]


def test_a_folder_with_progress_needs_resume_and_a_failed_run_is_taken_over(tmp_path):
    out = tmp_path / "run"
    search(_config(iterations=8), out)
    with pytest.raises(HwnasError, match="already holds a search .finished, checkpoint at iteration 8.; pass --resume"):
        search(_config(iterations=8), out)
    with pytest.raises(HwnasError, match="settings differ .* in budgets"):
        search(_config(iterations=8, budgets=Budgets(params=2e5)), out, resume=True)
    assert _checkpoint(out)["iteration"] == 8 and not (out / "failed.txt").exists()  # a refusal changes nothing

    # A run that fails (here: no candidate can meet the budgets it ends with) is marked failed ...
    failing = tmp_path / "failing"
    with pytest.raises(HwnasError, match="no candidate met the budgets in 0 iterations"):
        search(_config(iterations=0), failing)
    assert (failing / "failed.txt").read_text().startswith("BudgetError: no candidate")
    # ... and the next run takes the folder over, from the start, with other settings.
    search(_config(iterations=8), failing)
    assert not (failing / "failed.txt").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "population.parquet"),
                                  pd.read_parquet(failing / "population.parquet"))


def test_a_failed_run_with_progress_can_still_be_resumed(tmp_path, monkeypatch):
    from hwnas.search import evolution

    out = tmp_path / "run"
    original = evolution.Evolution._step

    def failing_step(self):
        if self.iteration == 7:
            raise RuntimeError("disk on fire")
        original(self)

    monkeypatch.setattr(evolution.Evolution, "_step", failing_step)
    with pytest.raises(RuntimeError):
        search(_config(iterations=12), out)
    assert (out / "failed.txt").read_text() == "RuntimeError: disk on fire\n" and _checkpoint(out)["iteration"] == 7
    monkeypatch.undo()
    search(_config(iterations=12), out, resume=True)
    search(_config(iterations=12), tmp_path / "ref")
    pd.testing.assert_frame_equal(pd.read_parquet(out / "population.parquet"),
                                  pd.read_parquet(tmp_path / "ref" / "population.parquet"))
    assert not (out / "failed.txt").exists()


def test_results_without_a_checkpoint_are_never_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.txt").write_text("something\n")
    for resume in (False, True):
        with pytest.raises(HwnasError, match="holds search results .best.txt. but no checkpoint.pkl"):
            search(_config(iterations=3), out, resume=resume)
    assert (out / "best.txt").read_text() == "something\n"
