"""The `search` command: one-line errors with exit status 2 before any work, and its outputs."""

from __future__ import annotations

import json

import pytest

from hwnas.cli.main import main, search_main

FAST = ["--space", "cifar32", "--batch-size", "2", "--population", "4", "--iterations", "6", "--no-progress"]


def _run(entry, args, capsys):
    with pytest.raises(SystemExit) as exc:
        entry(args)
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def _one_line_error(code, err, *needles):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_help_has_an_example(capsys):
    code, out, _ = _run(main, ["search", "--help"], capsys)
    assert code == 0 and "Example" in out and "--latency-ms" in out


def test_unknown_profile_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _run(search_main, [*FAST, "--latency-ms", "1", "--profile", "no-such-profile", "--out", str(out)],
                        capsys)
    _one_line_error(code, err, "no-such-profile")
    assert not out.exists()


def test_budget_below_the_smallest_network(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _run(search_main, [*FAST, "--params", "1000", "--out", str(out)], capsys)
    _one_line_error(code, err, "smallest", "params")
    assert not out.exists()
    code, _, err = _run(search_main, [*FAST, "--max-layers", "2", "--out", str(out)], capsys)
    _one_line_error(code, err, "layers")


def test_bad_space_proxy_and_budget(tmp_path, capsys):
    out = str(tmp_path / "run")
    code, _, err = _run(search_main, [*FAST, "--space", "nope", "--params", "1e6", "--out", out], capsys)
    _one_line_error(code, err, "nope")
    code, _, err = _run(search_main, [*FAST, "--proxy-option", "nosuch=1", "--params", "1e6", "--out", out], capsys)
    _one_line_error(code, err, "nosuch")
    code, _, err = _run(search_main, [*FAST, "--params", "-5", "--out", out], capsys)
    _one_line_error(code, err, "params")
    code, _, err = _run(search_main, [*FAST, "--rho-max", "0.5", "--space", "nb201", "--out", out], capsys)
    assert code == 2


def test_profile_of_another_space_is_refused(tmp_path, capsys):
    from hwnas.errors import ProfileError
    from hwnas.latency.profile import Profile, default_profile_name

    try:
        prof = Profile.load(default_profile_name("imagenet224"))
    except ProfileError as err:
        pytest.skip(f"no shipped imagenet224 profile in this checkout: {err}")
    out = tmp_path / "run"
    code, _, err = _run(search_main, [*FAST, "--latency-ms", "5", "--profile", prof.name, "--out", str(out)], capsys)
    _one_line_error(code, err, "imagenet224", "cifar32")
    assert not out.exists()
    code, _, err = _run(search_main, ["--space", "imagenet224", "--latency-ms", "5", "--latency-batch",
                                      str(prof.batch + 7), "--out", str(out), "--no-progress"], capsys)
    _one_line_error(code, err, "batch")
    code, _, err = _run(search_main, ["--space", "imagenet224", "--latency-ms", "0.001", "--out", str(out),
                                      "--no-progress"], capsys)
    _one_line_error(code, err, "smallest", "latency")
    assert not out.exists()


def test_search_json_output_and_refusal_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = _run(search_main, [*FAST, "--params", "3e5", "--out", str(out), "--json"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["iterations"] == 6 and summary["params"] <= 3e5
    for name in ("best.txt", "population.parquet", "history.parquet", "config.json", "summary.json"):
        assert (out / name).is_file()
    before = (out / "summary.json").read_text()
    code, _, err = _run(search_main, [*FAST, "--params", "3e5", "--out", str(out)], capsys)
    _one_line_error(code, err, "--resume")
    assert (out / "summary.json").read_text() == before  # nothing written is lost
    code, _, err = _run(search_main, [*FAST, "--params", "2e5", "--out", str(out), "--resume"], capsys)
    _one_line_error(code, err, "budgets")


def test_search_on_an_edge_tpu_profile_never_keeps_an_undeployable_cell(tmp_path, capsys):
    """HW-NAS-Bench's Edge TPU rejects some cells (the smallest, all-none cell among them): the search still
    starts (from the initial cell), and every accepted cell has a published, finite latency within budget."""
    import math

    import pandas as pd

    from hwnas.latency.profile import Profile

    table = Profile.load("hwnasbench-edgetpu-b1-nb201").network_table()
    args = ["--space", "nb201", "--profile", "hwnasbench-edgetpu-b1-nb201", "--latency-ms", "1.0",
            "--batch-size", "2", "--population", "4", "--iterations", "12", "--no-progress", "--seed", "1",
            "--out", str(tmp_path / "run"), "--json"]
    code, out, err = _run(search_main, args, capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["meets_budgets"] and summary["latency_ms"] == table[summary["best_structure"]] <= 1.0
    history = pd.read_parquet(tmp_path / "run" / "history.parquet")
    accepted = history[history.accepted]
    assert len(accepted) > 0
    for arch, latency in zip(accepted.structure, accepted.latency_ms):
        assert math.isfinite(latency) and latency == table[arch] <= 1.0


def test_proxy_option_resolution_scores_at_that_size(tmp_path, capsys):
    """--proxy-option resolution=R (a cheaper evaluation) is passed to the proxy instead of the space's own
    resolution: the run's best score equals the proxy's score of that structure at R."""
    from hwnas.models.spaces.base import get_space
    from hwnas.search.workers import candidate_seed
    from hwnas.search.proxies import get_proxy

    args = [*FAST, "--params", "1e6", "--proxy-option", "resolution=16", "--out", str(tmp_path / "r"), "--json"]
    code, out, err = _run(search_main, args, capsys)
    assert code == 0, err
    summary = json.loads(out)
    space = get_space("cifar32")
    proxy = get_proxy("zen", resolution=16, batch_size=2, seed=candidate_seed(0, summary["best_structure"]))
    assert summary["score"] == pytest.approx(proxy.score(space, space.parse(summary["best_structure"])).value)
