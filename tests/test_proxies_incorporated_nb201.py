"""Incorporated score on NAS-Bench-201: the entropy of hand-written cells by hand, every cell scored or
rejected with a reason (never NaN), the full proxy on every kind of cell, and a search with it."""

from __future__ import annotations

import itertools
import math

import pandas as pd
import pytest

from hwnas.errors import ProxyError
from hwnas.models.spaces.base import get_space
from hwnas.search.budgets import Budgets
from hwnas.search.evolution import SearchConfig, search
from hwnas.search.proxies import get_proxy
from hwnas.search.proxies.incorporated import cell_entropy_score

C1, C3 = "nor_conv_1x1", "nor_conv_3x3"
# Edge order of a cell string: 0->1, 0->2, 1->2, 0->3, 1->3, 2->3.
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))


def _cell(*ops):
    space = get_space("nb201")
    groups = [[f"{op}~{s}" for op, (s, d) in zip(ops, EDGES) if d == t] for t in (1, 2, 3)]
    return space.parse("+".join("|" + "|".join(g) + "|" for g in groups))


def _lw(c, k):  # one conv's layer term log(c·k²/g), groups 1
    return math.log(c * k * k)


def _by_hand(path, r=32):
    """H and the depths of the three stages written out: stem + 5 cells; reduction (2 convs) + 5 cells, twice."""
    r1 = r
    r2 = (r1 - 1) // 2 + 1  # 3x3 conv, stride 2, padding 1
    r3 = (r2 - 1) // 2 + 1
    s1 = _lw(3, 3) + 5 * sum(_lw(16, k) for k in path)
    s2 = _lw(16, 3) + _lw(32, 3) + 5 * sum(_lw(32, k) for k in path)
    s3 = _lw(32, 3) + _lw(64, 3) + 5 * sum(_lw(64, k) for k in path)
    hs = [math.log(r1 * r1 * 16) * s1, math.log(r2 * r2 * 32) * s2, math.log(r3 * r3 * 64) * s3]
    depths = [1 + 5 * len(path), 2 + 5 * len(path), 2 + 5 * len(path)]
    return hs, depths


def _q(depths):
    mean = sum(depths) / len(depths)
    return math.exp(sum((d - mean) ** 2 for d in depths) / len(depths))


@pytest.mark.parametrize("ops,path", [
    (("skip_connect",) * 6, ()),  # no conv on any path: stem and reductions only
    ((C3, "none", C1, "skip_connect", "none", C3), (3, 1, 3)),  # the chain 0->1->2->3
    ((C1, C3, "none", "skip_connect", C1, C3), (3, 3)),  # two 2-conv paths: the one with the 3x3 convs
    ((C1, "none", C1, C3, "none", C1), (1, 1, 1)),  # three 1x1 convs beat one 3x3 (more depth)
    (("avg_pool_3x3", "none", "avg_pool_3x3", "none", C1, "avg_pool_3x3"), (1,)),  # pools count no depth
    (("avg_pool_3x3", C3, "avg_pool_3x3", "none", C1, "avg_pool_3x3"), (3,)),  # of two 1-conv paths, the 3x3
])
def test_cell_entropy_by_hand(ops, path):
    cell = _cell(*ops)
    hs, depths = _by_hand(path)
    q = _q(depths)
    assert q == pytest.approx(math.exp(2 / 9))  # (1+5d, 2+5d, 2+5d): the same variance for every depth d
    e = cell_entropy_score(cell, 32)
    assert e["h"] == pytest.approx(sum(hs), rel=1e-12)
    assert e["q"] == pytest.approx(q, rel=1e-12)
    assert e["e_score"] == pytest.approx(sum(hs) - 10 * q, rel=1e-12)
    half = cell_entropy_score(cell, 32, layer_term="deepmad_code")
    assert half["h"] == pytest.approx(sum(hs) / 2, rel=1e-12)
    weighted = cell_entropy_score(cell, 32, alpha=[1, 0, 2], beta=1)
    assert weighted["e_score"] == pytest.approx(hs[0] + 2 * hs[2] - q, rel=1e-12)


