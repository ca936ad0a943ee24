"""Published measurements imported as profiles: the TinyNAS V100 tables."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from hwnas.errors import ProfileError
from hwnas.latency.profile import Profile, shipped_dir
from hwnas.latency.sources import get_source, import_profile, save_imported, source_names
from hwnas.latency.sources.tinynas import at_size, read_table

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "tinynas-v100"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared/reference/tinynas-v100 is not here")
SHIPPED = ("trt-v100-fp16-b64-imagenet224", "trt-v100-int8-b64-imagenet224", "zennas-v100-fp16-b64-imagenet224")


def _row(kind, batch, cin, size, cout, kernel, stride, fused, ms):
    return f"{{{kind},{batch},{cin},{size},{size},{cout},{kernel},{stride},{fused}}} {ms}\n"


def _power_law_table(folder: Path) -> Path:
    """A synthetic table: ms = 1e-6 · cin · cout · size² · k² (a power law, so log-log interpolation is exact)."""
    lines = []
    for kind, kernels in (("Regular", (1, 3, 5, 7)), ("Depthwise", (3, 5, 7))):
        for k in kernels:
            for stride in (1, 2):
                for size in (5, 6, 8, 12, 14, 20, 26, 32, 42, 56, 74, 96, 126, 164, 214, 280):
                    for cin in ((3, 8, 16, 32, 64, 128, 256, 512, 1024, 2048) if kind == "Regular" else (8, 16, 64, 256, 1024)):
                        for cout in ((8, 16, 32, 64, 128, 256, 512, 1024, 2048) if kind == "Regular" else (cin,)):
                            ms = 1e-6 * (cin if kind == "Regular" else 1) * cout * size * size * k * k
                            lines.append(_row(kind, 64, cin, size, cout, k, stride, 0, ms))
    lines.append(_row("Regular", 64, 8, 56, 8, 3, 1, 0, -1))  # a failed measurement: dropped
    path = folder / "conv_data.out.fp16"
    path.write_text("".join(lines))
    (folder / "LICENSE").write_text("license text\n")
    return path


def test_source_registry_lists_tinynas_and_refuses_unknown():
    assert "tinynas" in source_names()
    with pytest.raises(ProfileError, match="unknown profile source"):
        get_source("nope")


def test_read_table_parses_rows_and_names_a_bad_line(tmp_path):
    path = tmp_path / "t.out"
    path.write_text(_row("Regular", 64, 16, 56, 32, 3, 1, 0, 0.25) + _row("Depthwise", 1, 8, 7, 8, 5, 2, 0, -1))
    table = read_table(path)
    assert len(table) == 1
    row = table.iloc[0]
    assert (bool(row.depthwise), row.batch, row.cin, row.hw, row.cout, row.kernel, row.stride, row.ms) == \
        (False, 64, 16, 56, 32, 3, 1, 0.25)
    path.write_text(_row("Regular", 64, 16, 56, 32, 3, 1, 0, 0.25) + "garbage\n")
    with pytest.raises(ProfileError, match=r"t.out:2: not a TinyNAS row"):
        read_table(path)
    with pytest.raises(ProfileError, match="not a file"):
        read_table(tmp_path)


def test_at_size_is_exact_on_a_power_law_and_refuses_outside():
    sizes = np.log([5.0, 8.0, 14.0, 32.0])
    ms = np.log(3e-4 * np.exp(sizes) ** 2)
    assert at_size(sizes, ms, 7) == pytest.approx(3e-4 * 49, rel=1e-12)
    assert at_size(sizes, ms, 14) == pytest.approx(3e-4 * 196, rel=1e-12)
    assert at_size(sizes, ms, 4) is None and at_size(sizes, ms, 33) is None


def test_import_of_a_power_law_predicts_off_grid_sizes_exactly(tmp_path):
    """224, 112, 28 and 7 are off the published size grid; on a power law the import is exact there, and the
    predictor's sum over a network's convolutions equals the closed form."""
    from hwnas.latency import Predictor
    from hwnas.latency.kernels import conv_spec, kernels_for
    from hwnas.models.spaces.base import get_space

    path = _power_law_table(tmp_path)
    profile = get_source("tinynas")(path, precision="fp16", batch=64, space="imagenet224", holdout_sample=20)
    src = profile.metadata["source"]
    assert src["kind"] == "imported" and src["uncovered_positions"] == []
    assert set(src["interpolated_sizes"]) == {7, 28, 112, 224}
    assert src["holdout"]["size"]["max_abs_pct"] < 1e-6  # a power law is recovered exactly
    space = get_space("imagenet224")
    arch = space.initial()
    expected = 0.0
    parts = kernels_for(space).parts(arch)
    for part in parts:
        spec = conv_spec(part)
        if spec is None:
            continue  # the head: modelled, checked below
        kernel, groups = spec
        expected += 1e-6 * (part.cin if groups == 1 else 1) * part.cout * part.resolution ** 2 * kernel ** 2
    head = next(p for p in parts if p.op == "head")
    expected += 1e-6 * head.cin * head.cout * 25  # the 1x1 stand-in on the 5x5 map
    predicted = Predictor(profile).predict_batch_ms(arch)
    assert predicted == pytest.approx(expected, rel=1e-6)


def test_import_refuses_bad_options_and_a_missing_license(tmp_path):
    path = _power_law_table(tmp_path)
    build = get_source("tinynas")
    with pytest.raises(ProfileError, match="takes no option --device; its options: --precision"):
        import_profile("tinynas", path, device="pixel3")
    with pytest.raises(ProfileError, match="batch 7 was not published"):
        build(path, batch=7)
    with pytest.raises(ProfileError, match="no unfused rows at batch 32"):
        build(path, batch=32)
    with pytest.raises(ProfileError, match="ZenNAS convention is FP16 at batch 64"):
        build(path, precision="int8", convention="zennas")
    (tmp_path / "LICENSE").unlink()
    with pytest.raises(ProfileError, match="no LICENSE beside"):
        build(path)


def test_saved_import_loads_and_carries_the_license(tmp_path):
    (tmp_path / "src").mkdir()
    path = _power_law_table(tmp_path / "src")
    profile = get_source("tinynas")(path, holdout_sample=20)
    target = save_imported(profile, tmp_path / "p", path)
    assert (target / "LICENSE").read_text() == "license text\n"
    loaded = Profile.load(target)
    assert loaded.metadata["source"]["file"] == "conv_data.out.fp16"
    assert loaded.backend == "tensorrt" and loaded.batch == 64 and loaded.precision == "fp16"
    with pytest.raises(ProfileError, match="already holds a profile"):
        save_imported(profile, target, path)


@needs_reference
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_imports_carry_the_upstream_license_and_notice(name):
    folder = shipped_dir() / name
    for license_file in ("LICENSE", "NOTICE"):
        assert (folder / license_file).read_bytes() == (REFERENCE / license_file).read_bytes()
    profile = Profile.load(name)
    src = profile.metadata["source"]
    assert src["kind"] == "imported" and src["license"] == "Apache-2.0"
    assert profile.metadata["device"]["name"] == "Tesla V100"


@needs_reference
def test_shipped_fp16_table_equals_a_fresh_import(tmp_path):
    shipped = Profile.load("trt-v100-fp16-b64-imagenet224")
    fresh = get_source("tinynas")(REFERENCE / "conv_data.out.fp16", precision="fp16", batch=64, holdout_sample=10)
    cols = ["op", "cin", "cout", "resolution", "stride"]
    a = shipped.table.sort_values(cols).reset_index(drop=True)
    b = fresh.table.sort_values(cols).reset_index(drop=True)[a.columns]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    np.testing.assert_allclose(a.median_ms, b.median_ms, rtol=1e-12)


@needs_reference
def test_published_rows_are_in_the_table_where_the_size_is_on_the_grid():
    """A published unfused batch-64 row at a size the space uses (56, 14) is the profile's value as it is."""
    rows = read_table(REFERENCE / "conv_data.out.fp16")
    rows = rows[(rows.batch == 64) & (rows.fused == 0) & (~rows.depthwise) & (rows.kernel == 3) & (rows.stride == 1)
                & (rows.hw == 56)]
    table = Profile.load("trt-v100-fp16-b64-imagenet224").table
    ours = table[(table.op == "conv3") & (table.stride == 1) & (table.resolution == 56)]
    merged = rows.merge(ours, on=["cin", "cout"])
    assert len(merged) == len(rows) > 10
    np.testing.assert_allclose(merged.median_ms, merged.ms, rtol=1e-9)


