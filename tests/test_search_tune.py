"""hwnas tune: regret against an independent brute force, outputs, resume, reproducibility, bad input, PostgreSQL."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from hwnas.cli.main import main
from hwnas.models.zoo import data_dir

PROFILE = "ort-cpu1-b1-nb201"
SMALL = ["--latency-ms", "1", "--profile", PROFILE, "--proxies", "params,flops", "--iterations", "8,16",
         "--population", "4,8", "--seeds", "2"]


def _accuracy() -> pd.Series:
    return pd.read_csv(data_dir().parent / "nasbench201" / "accuracy.csv").set_index("arch")["cifar10"]


def _latencies() -> pd.Series:
    """Every cell's predicted latency, from the predictor directly (not the tune module)."""
    from hwnas.latency.predictor import Predictor
    from hwnas.latency.profile import Profile
    from hwnas.models.spaces.base import get_space

    space = get_space("nb201")
    acc = _accuracy()
    pred = Predictor(Profile.for_space(space, PROFILE)).predict_many([space.parse(a) for a in acc.index])
    return pd.Series(pred, index=acc.index)


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_tune_regret_outputs_resume_and_search_config(tmp_path, capsys):
    out = tmp_path / "tune"
    code, stdout, _ = _cli(["tune", *SMALL, "--trials", "3", "--out", str(out), "--json"], capsys)
    assert code == 0
    summary = json.loads(stdout)
    assert summary["trials"] == {"complete": 3}
    # the reference: brute force over all 15,625 cells with the predictor and the packaged table
    acc, lat = _accuracy(), _latencies()
    feasible = acc[lat <= 1.0]
    assert summary["reference"]["best_accuracy"] == pytest.approx(feasible.max())
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and (trials["state"] == "COMPLETE").all()
    for run in summary["best"]["runs"]:
        assert run["regret"] == pytest.approx(feasible.max() - acc[run["arch"]])
        assert lat[run["arch"]] <= 1.0
    assert summary["best"]["regret"] == pytest.approx(sum(r["regret"] for r in summary["best"]["runs"]) / 2)
    assert summary["best"]["regret"] == pytest.approx(trials["regret"].min())
    for png in summary["plots"].values():
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "history" in summary["plots"]

    # resumed: the same study, one more trial
    code, stdout, _ = _cli(["tune", *SMALL, "--trials", "4", "--out", str(out), "--json"], capsys)
    assert code == 0 and json.loads(stdout)["trials"] == {"complete": 4}

    # other settings for the same study: refused in one line before any trial
    code, _, err = _cli(["tune", *SMALL[:-2], "--seeds", "3", "--trials", "5", "--out", str(out)], capsys)
    assert code == 2 and "seeds" in err and err.count("\n") == 1
    assert len(pd.read_csv(out / "trials.csv")) == 4

    # best.json drives a plain search to the same cell as the trial's first seed
    best = json.loads((out / "best.json").read_text())
    first = json.loads(stdout)["best"]["runs"][0]
    code, stdout, _ = _cli(["search", "--config", str(out / "best.json"), "--seed", str(first["seed"]),
                            "--no-progress", "--out", str(tmp_path / "s"), "--json"], capsys)
    assert code == 0 and json.loads(stdout)["best_structure"] == first["arch"]
    assert json.loads((tmp_path / "s" / "config.json").read_text())  # a real run folder
    assert best["space"] == "nb201" and best["latency_ms"] == 1.0


def test_default_proxies_include_meco_opt_and_set_relative_az_nas(tmp_path, capsys):
    from hwnas.cli.search_cmd import tune_command
    from hwnas.search.tune import DEFAULT_PROXIES

    default = next(p.default for p in tune_command.params if p.name == "proxies")
    assert tuple(default.split(",")) == DEFAULT_PROXIES and {"meco_opt", "az_nas"} <= set(DEFAULT_PROXIES)
    # a trial with the set-relative az_nas runs real searches, ranking within the population
    out = tmp_path / "tune"
    code, stdout, err = _cli(["tune", "--latency-ms", "1", "--profile", PROFILE, "--proxies", "az_nas", "--trials", "1",
                              "--seeds", "1", "--population", "3,3", "--iterations", "8,8", "--batch-sizes", "2",
                              "--out", str(out), "--json"], capsys)
    assert code == 0, err
    run = json.loads(stdout)["best"]["runs"][0]
    acc, lat = _accuracy(), _latencies()
    assert run["regret"] == pytest.approx(acc[lat <= 1.0].max() - acc[run["arch"]]) and lat[run["arch"]] <= 1.0
    searched = json.loads(next((out / "trials").rglob("summary.json")).read_text())
    assert searched["set_relative"] is True and searched["best_structure"] == run["arch"]