def test_cell_entropy_at_imagenet16_resolution():
    cell = _cell(C3, C3, C3, C3, C3, C3)
    hs, depths = _by_hand((3, 3, 3), r=16)  # stages at 16, 8 and 4 px
    assert cell_entropy_score(cell, 16)["e_score"] == pytest.approx(sum(hs) - 10 * _q(depths), rel=1e-12)


def _connected(ops) -> bool:
    reach = {0}
    for op, (s, d) in zip(ops, EDGES):  # edges come in order of their target: one pass suffices
        if op != "none" and s in reach:
            reach.add(d)
    return 3 in reach


def test_every_cell_has_a_positive_entropy_or_a_reason():
    space = get_space("nb201")
    ops = ("none", "skip_connect", C1, C3, "avg_pool_3x3")
    rejected = 0
    for combo in itertools.product(ops, repeat=6):
        cell = _cell(*combo)
        if _connected(combo):
            e = cell_entropy_score(cell, space.resolution)["e_score"]
            assert math.isfinite(e) and e > 0, cell
        else:
            rejected += 1
            with pytest.raises(ProxyError, match="no live path"):
                cell_entropy_score(cell, space.resolution)
    assert 0 < rejected < 5 ** 6


@pytest.mark.parametrize("transform,wz,wd", [("log", 0.9, 0.1), ("sqrt", 0.8, 0.2)])
@pytest.mark.parametrize("ops", [("skip_connect",) * 6, ("avg_pool_3x3",) * 6, (C1,) * 6, (C3,) * 6,
                                 (C3, "avg_pool_3x3", C1, "skip_connect", "none", C3)])
def test_incorporated_scores_every_kind_of_cell(ops, transform, wz, wd):
    space = get_space("nb201")
    cell = _cell(*ops)
    result = get_proxy("incorporated", batch_size=2, seed=1, transform=transform).score(space, cell)
    zen = get_proxy("zen", batch_size=2, seed=1).score(space, cell).value
    e = cell_entropy_score(cell, 32)["e_score"]
    f = math.log(e) if transform == "log" else math.sqrt(e)
    assert result.parts["zen"] == pytest.approx(zen, rel=1e-12)
    assert result.value == pytest.approx(wz * zen + wd * f, rel=1e-12)
    assert math.isfinite(result.value)
    assert not {"rho", "rho_max", "rho_ok"} & set(result.parts)  # DeepMAD's rho is not defined on NB201


@pytest.mark.parametrize("ops", [("none",) * 6, (C3, C3, C3, "none", "none", "none")])
def test_incorporated_rejects_a_cut_off_cell_with_its_reason(ops):
    space = get_space("nb201")
    with pytest.raises(ProxyError, match="no live path"):
        get_proxy("incorporated", batch_size=2).score(space, _cell(*ops))


def test_non_positive_entropy_on_nb201_is_rejected_with_reason():
    space = get_space("nb201")
    with pytest.raises(ProxyError, match="E_score"):
        get_proxy("incorporated", batch_size=2, beta=1e9).score(space, space.initial())


def test_search_with_incorporated_on_nb201_has_no_rho_constraint(tmp_path):
    cfg = SearchConfig(space="nb201", proxy="incorporated", proxy_options={"transform": "sqrt"}, batch_size=2,
                       population=4, iterations=12, seed=0, budgets=Budgets(latency_ms=1.0),
                       profile="ort-cpu1-b1-nb201")
    summary = search(cfg, tmp_path / "run")
    history = pd.read_parquet(tmp_path / "run" / "history.parquet")
    assert history["accepted"].sum() >= 1
    assert not history["reject_reason"].fillna("").str.startswith("rho").any()
    assert summary["meets_budgets"] is True
