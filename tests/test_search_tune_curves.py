"""hwnas tune (Optuna over the search's hyperparameters) and hwnas curves (accuracy–latency PNG)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from hwnas.cli.main import main
from hwnas.models.zoo import data_dir


def _nb201_accuracy() -> pd.Series:
    table = pd.read_csv(data_dir().parent / "nasbench201" / "accuracy.csv")
    return table.set_index("arch")["cifar10"]


def test_curves_png_and_pareto_front(tmp_path, capsys):
    out = tmp_path / "nb.png"
    with pytest.raises(SystemExit) as exc:
        main(["curves", "--space", "nb201", "--x", "params", "--out", str(out), "--json"])
    assert exc.value.code == 0
    result = json.loads(capsys.readouterr().out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points = pd.read_csv(out.with_suffix(".csv"))
    assert len(points) == 15625 == result["points"]
    front = points[points["pareto"]]
    # brute force: a front point is beaten by no point on both axes; every other point is beaten by one
    for row in front.itertuples():
        assert not ((points["x"] <= row.x) & (points["accuracy"] > row.accuracy)).any()
    others = points[~points["pareto"]].sample(200, random_state=0)
    for row in others.itertuples():
        assert ((front["x"] <= row.x) & (front["accuracy"] >= row.accuracy)).any()


def test_tune_objective_is_the_real_accuracy_and_the_study_resumes(tmp_path):
    from hwnas.search.tune import tune

    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    args = dict(iterations=6, proxies=("params", "flops"), population=(4, 8), batch_sizes=(4,), storage=storage,
                out=tmp_path / "trials")
    first = tune(trials=2, **args)
    assert first["trials"] == 2
    assert first["best_accuracy"] == pytest.approx(_nb201_accuracy()[first["best_structure"]])
    again = tune(trials=3, **args)  # the same study: one more trial
    assert again["trials"] == 3
    trials = pd.read_parquet(tmp_path / "trials" / "trials.parquet")
    assert len(trials) == 3 and trials["value"].max() == pytest.approx(again["best_accuracy"])
