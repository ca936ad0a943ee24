"""--ray: candidate scoring as tasks on a Ray cluster gives the same result as local workers.

The test starts its own Ray instance bound to the loopback address only: with
Ray 2.60 the head's servers listen on every interface unless
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is set (checked here with ``ss``), so the
test runs in a subprocess with that variable set.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="Ray is not installed (pip install 'hwnas[ray]')")

SCRIPT = textwrap.dedent("""
    import json, shutil, subprocess, sys
    import pandas as pd
    import ray
    from hwnas.search.budgets import Budgets
    from hwnas.search.evolution import SearchConfig, search

    out = sys.argv[1]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    listening = ""
    if shutil.which("ss"):
        listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
    ray_lines = [l for l in listening.splitlines() if any(n in l for n in ("raylet", "gcs_server", "ray::"))]
    cfg = SearchConfig(space="cifar32", proxy="zen", batch_size=2, population=4, iterations=16, seed=7,
                       workers=2, budgets=Budgets(params=3e5, max_layers=12))
    search(cfg, out + "/ray", ray_address="auto")
    ray.shutdown()
    search(cfg, out + "/local")
    print(json.dumps({"ray_listeners": ray_lines}))
""")


@pytest.mark.slow
def test_ray_scoring_matches_local_workers_and_binds_loopback(tmp_path):
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0")
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    for line in report["ray_listeners"]:
        local = line.split()[3]
        assert local.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")), line

    import pandas as pd

    for name in ("history.parquet", "population.parquet"):
        a = pd.read_parquet(tmp_path / "ray" / name).drop(columns=["time_s"], errors="ignore")
        b = pd.read_parquet(tmp_path / "local" / name).drop(columns=["time_s"], errors="ignore")
        pd.testing.assert_frame_equal(a, b)
    assert (tmp_path / "ray" / "best.txt").read_text() == (tmp_path / "local" / "best.txt").read_text()


def test_an_address_where_nothing_listens_is_one_line_at_once(tmp_path):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = subprocess.run([sys.executable, "-c", "from hwnas.cli.main import main; main()", "search", "--space", "cifar32", "--proxy", "zen",
                          "--iterations", "2", "--population", "2", "--ray", f"127.0.0.1:{port}",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nothing answers there" in lines[0] and f"127.0.0.1:{port}" in lines[0], run.stderr
