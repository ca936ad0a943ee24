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
