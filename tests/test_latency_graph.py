"""Graph features (NB201 on ONNX Runtime) and the graph calibration form; interleaved whole-network timing."""

import itertools
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hwnas.errors import ProfileError
from hwnas.latency.timing import (ROUND_SECONDS, Measurement, measure_interleaved, network_ms, take_samples,
                                  timed_sessions)
from hwnas.latency import Predictor, fit_calibration
from hwnas.latency.calibration import FORM_FEATURES, apply_calibration
from hwnas.latency.graph import GraphFeatures, optimized_op_counts
from hwnas.latency.profile import Profile
from hwnas.models.spaces.base import get_space
from hwnas.models.spaces.nb201 import OPS, Cell
from hwnas.latency.kernels import kernels_for


@pytest.mark.parametrize("ops", [
    ("nor_conv_1x1", "avg_pool_3x3", "none", "avg_pool_3x3", "none", "skip_connect"),  # CSE of two pools, x·0
    ("none",) * 6,
    ("skip_connect", "nor_conv_3x3", "avg_pool_3x3", "nor_conv_1x1", "none", "nor_conv_3x3"),
])
def test_direct_onnx_graph_optimizes_like_the_torch_export(ops):
    """The directly built graph and the exporter's graph of the torch network become the same optimized graph."""
    from hwnas.latency.export import export_onnx

    space = get_space("nb201")
    cell = Cell(ops)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.onnx"
        export_onnx(space.build(cell).eval(), (3, 32, 32), 1, path)
        exported = optimized_op_counts(path.read_bytes())
    direct = optimized_op_counts(kernels_for(space).onnx_network(cell))
    assert exported == direct
    assert sum(v for k, v in direct.items() if k.endswith(":Gemm")) == 1


def fanout_features(cell):
    return kernels_for(get_space("nb201")).fanout_features(cell)


def test_fanout_features_by_hand():
    cell = Cell(("skip_connect",) * 6)
    f = fanout_features(cell)
    # sources 0, 1, 2 have 3, 2 and 1 outgoing edges: C(5+3-1, 3) + C(5+2-1, 2) + 5 multisets
    assert len(f) == 35 + 15 + 5
    blocks = [f[:35], f[35:50], f[50:]]
    assert [sum(b) for b in blocks] == [1, 1, 1]
    ops = sorted(OPS)
    assert blocks[0].index(1.0) == list(itertools.combinations_with_replacement(ops, 3)).index(("skip_connect",) * 3)
    # the order of the edges leaving a node does not matter, their multiset does
    a = Cell(("nor_conv_1x1", "avg_pool_3x3", "none", "none", "none", "none"))
    b = Cell(("avg_pool_3x3", "nor_conv_1x1", "none", "none", "none", "none"))
    assert fanout_features(a) == fanout_features(b)  # node 0 sends {1x1, pool, none} in both
    c = Cell(("nor_conv_1x1", "none", "avg_pool_3x3", "none", "none", "none"))
    assert fanout_features(a)[35:50] != fanout_features(c)[35:50]  # node 1 sends {none, none} vs {pool, none}


def test_graph_form_recovers_a_linear_model_of_graph_features():
    rng = np.random.default_rng(0)
    n = 120
    s = rng.uniform(0.5, 3.0, n)
    b = rng.uniform(0.0, 1.0, n)
    x = rng.integers(0, 20, size=(n, 4)).astype(float)
    y = 0.9 * s + 0.2 * b + x @ np.array([0.01, 0.02, 0.0, 0.005]) + 0.1
    F = np.column_stack([s, b, np.full(n, 10.0), np.zeros((n, 3))])  # s, b, n; no m, w, b2
    cal = fit_calibration(F, y, x=x)
    assert "graph" in cal["forms"] and cal["form"] == "graph"
    assert cal["forms"]["graph"]["loo_mape"] < 1.0 and cal["forms"]["graph"]["loo_within_10pct"] == 1.0
    pred = apply_calibration("graph", cal["coef"], F, x=x)
    assert np.max(np.abs(pred / y - 1)) < 0.05  # ridge-penalized, so close rather than exact
    assert "graph" not in fit_calibration(F, y)["forms"]  # no features, no graph form


