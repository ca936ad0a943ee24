"""Predictor: kernel and part interpolation on synthetic tables, calibration recovery, grid coverage."""

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


WIDTHS = (16, 32, 64, 128, 256)  # aligned for a 16-float SIMD block
ODD = (8, 24, 40, 72, 136)  # multiples of 8, not of 16
KGRID = [Part("conv3", a, b, 14, 1) for a in WIDTHS + ODD for b in WIDTHS + ODD]


def power_law(p):  # a synthetic device: time = c · cin^0.9 · cout^0.8, 1.8× for misaligned dense convs
    slow = 1.8 if (p.cin % 16 or p.cout % 16) else 1.0
    return 1e-4 * p.cin ** 0.9 * p.cout ** 0.8 * slow


def test_part_features_of_kernels_by_hand():
    assert part_features(Part("conv3", 64, 24, 14, 1)) == (64 * 24 * 9 * 14 * 14, 64 * 14 * 14, 24 * 14 * 14)
    assert part_features(Part("conv5", 32, 48, 28, 2))[0] == 32 * 48 * 25 * 14 * 14
    assert part_features(Part("dwconv7", 96, 96, 15, 2))[0] == 96 * 49 * 8 * 8  # one input channel per group
    assert part_features(Part("proj", 40, 80, 56, 2))[0] == 40 * 80 * 28 * 28


@pytest.mark.parametrize("text", ["SuperResK1K5K1(24,64,2,16,2)", "SuperResK3K3(40,24,2,72,3)",
                                  "SuperResIDWE4K5(16,24,2,32,2)", "SuperConvK3BNRELU(3,32,2,1)"])
def test_block_kernels_cover_every_conv_and_projection_of_the_block(text):
    from hwnas.models.structure import parse

    block = parse(text).blocks[0]
    expected, size = 0, 56
    for u in block_units(block):
        h = size
        for c in u.convs:
            h = out_size(h, c.stride)
            expected += c.weights * h * h
        if u.shortcut == "proj":
            expected += u.cin * u.cout * h * h
        size = h
    parts = get_space("imagenet224").block_parts(block, 56)
    assert sum(part_features(p)[0] for p in parts) == expected


def test_kernel_table_is_exact_on_grid_points_for_any_values():
    rng = np.random.default_rng(0)
    values = rng.uniform(0.1, 5.0, len(KGRID))
    table = PartTable(_table(KGRID, values), block=16)
    for p, v in zip(KGRID, values):
        assert table.ms(p) == pytest.approx(v, rel=1e-12)


def test_kernel_interpolation_is_exact_for_a_power_law_within_each_width_family():
    # log t is linear in (log cin, log cout), so bilinear interpolation in log-log space is exact, and
    # each family (aligned or not, per side) carries its own 1.8× level.
    table = PartTable(_table(KGRID, [power_law(p) for p in KGRID]), block=16)
    for a, b in ((48, 96), (192, 20 * 8), (56, 104), (48, 104), (104, 48), (512, 512), (264, 8)):
        p = Part("conv3", a, b, 14, 1)
        assert table.ms(p) == pytest.approx(power_law(p), rel=1e-9), p
    # Without a SIMD block every point is one family: a misaligned width lands between aligned neighbours.
    plain = PartTable(_table(KGRID, [power_law(p) for p in KGRID]))
    p = Part("conv3", 104, 104, 14, 1)
    assert plain.ms(p) < 0.99 * power_law(p)


def test_kernel_points_over_the_mac_cap_are_filled_by_mac_scaling():
    grid = [p for p in KGRID if p.cin * p.cout <= 64 * 256]  # the largest pairs were "not measured"
    table = PartTable(_table(grid, [part_features(p)[0] * 1e-8 for p in grid]), block=16)
    p = Part("conv3", 192, 192, 14, 1)  # between unmeasured corners: MAC-proportional cost is recovered
    assert table.ms(p) == pytest.approx(part_features(p)[0] * 1e-8, rel=1e-9)


def test_projection_is_looked_up_as_the_1x1_kernel():
    grid = [Part("conv1", a, b, 28, 2) for a in WIDTHS for b in WIDTHS]
    table = PartTable(_table(grid, [power_law(p) for p in grid]), block=16)
    assert table.ms(Part("proj", 64, 128, 28, 2)) == pytest.approx(table.ms(Part("conv1", 64, 128, 28, 2)), rel=1e-12)
    assert table.ms(Part("proj", 96, 48, 28, 2)) == pytest.approx(power_law(Part("conv1", 96, 48, 28, 2)))