def test_zennas_convention_is_calibrated_on_the_published_zoo():
    """The ZenNAS-convention profile predicts the published ZenNet latencies it was calibrated on (no SE) within
    its stated leave-one-out error, and says what it was fitted on."""
    from hwnas.latency import Predictor
    from hwnas.models import zoo

    profile = Profile.load("zennas-v100-fp16-b64-imagenet224")
    cal = profile.calibration
    assert "published ZenNet latencies" in cal["fitted_on"]
    assert cal["forms"][cal["form"]]["loo_within_10pct"] == 1.0
    predictor = Predictor(profile)
    nets = [m for m in zoo.models().values() if m.latency_ms_v100_fp16_b64 and m.resolution == 224 and not m.use_se]
    assert len(nets) == 6
    for m in nets:
        assert math.isclose(predictor.predict_ms(m.structure), m.latency_ms_v100_fp16_b64, rel_tol=0.10)


def test_cli_import_writes_a_profile_and_refuses_to_overwrite(tmp_path):
    from hwnas.cli.main import cli

    path = _power_law_table(tmp_path)
    out = tmp_path / "imported"
    runner = CliRunner()
    result = runner.invoke(cli, ["profiles", "import", "tinynas", str(path), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert Profile.load(out).metadata["source"]["format"] == "tinynas"
    shutil.copyfile(out / "metadata.json", tmp_path / "keep.json")
    result = runner.invoke(cli, ["profiles", "import", "tinynas", str(path), "--out", str(out)])
    assert result.exit_code != 0 and "already holds a profile" in str(result.exception or result.output)
    assert (out / "metadata.json").read_bytes() == (tmp_path / "keep.json").read_bytes()


HWNB = REFERENCE.parent / "hw-nas-bench"


@pytest.mark.skipif(not HWNB.is_dir(), reason="../shared/reference/hw-nas-bench is not here")
def test_hwnasbench_profile_looks_cells_up_and_never_accepts_rejected_ones(tmp_path):
    """Every cell's prediction is its published figure (read here straight from the CSV); Edge TPU cells the
    compiler rejected (-1) are infinite."""
    from hwnas.latency import Predictor
    from hwnas.models.spaces.base import get_space

    csv = pd.read_csv(HWNB / "latency.csv")
    space = get_space("nb201")
    cells = [space.parse(a) for a in csv.arch[:300]]
    for device in ("pixel3", "edgetpu"):
        profile = import_profile("hw-nas-bench", HWNB / "latency.csv", device=device, dataset="cifar10")
        assert profile.metadata["source"]["license"] == "MIT"
        loaded = Profile.load(save_imported(profile, tmp_path / device, HWNB / "latency.csv"))
        predicted = Predictor(loaded).predict_many(cells)
        published = csv[f"cifar10_{device}_latency_ms"].to_numpy()[:300]
        ok = published > 0
        np.testing.assert_allclose(predicted[ok], published[ok], rtol=1e-12)
        assert np.isinf(predicted[~ok]).all()
        assert (device == "edgetpu") == bool((~ok).any())
    with pytest.raises(ProfileError, match="unknown HW-NAS-Bench device"):
        import_profile("hw-nas-bench", HWNB / "latency.csv", device="tpu9")


@pytest.mark.parametrize("name", ["hwnasbench-pixel3-b1-nb201", "trt-v100-fp16-b64-imagenet224"])
def test_an_imported_profile_refuses_measuring_here_in_one_line(name):
    """Nothing is measured for a device hwnas only has published figures of; the refusal says so (no
    profile-device command: that would profile this machine, not the published device)."""
    profile = Profile.load(name)
    if profile.metadata["device"]["name"].lower() in ("google pixel 3", "tesla v100"):
        with pytest.raises(ProfileError, match="published measurements of .* imported, and this machine is not"):
            profile.check(host=True)
