"""Predictor: kernel and part interpolation on synthetic tables, calibration recovery, grid coverage."""

import random

import numpy as np
import pandas as pd
import pytest

from hwnas.errors import ProfileError
from hwnas.latency import fit_calibration
from hwnas.latency.block_rows import Terms
from hwnas.latency.calibration import FEATURES, _fit, apply_calibration
from hwnas.latency.kernels import Part, kernels_for
from hwnas.latency.part_table import PartTable, _group_key, part_features
from hwnas.models.spaces.base import get_space
from hwnas.models.units import block_units, out_size


def _features(s, b, n, m=None, w=None, b2=None):
    """Feature rows (FEATURES order) from columns; absent ones are zero."""
    zero = np.zeros(len(s))
    return np.column_stack([s, b, n] + [zero if c is None else c for c in (m, w, b2)])


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
    parts = kernels_for(get_space("imagenet224")).block_parts(block, 56)
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
    grid = list(kernels_for(space).grid_parts("coarse"))
    table = PartTable(_table(grid, [part_features(p)[0] * 1e-8 for p in grid]), block=16)
    rng = random.Random(0)
    arch = space.initial()
    for _ in range(300):
        arch = space.mutate(arch, rng)
        for part in kernels_for(space).parts(arch):
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
    F = _features(s, b, n, w=rng.uniform(0, 5, 40), b2=b * b)
    coef = _fit("boundary", F, y)
    assert coef == pytest.approx([0.9, -0.25, 0.3], rel=1e-9, abs=1e-9)
    cal = fit_calibration(F, y)
    assert cal["form"] == "boundary"  # the simplest exact form
    assert cal["forms"]["boundary"]["loo_mape"] < 1e-6
    assert apply_calibration(cal["form"], cal["coef"], F[:3]) == pytest.approx(y[:3])


def test_weights_calibration_recovers_known_coefficients():
    rng = np.random.default_rng(5)
    s, b, n = rng.uniform(1, 50, 40), rng.uniform(0.1, 10, 40), rng.integers(5, 200, 40).astype(float)
    w, b2 = rng.uniform(0, 20, 40), b * rng.uniform(0.1, 10, 40)
    F = _features(s, b, n, w=w, b2=b2)
    y = 0.95 * s - 0.05 * b - 0.004 * n + 0.04 * w + 0.01 * b2 + 0.2
    cal = fit_calibration(F, y)
    assert cal["form"] == "weights_b2"
    assert cal["coef"] == pytest.approx([0.95, -0.05, -0.004, 0.04, 0.01, 0.2], rel=1e-8)
    y = 0.95 * s - 0.05 * b - 0.004 * n + 0.04 * w + 0.2
    assert fit_calibration(F, y)["form"] == "weights"  # the simpler exact form
    assert "weights" not in fit_calibration(_features(s, b, n), y)["forms"]  # no weights: no weights forms


def _terms_of_one(part, block=16):
    """The features of one part at 1 ms (fp32, batch 1), as the predictor sums them."""
    class OneMs:
        def ms(self, part):
            return 1.0

    return Terms(OneMs(), block, 1, "fp32").of_parts([(1.0, part)])


def part_params(part):
    return round(_terms_of_one(part)[4] / 4e-6)  # weight MB at 4 bytes per weight


def is_misaligned(part, block):
    return _terms_of_one(part, block)[3] > 0  # misaligned ms