def test_depthwise_kernels_interpolate_over_their_one_width():
    grid = [Part("dwconv5", w, w, 28, 2) for w in WIDTHS + ODD]
    table = PartTable(_table(grid, [1e-3 * p.cout ** 1.1 * (1.5 if p.cout % 16 else 1) for p in grid]), block=16)
    for w in (48, 96, 56, 104):
        assert table.ms(Part("dwconv5", w, w, 28, 2)) == pytest.approx(1e-3 * w ** 1.1 * (1.5 if w % 16 else 1))


def test_a_position_measured_only_for_the_stem_refuses_other_input_widths():
    stem = [Part("conv3", 3, w, 32, 1) for w in WIDTHS]
    table = PartTable(_table(stem, [0.01 * w for w in WIDTHS]), block=16)
    assert table.ms(Part("conv3", 3, 48, 32, 1)) == pytest.approx(0.48, rel=0.05)
    with pytest.raises(ProfileError, match="only at width 3"):
        table.ms(Part("conv3", 64, 64, 32, 1))


@pytest.mark.parametrize("name", ["imagenet224", "cifar32"])
def test_coarse_grid_interpolates_every_part_of_random_networks(name):
    # A table over the whole coarse grid predicts every part of 300 mutants from points of its own
    # position and width family (no single-width position answers for a range of widths).
    space = get_space(name)
    grid = list(space.grid_parts("coarse"))
    table = PartTable(_table(grid, [part_features(p)[0] * 1e-8 for p in grid]), block=16)
    rng = random.Random(0)
    arch = space.initial()
    for _ in range(300):
        arch = space.mutate(arch, rng)
        for part in space.parts(arch):
            assert table.ms(part) == pytest.approx(part_features(part)[0] * 1e-8, rel=1e-6), part


HEADS = [Part("head", w, 1000, 7) for w in (64, 128, 256, 512, 1024)]


def test_other_parts_interpolate_by_cost_model_and_ratio():
    def cost(p):
        macs, inp, act = part_features(p)
        return 0.02 + 3e-9 * macs + 5e-8 * (inp + act)

    table = PartTable(_table(HEADS, [cost(p) for p in HEADS]))
    for w in (96, 200, 700):  # an affine device: the group model recovers it between grid widths
        assert table.ms(Part("head", w, 1000, 7)) == pytest.approx(cost(Part("head", w, 1000, 7)), rel=1e-6)
    rng = np.random.default_rng(1)
    values = np.array([part_features(p)[0] * 1e-7 for p in HEADS]) * rng.uniform(0.8, 1.2, len(HEADS))
    table = PartTable(_table(HEADS, values))
    for p, v in zip(HEADS, values):
        assert table.ms(p) == pytest.approx(v, rel=1e-12)
    lo, hi = table.ms(HEADS[1]), table.ms(HEADS[2])
    assert lo < table.ms(Part("head", 192, 1000, 7)) < hi


def test_part_outside_the_table_is_a_profile_error():
    table = PartTable(_table(KGRID, np.ones(len(KGRID))))
    with pytest.raises(ProfileError, match="resolution 7"):
        table.ms(Part("conv3", 64, 64, 7, 1))


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


def test_misaligned_kernels_by_hand():
    from hwnas.latency.predictor import is_misaligned

    assert is_misaligned(Part("conv3", 64, 24, 14, 1), 16) and not is_misaligned(Part("conv3", 64, 24, 14, 1), 8)
    assert is_misaligned(Part("proj", 40, 64, 14, 2), 16)
    assert not is_misaligned(Part("conv1", 64, 32, 14, 1), 16)
    assert not is_misaligned(Part("conv3", 3, 24, 224, 2), 16)  # the stem reads 3 channels: its own grid
    assert not is_misaligned(Part("dwconv5", 40, 40, 14, 1), 16)  # depthwise: one channel per group
    assert not is_misaligned(Part("head", 40, 1000, 7), 16)


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
            "calibration": {"form": "misaligned_boundary", "coef": [0.9, 0.3, -0.01, 0.05], "predictor_version": 2}}
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