def test_one_worker_with_a_seed_is_reproducible(tmp_path, capsys):
    runs = []
    for name in ("a", "b"):
        code, stdout, _ = _cli(["tune", *SMALL, "--trials", "3", "--seed", "5", "--out", str(tmp_path / name)],
                               capsys)
        assert code == 0
        frame = pd.read_csv(tmp_path / name / "trials.csv")
        runs.append(frame[[c for c in frame.columns if c.startswith(("params_", "regret"))]])
    pd.testing.assert_frame_equal(*runs)


def test_multi_objective_uses_nsga2_and_draws_the_pareto_front(tmp_path, capsys):
    code, stdout, _ = _cli(["tune", *SMALL, "--trials", "3", "--objective", "regret,cost", "--out",
                            str(tmp_path), "--json"], capsys)
    assert code == 0
    summary = json.loads(stdout)
    assert summary["sampler"] == "nsga2" and summary["objectives"] == ["regret", "cost"]
    assert Path(summary["plots"]["pareto"]).is_file()
    import optuna

    study = optuna.load_study(study_name="hwnas-tune", storage=f"sqlite:///{tmp_path / 'tune.db'}")
    assert type(study.sampler).__name__ == "RandomSampler" or len(study.directions) == 2
    for t in study.trials:  # the cost is the mean number of proxy evaluations over the seeds
        runs = t.user_attrs["runs"]
        assert t.values[1] == pytest.approx(sum(r["evaluations"] for r in runs) / len(runs))


KILLED = """
import sys
from hwnas.search.tune import TuneConfig, tune
tune(TuneConfig(latency_ms=1.0, profile=sys.argv[2], trials=1, seeds=1, proxies=("params",), population=(8, 8),
                iterations=(4000, 4000), heartbeat_s=1), sys.argv[1])
"""