def test_part_params_equal_the_built_parts_weights():
    # independent: the weights of the part as the space builds it (convolution and classifier weights; the BN
    # folds into the convolution at inference and its few parameters are not part of the term)
    import torch

    for name in ("imagenet224", "cifar32"):
        space = get_space(name)
        rng = random.Random(4)
        parts = rng.sample(list(kernels_for(space).grid_parts("coarse")), 40)
        parts += [Part("proj", 40, 64, 14, 2), Part("head", 40, space.num_classes, 7)]
        parts += [Part("dwconv5", 48, 48, 14, 1), Part("dwconv3", 40, 40, 28, 2)]
        for part in parts:
            module, _ = kernels_for(space).build_part(part)
            weights = sum(m.weight.numel() for m in module.modules()
                          if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
            assert part_params(part) == weights, part


def test_loglog_calibration_recovers_power_law():
    s = np.geomspace(1, 100, 20)
    y = 2.0 * s ** 0.8
    coef = _fit("loglog", _features(s, s, s), y)
    assert coef == pytest.approx([0.8, np.log(2.0)])


@pytest.mark.parametrize("name", ["imagenet224", "cifar32"])
def test_coarse_grid_covers_every_part_group_of_random_networks(name):
    space = get_space(name)
    grid = {_group_key(p) for p in kernels_for(space).grid_parts("coarse")}
    rng = random.Random(0)
    arch = space.initial()
    for _ in range(300):
        arch = space.mutate(arch, rng)
        for part in kernels_for(space).parts(arch):
            assert _group_key(part) in grid, part


@pytest.mark.parametrize("name", ["imagenet224", "cifar32"])
def test_coarse_grid_covers_every_part_group_of_the_zoo_networks(name):
    from hwnas.models import zoo

    space = get_space(name)
    grid = {_group_key(p) for p in kernels_for(space).grid_parts("coarse")}
    nets = [m.structure for m in map(zoo.get, zoo.models()) if m.resolution == space.resolution]
    assert any(b.kind == "inverted" for net in nets for b in net.blocks) or name == "cifar32"
    for net in nets:
        for part in kernels_for(space).parts(net):
            assert _group_key(part) in grid, part


def test_nb201_grid_holds_every_part_exactly():
    space = get_space("nb201")
    grid = set(kernels_for(space).grid_parts("coarse"))
    rng = random.Random(0)
    for _ in range(50):
        for part in kernels_for(space).parts(space.sample(rng)):
            assert part in grid


def test_misaligned_kernels_by_hand():
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
    cal = fit_calibration(_features(s, s * 0, s * 0 + 10, m), y)
    assert cal["form"] == "misaligned"
    assert cal["coef"] == pytest.approx([0.8, 0.4, 0.2], rel=1e-8)


def test_structure_fast_path_equals_generic_parts_path():
    # A synthetic profile on the coarse grid (cost = an affine function of MACs) for imagenet224.
    from hwnas.latency import Predictor
    from hwnas.latency.profile import Profile

    space = get_space("imagenet224")
    grid = list(kernels_for(space).grid_parts("coarse"))
    values = [1e-3 + part_features(p)[0] * 1e-8 for p in grid]
    meta = {"name": "synthetic", "space": "imagenet224", "resolution": 224, "backend": "onnxruntime",
            "settings": {"batch": 1, "precision": "fp32"}, "device": {"name": "none", "simd": ["avx512f"]},
            "calibration": {"form": "misaligned_boundary", "coef": [0.9, 0.3, -0.01, 0.05], "predictor_version": 2}}
    pred = Predictor(Profile(table=_table(grid, values), metadata=meta))
    rng = random.Random(1)
    arch = space.initial()
    for _ in range(40):
        arch = space.mutate(arch, rng)
        fast = pred.features(arch)
        generic = _generic_terms(pred, arch)
        assert fast == pytest.approx(generic, rel=1e-12)
        expected = apply_calibration("misaligned_boundary", [0.9, 0.3, -0.01, 0.05], generic)[0]
        assert pred.predict_batch_ms(arch) == pytest.approx(expected, rel=1e-12)


def _synthetic_predictor(name, calibration):
    from hwnas.latency import Predictor
    from hwnas.latency.profile import Profile

    space = get_space(name)
    grid = list(kernels_for(space).grid_parts("coarse"))
    values = [1e-3 + part_features(p)[0] * 1e-8 * (1.5 if p.cin % 16 or p.cout % 16 else 1) for p in grid]
    meta = {"name": "synthetic", "space": name, "resolution": space.resolution, "backend": "onnxruntime",
            "settings": {"batch": 1, "precision": "fp32"}, "device": {"name": "none", "simd": ["avx512f"]},
            "calibration": calibration}
    return Predictor(Profile(table=_table(grid, values), metadata=meta))


def _mutant_stream(space, n, seed):
    # A search-like stream: each a mutant (one or two blocks replaced) of a random recent one, all distinct,
    # with both long blocks (split) and every block kind of the space.
    rng = random.Random(seed)
    pool, seen = [space.initial()], set()
    while len(pool) < n:
        child = space.mutate(rng.choice(pool[-30:]), rng, num_blocks=rng.choice((1, 2)))
        if child not in seen:
            seen.add(child)
            pool.append(child)
    return pool


def _generic_terms(pred, arch):
    # The generic per-part path: one sum over every part of the network (no block rows).
    return pred.terms.of_parts((1.0, part) for part in kernels_for(pred.space).parts(arch))


def _generic_ms(pred, space, arch):
    f = _generic_terms(pred, arch)
    if pred.form is None:
        return f[0] / pred.batch
    return apply_calibration(pred.form, pred.coef, f)[0] / pred.batch


@pytest.mark.parametrize("name", ["imagenet224", "cifar32"])
@pytest.mark.parametrize("source", ["synthetic", "shipped"])
def test_batch_path_equals_one_at_a_time_equals_generic_path(name, source):
    from hwnas.latency import Predictor
    from hwnas.latency.profile import Profile

    def make():
        if source == "shipped":
            return Predictor(Profile.load(f"ort-cpu1-b1-{name}"))
        return _synthetic_predictor(name, {"form": "misaligned_boundary", "coef": [0.9, 0.3, -0.01, 0.05],
                                           "predictor_version": 2})

    space = get_space(name)
    archs = _mutant_stream(space, 400, seed=7)
    reference = make()  # generic per-part path only
    generic = np.array([_generic_ms(reference, space, a) for a in archs])
    one = make()
    singles = np.array([one.predict_ms(a) for a in archs])
    batched = make()
    sizes, out, i = (1, 7, 64, 200), [], 0
    while i < len(archs):
        size = sizes[len(out) % len(sizes)]
        out.append(batched.predict_many(archs[i:i + size]))
        i += size
    np.testing.assert_allclose(singles, generic, rtol=1e-9, atol=0)
    np.testing.assert_allclose(np.concatenate(out), generic, rtol=1e-9, atol=0)
    # Again, now from the caches (and mixed with the one-at-a-time path's cache).
    np.testing.assert_allclose(batched.predict_many(archs[::-1]), generic[::-1], rtol=1e-9, atol=0)
    np.testing.assert_allclose([batched.predict_ms(a) for a in archs[:50]], generic[:50], rtol=1e-9, atol=0)
    for a, g in zip(archs[:50], generic[:50]):
        f = one.features(a)
        assert f == pytest.approx(_generic_terms(reference, a), rel=1e-12)
        assert isinstance(f[2], int) and len(f) == len(FEATURES)


def test_flat_grids_read_cells_from_tables_and_search_beyond_them():
    # Widths below TABLE_WIDTHS read their grid cell from a table, wider ones are searched: both agree with
    # the per-kernel grid (the generic path), on and between grid widths, both width families.
    from hwnas.latency.grids import FlatGrids

    pred = _synthetic_predictor("imagenet224", {})
    table = pred.table
    parts = [Part("conv3", cin, cout, 14, 1) for cin in (8, 16, 24, 40, 100, 2048, 3000, 16000, 20000, 40000)
             for cout in (16, 40, 96, 17000, 33000)]
    ops = [p.op for p in parts]
    cols = [np.array([getattr(p, f) for p in parts]) for f in ("cin", "cout", "resolution", "stride")]
    batch = table.many_ms(ops, *cols)
    generic = [table._group(_group_key(p), p)(p.cin, p.cout) for p in parts]
    np.testing.assert_allclose(batch, generic, rtol=1e-12)
    small = [i for i, p in enumerate(parts) if max(p.cin, p.cout) < FlatGrids.TABLE_WIDTHS]
    np.testing.assert_allclose(table.many_ms([ops[i] for i in small], *(c[small] for c in cols)),
                               [generic[i] for i in small], rtol=1e-12)


@pytest.mark.parametrize("name", ["imagenet224", "cifar32"])
def test_batch_path_stays_exact_across_cache_evictions(name):
    pred = _synthetic_predictor(name, {})  # uncalibrated: the raw sum
    space = get_space(name)
    pred.rows.limit = 40  # starts over every few batches
    archs = _mutant_stream(space, 300, seed=3)
    generic = np.array([_generic_ms(pred, space, a) for a in archs])
    got = np.concatenate([pred.predict_many(archs[i:i + 25]) for i in range(0, len(archs), 25)])
    np.testing.assert_allclose(got, generic, rtol=1e-9, atol=0)
    assert len(pred.rows) <= 40 + 25 * (max(len(a.blocks) for a in archs) + 1)
    np.testing.assert_allclose([pred.predict_ms(a) for a in archs], generic, rtol=1e-9, atol=0)


def test_batch_path_of_other_spaces_and_mixed_input_is_the_per_architecture_path():
    from hwnas.latency import Predictor
    from hwnas.latency.profile import Profile

    pred = Predictor(Profile.load("ort-cpu1-b1-nb201"))
    space = get_space("nb201")
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(20)]
    np.testing.assert_allclose(pred.predict_many(archs), [pred.predict_ms(a) for a in archs], rtol=1e-12)
    assert pred.predict_many([]).shape == (0,)