def _nb201_graph_profile(space, cells, coef_graph):
    """A synthetic NB201 profile (every part 0.1 ms) calibrated with the graph form and given coefficients."""
    parts = list(kernels_for(space).grid_parts("coarse"))
    table = pd.DataFrame([{**{f: getattr(p, f) for f in ("op", "cin", "cout", "resolution", "stride", "mid",
                                                          "first", "se", "extra")},
                           "median_ms": 0.1, "p10_ms": 0.09, "p90_ms": 0.11, "repeats": 5, "raw_median_ms": 0.1}
                          for p in parts])
    graph = pd.DataFrame([{"arch": space.format(c), "ai.onnx:Add": i, "ai.onnx:Mul": 2 * i}
                          for i, c in enumerate(cells)])
    meta = {"name": "toy-graph", "space": "nb201", "resolution": 32, "backend": "onnxruntime",
            "settings": {"device": "cpu", "threads": 1, "batch": 1, "precision": "fp32"},
            "device": {"kind": "cpu", "name": "test cpu"}, "versions": {}, "date": "2026-01-01", "grid": "coarse",
            "calibration": {"form": "graph", "coef": coef_graph, "predictor_version": 2,
                            "graph_ops": ["ai.onnx:Add", "ai.onnx:Mul"]}}
    return Profile(table=table, metadata=meta, graph=graph)


def test_predictor_applies_the_graph_form_by_hand(tmp_path):
    space = get_space("nb201")
    cells = [Cell(ops) for ops in [("none",) * 6, ("skip_connect",) * 6, ("nor_conv_3x3",) * 6]]
    n_fan = len(fanout_features(cells[0]))
    coef = [1.0, 0.5, 0.01, 0.002] + [0.0] * n_fan + [0.05]  # s, b, Add, Mul, fan-out..., intercept
    prof = _nb201_graph_profile(space, cells, coef)
    prof.save(tmp_path / "toy-graph")
    loaded = Profile.load(tmp_path / "toy-graph")
    pred = Predictor(loaded)
    for i, cell in enumerate(cells):
        s, b, *_ = pred.features(cell)
        expected = 1.0 * s + 0.5 * b + 0.01 * i + 0.002 * 2 * i + 0.05
        assert pred.predict_ms(cell) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ProfileError, match="not in the profile's graph table"):
        pred.predict_ms(Cell(("avg_pool_3x3",) * 6))


def test_edited_graph_table_is_refused(tmp_path):
    space = get_space("nb201")
    cells = [Cell(("none",) * 6), Cell(("skip_connect",) * 6)]
    prof = _nb201_graph_profile(space, cells, [1.0, 0.0, 0.0, 0.0] + [0.0] * 55 + [0.0])
    prof.save(tmp_path / "p")
    g = pd.read_parquet(tmp_path / "p" / "graph.parquet")
    g.loc[0, "ai.onnx:Add"] += 1
    g.to_parquet(tmp_path / "p" / "graph.parquet", index=False)
    with pytest.raises(ProfileError, match="hash mismatch"):
        Profile.load(tmp_path / "p")


def test_graph_features_need_every_column():
    space = get_space("nb201")
    table = pd.DataFrame([{"arch": str(Cell(("none",) * 6)), "ai.onnx:Add": 1}])
    with pytest.raises(ProfileError, match="lacks operator columns"):
        GraphFeatures(space, table, ["ai.onnx:Add", "ai.onnx:Mul"])
    assert list(GraphFeatures(space, table)(Cell(("none",) * 6))[:1]) == [1.0]
    assert FORM_FEATURES["graph"][:2] == ("s", "b")


class _FakeTimer:
    """A timer whose samples read a shared clock: a burst of load slows every sample taken during it."""

    def __init__(self, name, base, clock, log):
        self.name, self.base, self.clock, self.log, self.closed = name, base, clock, log, False

    def sample(self):
        t = self.clock["t"]
        self.clock["t"] += 1
        self.log.append(self.name)
        slow = 1.6 if 8 <= t < 14 else 1.0  # a burst of six samples
        return self.base * slow, True

    def close(self):
        self.closed = True


class _FakeBackend:
    repeats = 10

    def __init__(self):
        self.clock, self.log, self.timers = {"t": 0}, [], []

    def prepare(self, module, shape, **_):
        timer = _FakeTimer(module, {"a": 1.0, "b": 2.0, "c": 3.0}[module], self.clock, self.log)
        self.timers.append(timer)
        return timer


