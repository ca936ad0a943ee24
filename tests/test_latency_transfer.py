"""Quick profiles: stratified part samples, the ratio model carried over, and a real tiny quick profile."""

import math

import numpy as np
import pytest

from hwnas.latency import profiler, transfer
from hwnas.latency.kernels import Part
from hwnas.latency.part_table import part_features
from hwnas.latency.predictor import Predictor
from hwnas.latency.profile import PART_COLUMNS, Profile, _source
from hwnas.models.spaces.base import get_space

FAST = {"device": "cpu", "threads": 1, "batch": 1, "warmup": 1, "repeats": 3, "min_sample_ms": 0.05}


@pytest.fixture(scope="module")
def source():
    return Profile.load("ort-cpu1-b1-cifar32")


def _parts(table):
    return [Part(**dict(zip(PART_COLUMNS, row))) for row in table[PART_COLUMNS].itertuples(index=False, name=None)]


def _position(p):
    return p.op, p.stride, p.resolution, p.mid, p.first, p.se, p.extra


def test_stratified_parts_cover_every_position_and_spread_over_sizes(source):
    parts = _parts(source.table)
    chosen = transfer.stratified_parts(source.table, 300, seed=0)
    assert set(chosen) <= set(parts) and len(set(chosen)) == len(chosen)
    positions = {_position(p) for p in parts}
    assert {_position(p) for p in chosen} == positions
    assert len(positions) <= len(chosen) <= 300 + len(positions)
    assert chosen == transfer.stratified_parts(source.table, 300, seed=0)
    # within a large position the picks span its range of MACs (not all from one end)
    big = max(positions, key=lambda pos: sum(_position(p) == pos for p in parts))
    macs = sorted(part_features(p)[0] for p in parts if _position(p) == big)
    picked = sorted(part_features(p)[0] for p in chosen if _position(p) == big)
    assert len(picked) >= 3
    assert picked[0] <= macs[len(macs) // 4] and picked[-1] >= macs[3 * len(macs) // 4]


def _known_ratio(p: Part) -> float:
    """A machine whose parts run at a ratio to the source's that depends on op, size and alignment."""
    macs, inp, outp = part_features(p)
    dense = p.op.startswith("conv") and p.cin > 3
    slow = dense and (p.cin % 8 or p.cout % 8)
    return math.exp(0.4 * (p.op == "conv1") - 0.2 * (p.op == "conv7") + 0.05 * math.log(macs)
                    - 0.03 * math.log(outp) + 0.3 * bool(slow) + 0.1 * (p.stride == 2))


def test_transfer_recovers_a_ratio_of_its_form_on_parts_it_was_not_fitted_on(source):
    table = source.table
    parts = _parts(table)
    fitted = transfer.stratified_parts(table, 400, seed=1)
    src = dict(zip(parts, table.median_ms.astype(float)))
    t = transfer.Transfer(block=8)
    fit = t.fit(fitted, np.array([src[p] for p in fitted]), np.array([src[p] * _known_ratio(p) for p in fitted]))
    assert fit["loo_within_10pct"] == 1.0
    held_out = [p for p in parts if p not in set(fitted)][::7]
    got = t.ratio(held_out)
    want = np.array([_known_ratio(p) for p in held_out])
    assert np.max(np.abs(got / want - 1)) < 0.02


def test_a_position_that_runs_faster_than_the_features_say_is_learned_from_its_timed_parts(source, monkeypatch):
    table = source.table
    parts = _parts(table)
    positions = [_position(p) for p in parts]
    odd = max(set(positions), key=positions.count)  # the position with the most parts runs 1.3x as slow
    ratio = {p: _known_ratio(p) * (1.3 if _position(p) == odd else 1.0) for p in parts}
    fitted = transfer.stratified_parts(table, 400, seed=1)
    src = dict(zip(parts, table.median_ms.astype(float)))
    held_out = [p for p in parts if p not in set(fitted) and _position(p) == odd]
    want = np.array([ratio[p] for p in held_out])
    errors, shipped = {}, transfer.POSITION_SHRINK
    for shrink in (shipped, math.inf):  # with the position offsets, and the regression alone
        monkeypatch.setattr(transfer, "POSITION_SHRINK", shrink)
        t = transfer.Transfer(block=8)
        t.fit(fitted, np.array([src[p] for p in fitted]), np.array([src[p] * ratio[p] for p in fitted]))
        errors[shrink] = np.abs(t.ratio(held_out) / want - 1)
    picked = sum(_position(p) == odd for p in fitted)
    assert picked >= 5
    # the offset: the position's mean log residual (about log 1.3), shrunk by picked / (picked + POSITION_SHRINK)
    assert np.median(errors[shipped]) < 0.06 < np.median(errors[math.inf])


def test_transfer_table_keeps_measured_parts_and_scales_the_rest(source):
    table = source.table
    measured = table.iloc[::20].copy()
    measured["median_ms"] = measured.median_ms * 1.7  # this machine: 1.7x the source everywhere
    measured["repeats"] = 25
    out, fit = transfer.transfer_table(table, measured, block=8)
    assert len(out) == len(table)
    assert fit["median_ratio"] == pytest.approx(1.7)
    by_part = dict(zip(map(tuple, out[PART_COLUMNS].itertuples(index=False)), out.median_ms))
    for row in measured.itertuples(index=False):
        assert by_part[tuple(getattr(row, c) for c in PART_COLUMNS)] == row.median_ms
    others = out[out.repeats == 0]
    assert len(others) == len(table) - len(measured)
    src = dict(zip(map(tuple, table[PART_COLUMNS].itertuples(index=False)), table.median_ms))
    ratios = [ms / src[tuple(getattr(r, c) for c in PART_COLUMNS)] for r, ms in
              zip(others.itertuples(index=False), others.median_ms)]
    assert np.allclose(ratios, 1.7, rtol=1e-9)


def test_a_real_quick_profile_carries_the_source_over_and_fits_this_host(source, tmp_path, monkeypatch):
    stratified = transfer.stratified_parts
    monkeypatch.setattr(transfer, "stratified_parts", lambda table, k, seed: stratified(table, k, seed)[::25])
    out = tmp_path / "quick"
    prof = profiler.profile_device("cifar32", "onnxruntime", FAST, out, networks=4, quick_from=source)
    meta = prof.metadata
    src = meta["source"]
    assert src["kind"] == "quick" and src["from"] == source.name and src["from_hash"] == source.hash
    assert src["networks_measured"] == 4 and src["parts_measured"] == len(stratified(source.table, transfer.QUICK_PARTS, 0)[::25])
    assert (prof.table.repeats > 0).sum() == src["parts_measured"]
    assert len(prof.table) == len(source.table)
    assert meta["device"]["name"] and meta["calibration"]["form"]
    prof.check(host=True)  # measured here: it fits this machine
    space = get_space("cifar32")
    arch = space.initial()
    assert math.isfinite(Predictor(Profile.load(out)).predict_ms(arch))
    assert _source(meta).startswith(f"quick profile, ") and source.name in _source(meta)


def test_a_quick_profile_refuses_a_source_of_another_space(source, tmp_path):
    from hwnas.errors import ProfileError

    with pytest.raises(ProfileError, match="space 'cifar32', not 'imagenet224'"):
        profiler.profile_device("imagenet224", "onnxruntime", FAST, tmp_path / "q", networks=4, quick_from=source)
    assert not (tmp_path / "q").exists()