def test_block_kernels_are_block_parts_and_keep_sub_layers():
    from hwnas.models.structure import parse

    space = get_space("imagenet224")
    for text in ("SuperResK1K5K1(24,64,2,16,4)", "SuperResIDWE4K5(16,24,2,32,3)", "SuperResK3K3(40,40,1,72,5)"):
        block = parse(text).blocks[0]
        for use_se in (False, True):
            kernels = kernels_for(space).block_kernels(block, 56, use_se)
            assert [Part(*k[1:]) for k in kernels] == kernels_for(space).block_parts(block, 56, use_se)
            assert sorted({k[0] for k in kernels}) == list(range(block.sub_layers))
            two = kernels_for(space).block_kernels(block, 56, use_se, sub_layers=2)
            assert two == [k for k in kernels if k[0] < 2]
            # every sub-layer after the first has the same kernels
            later = [[k[1:] for k in kernels if k[0] == i] for i in range(1, block.sub_layers)]
            assert all(x == later[0] for x in later)


def test_many_kernels_at_once_equal_one_at_a_time():
    # Several positions and families in one call, including a family that was not measured (aligned-only
    # grid at another position) and depthwise kernels; then the stem-only position refuses other widths.
    aligned = [Part("conv5", a, b, 28, 2) for a in WIDTHS for b in WIDTHS]
    dw = [Part("dwconv3", w, w, 14, 1) for w in WIDTHS + ODD]
    stem = [Part("conv3", 3, w, 32, 1) for w in WIDTHS]
    grid = KGRID + aligned + dw + stem
    table = PartTable(_table(grid, [power_law(p) for p in grid]), block=16)
    rng = random.Random(0)
    queries = []
    for _ in range(300):
        a, b = rng.randrange(8, 400, 8), rng.randrange(8, 400, 8)
        queries += [Part("conv3", a, b, 14, 1), Part("conv5", a, b, 28, 2),
                    Part("dwconv3", b, b, 14, 1), Part("conv3", 3, b, 32, 1)]
    got = table.many_ms([q.op for q in queries], [q.cin for q in queries], [q.cout for q in queries],
                        [q.resolution for q in queries], [q.stride for q in queries])
    one = PartTable(_table(grid, [power_law(p) for p in grid]), block=16)
    np.testing.assert_allclose(got, [one.ms(q) for q in queries], rtol=1e-12, atol=0)
    with pytest.raises(ProfileError, match="only at width 3"):
        table.many_ms(["conv3", "conv3"], [3, 64], [16, 64], [32, 32], [1, 1])


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