def test_interleaved_rounds_spread_a_burst_over_all_networks(monkeypatch):
    pauses = []
    monkeypatch.setattr("time.sleep", pauses.append)
    backend = _FakeBackend()
    chunks = []
    out = measure_interleaved(backend, ["a", "b", "c"], lambda m: backend.prepare(m, (3, 8, 8)), rounds=5, chunk=2,
                              passes=1, on_chunk=lambda items, ms: chunks.append(list(items)))
    assert chunks == [["a", "b"], ["c"]]
    # two samples of each network per round, round robin within a chunk
    assert backend.log[:8] == ["a", "a", "b", "b", "a", "a", "b", "b"]
    assert all(t.closed for t in backend.timers)
    assert [m.repeats for m in out] == [10, 10, 10]
    # the burst (samples 8..13) fell on 4 of a's samples and 2 of b's; the 10th percentile is not moved by it
    assert [network_ms(m) for m in out] == pytest.approx([1.0, 2.0, 3.0])
    # rounds this short are padded with a pause to ROUND_SECONDS, between rounds only: 4 per chunk
    assert len(pauses) == 8 and all(0 < p <= ROUND_SECONDS for p in pauses)


def test_passes_keep_each_networks_fastest_pass(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)

    class Episode(_FakeTimer):
        """An episode of contention that lasts a whole pass: every sample of the first 40 is 30% slower."""

        def sample(self):
            t = self.clock["t"]
            self.clock["t"] += 1
            self.log.append(self.name)
            return self.base * (1.3 if t < 40 else 1.0), True

    backend = _FakeBackend()
    backend.prepare = lambda m, shape: Episode(m, {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}[m], backend.clock,
                                               backend.log)
    seen = []
    out = measure_interleaved(backend, ["a", "b", "c", "d"], lambda m: backend.prepare(m, (3, 8, 8)), rounds=5,
                              chunk=2, passes=3, on_chunk=lambda items, ms: seen.append(list(items)))
    # 10 samples × 4 networks a pass: the first pass is slow throughout, the fastest pass is kept
    assert [network_ms(m) for m in out] == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert len(backend.log) == 120 and sum(map(len, seen)) == 12
    # every pass visits all networks, the later ones in another order (other neighbours in a chunk)
    assert [x for c in seen[:2] for x in c] == ["a", "b", "c", "d"]
    assert sorted(x for c in seen[2:4] for x in c) == ["a", "b", "c", "d"]
    assert {tuple(x for c in seen[k:k + 2] for x in c) for k in (0, 2, 4)} != {("a", "b", "c", "d")}
    # and one pass alone keeps what it measured
    slow = measure_interleaved(backend, ["a"], lambda m: Episode(m, 1.0, {"t": 0}, []), rounds=5, passes=1)
    assert network_ms(slow[0]) == pytest.approx(1.3)


def test_take_samples_replaces_invalid_ones():
    class Flaky:
        def __init__(self):
            self.i = 0

        def sample(self):
            self.i += 1
            return float(self.i), self.i % 2 == 0  # every other sample "preempted"

    assert take_samples(Flaky(), 3) == [2.0, 4.0, 6.0]
    assert network_ms(Measurement(2.0, 1.5, 3.0, 10)) == 1.5


def test_timed_sessions_keeps_the_fastest_session_and_splits_the_repeats():
    speeds = iter([3.0, 1.0, 2.0])  # each fresh session runs at its own speed
    opened, closed = [], []

    class Session:
        def __init__(self, ms):
            self.ms, self.n = ms, 0
            opened.append(self)

        def sample(self):
            self.n += 1
            return self.ms + 0.01 * self.n, True

        def close(self):
            closed.append(self)

    m = timed_sessions(lambda: Session(next(speeds)), repeats=25, sessions=3)
    assert [s.n for s in opened] == [9, 9, 9]  # ceil(25 / 3) samples each
    assert len(closed) == 3
    assert m.repeats == 9 and m.median_ms == pytest.approx(1.05)  # the 1 ms session: 1.01 ... 1.09
    one = timed_sessions(lambda: Session(5.0), repeats=4)
    assert one.repeats == 4 and one.median_ms == pytest.approx(5.025)