def _heartbeats(db) -> int:
    """Heartbeats recorded in an Optuna RDB storage (0 before its schema exists)."""
    import sqlite3

    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM trial_heartbeats").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_a_killed_trial_is_marked_failed_and_not_counted(tmp_path):
    import signal
    import time

    import optuna

    out = tmp_path / "t"
    worker = subprocess.Popen([sys.executable, "-c", KILLED, str(out), PROFILE], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (list((out / "trials").glob("*/seed-0/config.json"))
                                                   and _heartbeats(out / "tune.db")):
            assert worker.poll() is None, worker.stderr.read()[-2000:]
            time.sleep(0.02)
        # the trial's search has started (it writes config.json first) and its first heartbeat is recorded (a
        # trial killed before that has none, and Optuna never fails it): kill the worker without any chance to
        # clean up (at once: a search of this cheap proxy may end within a second)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    from hwnas.search.tune_storage import open_storage

    study = optuna.load_study(study_name="hwnas-tune", storage=open_storage(f"sqlite:///{out / 'tune.db'}", 1))
    assert [t.state.name for t in study.trials] == ["RUNNING"]
    # Wait until the trial is past the grace period (3 heartbeats of 1 s; SQLite stamps heartbeats to the second),
    # as the storage judges it (polled, not a fixed sleep: a loaded machine made a 3.5 s sleep flaky); the next
    # worker must then mark it FAILED.
    deadline = time.monotonic() + 30
    while not study._storage._get_stale_trial_ids(study._study_id) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert [t.state.name for t in study.trials] == ["RUNNING"]
    from hwnas.search.tune import TuneConfig, tune

    summary = tune(TuneConfig(latency_ms=1.0, profile=PROFILE, trials=1, seeds=1, proxies=("params",),
                              population=(8, 8), iterations=(4000, 4000), heartbeat_s=1), out)
    assert summary["trials"] == {"complete": 1, "fail": 1}
    assert summary["best"]["trial"] == 1


BAD = [
    (["--storage", "postgresql://nobody@127.0.0.1:1/x"], "--storage"),
    (["--storage", "sqlite:///{tmp}/missing/dir/x.db"], "does not exist"),
    (["--storage", "garbage://x"], "unsupported URL"),
    (["--storage", ""], "empty"),
    (["--storage", "sqlite:///"], "in-memory"),
    (["--sampler", "annealing"], "unknown sampler"),
    (["--fix", "temperature=3"], "unknown tuned parameter"),
    (["--proxies", "zen,nope"], "unknown proxy"),
    (["--latency-ms", "0.01"], "no NAS-Bench-201 cell meets"),
    (["--space", "imagenet224"], "trained accuracy"),
    (["--objective", "accuracy"], "unknown objective"),
    (["--objective", "regret,cost", "--sampler", "tpe"], "multi-objective"),
    (["--dataset", "mnist"], "no NAS-Bench-201 accuracy"),
    (["--trials", "0"], "--trials"),
    (["--latency-ms", "nan"], "--latency-ms"),
    (["--population", "8"], "LOW,HIGH"),
    (["--batch-sizes", "x"], "--batch-sizes"),
    (["--fix", "proxy"], "NAME=VALUE"),
    (["--profile", "no-such-profile"], "no-such-profile"),
    (["--out", "/proc/x"], "--out"),
    (["--out", ""], "--out is empty"),
    (["--study", ""], "--study"),
    (["--fix", "population=abc"], "--fix population"),
    (["--fix", "proxy=snip"], "--fix proxy"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line_exit_2_before_any_trial(tmp_path, capsys, extra, message):
    if "postgresql" in " ".join(extra):
        pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install 'hwnas[postgres]')")
    out = tmp_path / "o"
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    code, _, err = _cli(["tune", "--latency-ms", "1", "--trials", "1", "--out", str(out), *extra], capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (out / "trials").exists() and not (out / "trials.csv").exists()


def test_search_config_refuses_unknown_options(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"proxy": "params", "wings": 2}))
    code, _, err = _cli(["search", "--config", str(cfg), "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and "wings" in err and err.count("\n") == 1


def test_score_cache_gives_the_uncached_scores_and_hybrid_components_are_shared(tmp_path):
    from hwnas.models.spaces.base import get_space
    from hwnas.search import score_cache
    from hwnas.search.proxies import get_proxy

    space = get_space("nb201")
    cells = [space.parse(a) for a in _accuracy().index[:4]]
    plain = [get_proxy("synflow", batch_size=2, seed=3).score(space, c).value for c in cells]
    cache = score_cache.ScoreCache(tmp_path / "c.db")
    with score_cache.use(cache):
        first = [get_proxy("synflow", batch_size=2, seed=3).score(space, c).value for c in cells]
        misses = cache.misses
        hybrid = [get_proxy("synflow+2*log(params)", batch_size=2, seed=3).score(space, c).value for c in cells]
    assert first == plain and misses == 4
    assert cache.misses == 8 and cache.hits == 4  # synflow came from the cache, params was computed
    import math

    from hwnas.models.spaces.nb201 import count_cell

    for c, s, h in zip(cells, plain, hybrid):
        assert h == pytest.approx(s + 2 * math.log(count_cell(c, 32, 10).params))


# ---------------------------------------------------------------------------- PostgreSQL, two workers


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@pytest.fixture
def postgres_url():
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install 'hwnas[postgres]')")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl); .ci/run installs them as root")
    base = Path(tempfile.mkdtemp(prefix="hwnas-pg."))
    base.chmod(0o777)
    prefix = []
    if os.geteuid() == 0:  # the server refuses to run as root
        user = next((u for u in ("postgres", "nobody") if shutil.which("runuser") and _uid(u) is not None), None)
        if user is None:
            pytest.skip("running as root and no unprivileged user (postgres, nobody) to run the server as")
        prefix = ["runuser", "-u", user, "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base / "data"
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-U", "hwnas", "--auth=trust"], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                        f"-c listen_addresses=127.0.0.1 -p {port} -k {base}", "start"], check=True,
                       capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {err}")
    try:
        yield f"postgresql://hwnas@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _uid(user: str) -> int | None:
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study(tmp_path, postgres_url):
    command = [sys.executable, "-c", "from hwnas.cli.main import main; main()", "tune", *SMALL, "--trials", "4",
               "--storage", postgres_url, "--study", "shared", "--json"]
    workers = [subprocess.Popen([*command, "--out", str(tmp_path / f"w{i}")], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [w.communicate(timeout=600) for w in workers]
    for w, (out, err) in zip(workers, results):
        assert w.returncode == 0, err[-2000:]
    import optuna

    study = optuna.load_study(study_name="shared", storage=postgres_url.replace("postgresql://",
                                                                                "postgresql+psycopg2://"))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 4 <= len(complete) <= 5  # each worker stops once 4 are complete (one may have been running)
    assert {json.loads(out)["study"] for out, _ in results} == {"shared"}