def test_batch_path_with_one_block_object_at_other_input_sizes_and_unpickled_copies():
    # The batch path finds blocks by identity and checks the input size each was cached at: one block object
    # at 56 in one structure and at 28 in another, twice in a row in a third, and equal copies (unpickled,
    # new objects) all give the generic path's values, in one batch and across batches, in any order.
    import pickle

    from hwnas.models.structure import BASIC, Block, chain, parse

    pred = _synthetic_predictor("imagenet224", {"form": "misaligned_boundary", "coef": [0.9, 0.3, -0.01, 0.05],
                                                "predictor_version": 2})
    space = get_space("imagenet224")
    init = space.initial().blocks
    b1 = Block(BASIC, 3, 64, 64, 1, 2, 32)
    r2 = parse("SuperResK3K3(64,64,2,64,1)").blocks[0]
    a = chain([init[0], init[1], b1, *init[2:]])  # b1 at 56
    b = chain([init[0], init[1], r2, b1, *init[3:]])  # b1 at 28
    c = chain([init[0], init[1], b1, b1, *init[2:]])  # b1 twice at 56
    assert a.blocks[2] is b1 and b.blocks[3] is b1 and c.blocks[2] is c.blocks[3] is b1
    archs = [a, b, c] + _mutant_stream(space, 60, seed=2)
    archs += pickle.loads(pickle.dumps(archs[:20]))
    generic = np.array([_generic_ms(pred, space, x) for x in archs])
    for order in (archs, archs[::-1]):
        want = generic if order is archs else generic[::-1]
        np.testing.assert_allclose(pred.predict_many(order), want, rtol=1e-9, atol=0)
    fresh = _synthetic_predictor("imagenet224", {})
    raw = np.array([_generic_ms(fresh, space, x) for x in archs])
    got = [fresh.predict_many([x]) for x in (b, a, c, b)]
    got += [fresh.predict_many(archs[i:i + 9]) for i in range(0, len(archs), 9)]
    np.testing.assert_allclose(np.concatenate(got), np.concatenate([raw[[1, 0, 2, 1]], raw]), rtol=1e-9, atol=0)
    np.testing.assert_allclose([fresh.predict_ms(x) for x in archs], raw, rtol=1e-9, atol=0)


