"""Predictor: part-cost interpolation on synthetic tables, calibration recovery, grid coverage."""

import random

import numpy as np
import pandas as pd
import pytest

from hwnas.errors import ProfileError
from hwnas.latency.predictor import PartTable, _fit, apply_calibration, fit_calibration, part_features
from hwnas.models.spaces.base import Part, get_space
from hwnas.models.units import block_units, out_size


def _table(parts, values):
    rows = []
    for p, v in zip(parts, values):
        rows.append({"op": p.op, "cin": p.cin, "cout": p.cout, "resolution": p.resolution, "stride": p.stride,
                     "mid": p.mid, "first": p.first, "se": p.se, "extra": p.extra, "median_ms": v,
                     "p10_ms": v, "p90_ms": v, "repeats": 1, "raw_median_ms": v})
    return pd.DataFrame(rows)


GRID = [Part("SuperResK3K3", w, w, 14, 1, m, False) for w in (32, 64, 128, 256) for m in (w // 4, w // 2, w)]


def _macs_by_hand(op_k, w, mid, size):
    # Non-first sub-layer of SuperResK{k}K{k}: conv k×k w->mid, conv k×k mid->w, at size×size.
    return op_k * op_k * (w * mid + mid * w) * size * size


def test_part_features_macs_match_hand_count():
    for w, m in ((32, 8), (64, 64), (200, 40)):
        macs, inp, _ = part_features(Part("SuperResK3K3", w, w, 14, 1, m, False))
        assert macs == _macs_by_hand(3, w, m, 14)
        assert inp == w * 14 * 14


def test_part_features_match_units_for_first_strided_bottleneck():
    from hwnas.models.structure import parse

    block = parse("SuperResK1K5K1(24,64,2,16,1)").blocks[0]
    expected, size = 0, 56
    for u in block_units(block):
        h = size
        for c in u.convs:
            h = out_size(h, c.stride)
            expected += c.weights * h * h
        if u.shortcut == "proj":
            expected += u.cin * u.cout * h * h
        size = out_size(size, block.stride)
    assert part_features(Part("SuperResK1K5K1", 24, 64, 56, 2, 16, True))[0] == expected


def test_interpolation_exact_on_grid_points_for_any_values():
    rng = np.random.default_rng(0)
    values = rng.uniform(0.1, 5.0, len(GRID))
    table = PartTable(_table(GRID, values))
    for p, v in zip(GRID, values):
        assert table.ms(p) == pytest.approx(v, rel=1e-12)


def test_interpolation_exact_between_grid_points_when_cost_follows_the_model():
    # A synthetic device whose cost is affine in MACs and activation elements: the group
    # model recovers it, so predictions between grid widths are exact too.
    def cost(p):
        macs, inp, act = part_features(p)
        return 0.02 + 3e-9 * macs + 5e-8 * (inp + act)

    table = PartTable(_table(GRID, [cost(p) for p in GRID]))
    for w, m in ((40, 24), (96, 48), (200, 120), (152, 152)):
        p = Part("SuperResK3K3", w, w, 14, 1, m, False)
        assert table.ms(p) == pytest.approx(cost(p), rel=1e-6)


def test_interpolation_between_grid_points_is_bounded_by_neighbours_ratio():
    # Ratios to the model differ per grid point; an off-grid width gets a ratio between its neighbours'.
    rng = np.random.default_rng(1)
    values = np.array([part_features(p)[0] * 1e-8 for p in GRID]) * rng.uniform(0.8, 1.2, len(GRID))
    table = PartTable(_table(GRID, values))
    p = Part("SuperResK3K3", 96, 96, 14, 1, 48, False)
    lo, hi = table.ms(Part("SuperResK3K3", 64, 64, 14, 1, 32, False)), table.ms(Part("SuperResK3K3", 128, 128, 14, 1, 64, False))
    assert lo < table.ms(p) < hi


def test_misaligned_widths_interpolate_only_from_misaligned_grid_points():
    # Cost = MACs-proportional; convs with a width not a multiple of 16 cost 1.8x (the AVX-512 slow path).
    aligned = [Part("SuperResK3K3", w, w, 14, 1, w, False) for w in (32, 64, 128, 256)]
    misaligned = [Part("SuperResK3K3", w, w, 14, 1, w, False) for w in (40, 72, 136, 264)]
    grid = aligned + misaligned

    def cost(p):
        return part_features(p)[0] / 1e6 * (1.8 if p.cout % 16 else 1.0)

    table = PartTable(_table(grid, [cost(p) for p in grid]), block=16)
    for w in (48, 96, 192):  # aligned off-grid widths follow the aligned points
        p = Part("SuperResK3K3", w, w, 14, 1, w, False)
        assert table.ms(p) == pytest.approx(cost(p), rel=1e-6)
    for w in (56, 104, 200):  # misaligned off-grid widths follow the misaligned points
        p = Part("SuperResK3K3", w, w, 14, 1, w, False)
        assert table.ms(p) == pytest.approx(cost(p), rel=1e-6)
    # Without a SIMD block every point is one population: a misaligned width lands between the two.
    plain = PartTable(_table(grid, [cost(p) for p in grid]))
    p = Part("SuperResK3K3", 104, 104, 14, 1, 104, False)
    assert plain.ms(p) < 0.99 * cost(p)


def test_part_outside_the_table_is_a_profile_error():
    table = PartTable(_table(GRID, np.ones(len(GRID))))
    with pytest.raises(ProfileError, match="resolution 7"):
        table.ms(Part("SuperResK3K3", 64, 64, 7, 1, 32, False))


def test_calibration_recovers_known_coefficients():
    rng = np.random.default_rng(2)
    s = rng.uniform(1, 50, 40)
    b = rng.uniform(0.1, 10, 40)
    n = rng.integers(5, 40, 40).astype(float)
    y = 0.9 * s - 0.25 * b + 0.3
    coef = _fit("boundary", s, b, n, y)
    assert coef == pytest.approx([0.9, -0.25, 0.3], rel=1e-9, abs=1e-9)
    cal = fit_calibration(s, b, n, y)
    assert cal["form"] == "boundary"  # the simplest exact form
    assert cal["forms"]["boundary"]["loo_mape"] < 1e-6
    assert apply_calibration(cal["form"], cal["coef"], s[:3], b[:3], n[:3]) == pytest.approx(y[:3])


def test_loglog_calibration_recovers_power_law():
    s = np.geomspace(1, 100, 20)
    y = 2.0 * s ** 0.8
    coef = _fit("loglog", s, s, s, y)
    assert coef == pytest.approx([0.8, np.log(2.0)])


@pytest.mark.parametrize("name", ["imagenet224", "cifar32"])
def test_coarse_grid_covers_every_part_group_of_random_networks(name):
    from hwnas.latency.predictor import _group_key

    space = get_space(name)
    grid = {_group_key(p) for p in space.grid_parts("coarse")}
    rng = random.Random(0)
    arch = space.initial()
    for _ in range(300):
        arch = space.mutate(arch, rng)
        for part in space.parts(arch):
            assert _group_key(part) in grid, part


def test_nb201_grid_holds_every_part_exactly():
    space = get_space("nb201")
    grid = set(space.grid_parts("coarse"))
    rng = random.Random(0)
    for _ in range(50):
        for part in space.parts(space.sample(rng)):
            assert part in grid


def test_misaligned_fraction_by_hand():
    from hwnas.latency.predictor import misaligned_fraction

    # Non-first SuperResK3K3(w=64, mid=24) at 14x14: conv 64->24 and 24->64, both misaligned for block 16,
    # both aligned for block 8.
    p = Part("SuperResK3K3", 64, 64, 14, 1, 24, False)
    assert misaligned_fraction(p, 16) == 1.0 and misaligned_fraction(p, 8) == 0.0
    # Non-first SuperResK1K3K1(w=64, mid=32): every conv aligned.
    assert misaligned_fraction(Part("SuperResK1K3K1", 64, 64, 14, 1, 32, False), 16) == 0.0
    # Non-first SuperResK1K3K1(w=40, mid=32): convs 40->32 (1x1), 32->32 (3x3), 32->40 (1x1), twice.
    a, b = 40 * 32, 32 * 32 * 9
    assert misaligned_fraction(Part("SuperResK1K3K1", 40, 40, 14, 1, 32, False), 16) == pytest.approx(2 * a / (2 * a + b))


def test_misaligned_calibration_recovers_penalty():
    rng = np.random.default_rng(3)
    s = rng.uniform(1, 50, 30)
    m = s * rng.uniform(0, 1, 30)
    y = 0.8 * s + 0.4 * m + 0.2
    cal = fit_calibration(s, s * 0, s * 0 + 10, y, m)
    assert cal["form"] == "misaligned"
    assert cal["coef"] == pytest.approx([0.8, 0.4, 0.2], rel=1e-8)


def test_structure_fast_path_equals_generic_parts_path():
    # A synthetic profile on the coarse grid (cost = an affine function of MACs) for imagenet224.
    from hwnas.latency.predictor import Predictor
    from hwnas.latency.profile import Profile

    space = get_space("imagenet224")
    grid = list(space.grid_parts("coarse"))
    values = [1e-3 + part_features(p)[0] * 1e-8 for p in grid]
    meta = {"name": "synthetic", "space": "imagenet224", "resolution": 224, "backend": "onnxruntime",
            "settings": {"batch": 1, "precision": "fp32"}, "device": {"name": "none", "simd": ["avx512f"]},
            "calibration": {"form": "misaligned_boundary", "coef": [0.9, 0.3, -0.01, 0.05], "predictor_version": 1}}
    pred = Predictor(Profile(table=_table(grid, values), metadata=meta))
    rng = random.Random(1)
    arch = space.initial()
    for _ in range(40):
        arch = space.mutate(arch, rng)
        fast = pred._structure_features(arch)
        generic = pred._part_terms(space.parts(arch))
        assert fast == pytest.approx(generic, rel=1e-12)
        expected = apply_calibration("misaligned_boundary", [0.9, 0.3, -0.01, 0.05], generic[0], generic[1],
                                     generic[2], generic[3])[0]
        assert pred.predict_batch_ms(arch) == pytest.approx(expected, rel=1e-12)


def test_validation_metrics_by_hand():
    from hwnas.latency.validate import _metrics

    pred = np.array([1.0, 2.09, 2.7, 4.0, 6.0])
    meas = np.array([1.0, 2.0, 3.0, 5.0, 5.9])
    m = _metrics(pred, meas)
    errors = [0.0, 0.045, 0.1, 0.2, 0.1 / 5.9]
    assert m["n"] == 5
    assert m["mape"] == pytest.approx(np.mean(errors) * 100)
    assert m["within_10pct"] == pytest.approx(4 / 5)  # 0.1 itself counts as within
    assert m["within_5pct"] == pytest.approx(3 / 5)
    assert m["spearman"] == pytest.approx(1.0) and m["kendall"] == pytest.approx(1.0)