@pytest.mark.parametrize("columns_from", [1, 10**9])
def test_new_blocks_in_columns_and_one_by_one_agree(columns_from):
    pred = _synthetic_predictor("cifar32", {})
    pred.rows.columns_from = columns_from
    space = get_space("cifar32")
    archs = _mutant_stream(space, 150, seed=9)
    generic = np.array([_generic_ms(pred, space, a) for a in archs])
    got = np.concatenate([pred.predict_many(archs[i:i + 30]) for i in range(0, len(archs), 30)])
    np.testing.assert_allclose(got, generic, rtol=1e-9, atol=0)


def test_depthwise_blocks_rows_one_by_one_and_in_columns_equal_the_generic_path():
    # Inverted-residual blocks (depthwise kernels) with widths that are not multiples of the SIMD block, on
    # the full grid, under a misaligned form: the cached rows, expanded one by one and in columns, agree with
    # the per-part sum (a depthwise kernel is never a misaligned dense convolution).
    from hwnas.latency import Predictor, Profile
    from hwnas.models.structure import parse

    space = get_space("imagenet224")
    grid = list(kernels_for(space).grid_parts("full"))
    values = [1e-3 + part_features(p)[0] * 1e-8 * (1.5 if p.cin % 16 or p.cout % 16 else 1) for p in grid]
    meta = {"name": "synthetic", "space": "imagenet224", "resolution": 224, "backend": "onnxruntime",
            "settings": {"batch": 1, "precision": "fp32"}, "device": {"name": "none", "simd": ["avx512f"]},
            "calibration": {"form": "misaligned_boundary", "coef": [0.9, 0.3, -0.01, 0.05], "predictor_version": 2}}
    idw = parse("SuperConvK3BNRELU(3,24,2,1)SuperResIDWE4K5(24,40,2,24,2)SuperResIDWE2K3(40,72,2,40,3)"
                "SuperResIDWE6K7(72,136,2,72,2)SuperResIDWE1K5(136,264,2,136,1)SuperConvK1BNRELU(264,520,1,1)")
    rng = random.Random(6)
    archs = [idw]
    while len(archs) < 40:
        archs.append(space.mutate(rng.choice(archs), rng))
    for columns_from in (1, 10**9):
        pred = Predictor(Profile(table=_table(grid, values), metadata=meta))
        pred.rows.columns_from = columns_from
        generic = np.array([_generic_ms(pred, space, a) for a in archs])
        assert any(_generic_terms(pred, a)[3] > 0 for a in archs)  # misaligned time is part of the check
        np.testing.assert_allclose(pred.predict_many(archs), generic, rtol=1e-9, atol=0)
        fresh = Predictor(Profile(table=_table(grid, values), metadata=meta))
        fresh.rows.columns_from = columns_from
        np.testing.assert_allclose([fresh.predict_ms(a) for a in archs], generic, rtol=1e-9, atol=0)
