"""Profile files: round trip, and refusal of corrupted or mismatched ones."""

import json

import pandas as pd
import pytest

from hwnas.errors import ProfileError
from hwnas.latency.profile import SCHEMA_VERSION, Profile, default_profile_name, list_profiles


def _profile():
    table = pd.DataFrame([
        {"op": "nb201:nor_conv_3x3", "cin": 16, "cout": 16, "resolution": 32, "stride": 1, "mid": 0,
         "first": False, "se": False, "extra": "", "median_ms": 0.25, "p10_ms": 0.24, "p90_ms": 0.27,
         "repeats": 25, "raw_median_ms": 0.26},
        {"op": "nb201:stem", "cin": 3, "cout": 16, "resolution": 32, "stride": 1, "mid": 0, "first": False,
         "se": False, "extra": "", "median_ms": 0.05, "p10_ms": 0.04, "p90_ms": 0.06, "repeats": 25,
         "raw_median_ms": 0.05},
    ])
    meta = {"name": "toy", "space": "nb201", "resolution": 32, "backend": "onnxruntime",
            "settings": {"device": "cpu", "threads": 1, "batch": 1, "precision": "fp32"},
            "device": {"kind": "cpu", "name": "test cpu"}, "versions": {"onnxruntime": "x"},
            "date": "2026-01-01T00:00:00+00:00", "grid": "coarse",
            "calibration": {"form": "affine", "coef": [1.0, 0.0], "predictor_version": 2}}
    return Profile(table=table, metadata=meta)


def test_round_trip(tmp_path):
    p = _profile()
    p.save(tmp_path / "toy")
    q = Profile.load(tmp_path / "toy")
    assert q.hash == p.hash and len(q.hash) == 64
    assert q.metadata["schema_version"] == SCHEMA_VERSION
    assert (q.space, q.backend, q.batch, q.precision, q.resolution) == ("nb201", "onnxruntime", 1, "fp32", 32)
    pd.testing.assert_frame_equal(q.table, p.table)
    assert Profile.load(tmp_path / "toy" / "metadata.json").hash == p.hash


def test_edited_table_is_refused(tmp_path):
    _profile().save(tmp_path / "toy")
    t = pd.read_parquet(tmp_path / "toy" / "table.parquet")
    t.loc[0, "median_ms"] *= 1.5
    t.to_parquet(tmp_path / "toy" / "table.parquet", index=False)
    with pytest.raises(ProfileError, match="hash mismatch"):
        Profile.load(tmp_path / "toy")


def test_truncated_table_is_refused(tmp_path):
    _profile().save(tmp_path / "toy")
    f = tmp_path / "toy" / "table.parquet"
    f.write_bytes(f.read_bytes()[:40])
    with pytest.raises(ProfileError, match="unreadable table.parquet"):
        Profile.load(tmp_path / "toy")


def _saved_with_edited_metadata(tmp_path, edit):
    """Save a toy profile, apply ``edit`` to its metadata dict, write it back; the metadata path."""
    _profile().save(tmp_path / "toy")
    f = tmp_path / "toy" / "metadata.json"
    meta = json.loads(f.read_text())
    edit(meta)
    f.write_text(json.dumps(meta))
    return f


def test_edited_metadata_is_refused(tmp_path):
    _saved_with_edited_metadata(tmp_path, lambda meta: meta["settings"].update(batch=64))
    with pytest.raises(ProfileError, match="hash mismatch"):
        Profile.load(tmp_path / "toy")


def test_other_schema_version_is_refused(tmp_path):
    _saved_with_edited_metadata(tmp_path, lambda meta: meta.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(ProfileError, match="schema version"):
        Profile.load(tmp_path / "toy")


def test_missing_metadata_key_and_bad_json(tmp_path):
    f = _saved_with_edited_metadata(tmp_path, lambda meta: meta.pop("device"))
    with pytest.raises(ProfileError, match="lacks device"):
        Profile.load(tmp_path / "toy")
    f.write_text("{not json")
    with pytest.raises(ProfileError, match="unreadable metadata.json"):
        Profile.load(tmp_path / "toy")


def test_unknown_profile_name():
    with pytest.raises(ProfileError, match="no profile 'no-such-profile'"):
        Profile.load("no-such-profile")


def test_defaults_and_listing():
    assert default_profile_name() == default_profile_name("imagenet224")
    with pytest.raises(ProfileError):
        default_profile_name("no-such-space")
    for row in list_profiles():  # every shipped profile loads and checks
        assert Profile.load(row["name"]).space == row["space"]


# A fixed host, so that what fits does not depend on the machine running the tests.
HOST = {"kind": "cpu", "name": "Test CPU 9000", "logical_cores": 8, "usable_cores": 4,
        "simd": ["fma", "avx2", "avx_vnni"],
        "isa_checked": ["fma", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
                        "amx_int8", "amx_bf16"]}


@pytest.fixture
def host(monkeypatch):
    from hwnas.latency import device

    monkeypatch.setattr(device, "cpu_info", lambda: dict(HOST))
    monkeypatch.setattr(device, "library_versions", lambda: {"onnxruntime": "1.0"})


def _on(device, threads=1, ort="1.0"):
    p = _profile()
    p.metadata.update(device=device, versions={"onnxruntime": ort})
    p.metadata["settings"]["threads"] = threads
    return p


def test_same_cpu_fits_and_older_metadata_compares_what_it_recorded(host):
    from hwnas.latency.device import host_differences

    assert host_differences(_on(dict(HOST)).metadata) == []
    # recorded before "isa_checked": only the flags looked for then count (avx_vnni was not among them)
    old = {"kind": "cpu", "name": HOST["name"], "simd": ["fma", "avx2"]}
    assert host_differences(_on(old).metadata) == []
    assert host_differences(_on({"kind": "cpu", "name": HOST["name"]}).metadata) == []  # no ISA recorded at all


def test_same_model_string_other_isa_is_another_device(host):
    from hwnas.latency.device import host_differences

    avx512 = {**HOST, "simd": ["fma", "avx2", "avx512f", "avx512_vnni"]}
    assert host_differences(_on(avx512).metadata) == [
        "this machine lacks avx512f, avx512_vnni", "this machine has avx_vnni, the profiled CPU did not"]


def test_same_model_string_other_cpuid_family_is_another_device(host, monkeypatch):
    from hwnas.latency import device

    zen5 = {**HOST, "cpu_family": 26, "cpu_model": 2}
    monkeypatch.setattr(device, "cpu_info", lambda: dict(zen5))
    assert device.host_differences(_on(dict(zen5)).metadata) == []
    assert device.host_differences(_on({**zen5, "cpu_family": 25, "cpu_model": 17}).metadata) == [
        "this machine's CPU is family 26 model 2, the profiled CPU's family 25 model 17"]
    assert device.host_differences(_on(dict(HOST)).metadata) == []  # recorded before CPUID numbers were


def test_cpu_info_reads_the_cpuid_numbers_of_proc_cpuinfo():
    from hwnas.latency.device import cpu_info

    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo on this system")
    first = text.split("\n\n")[0].splitlines()
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first)}
    if "cpu family" not in fields:
        pytest.skip("this /proc/cpuinfo has no x86 'cpu family' field")
    info = cpu_info()
    assert (info["cpu_family"], info["cpu_model"]) == (int(fields["cpu family"]), int(fields["model"]))


def test_check_names_every_difference_in_one_line_with_what_to_do(host):
    from hwnas.models.spaces.base import get_space

    p = _on({**HOST, "name": "Other CPU", "logical_cores": 2, "simd": ["fma", "avx2", "avx512f", "avx_vnni"]},
            threads=6, ort="0.9")
    with pytest.raises(ProfileError) as err:
        p.check(space=get_space("cifar32"), batch=8, host=True)
    message = str(err.value)
    assert "\n" not in message and message.startswith("profile toy does not fit: ")
    for part in ("space 'nb201'", "pass --space nb201", "batch 1, latency is asked at batch 8",
                 "measured on Other CPU (2 cores, fma avx2 avx512f avx_vnni)", "this machine has Test CPU 9000",
                 "8 cores, not 2", "lacks avx512f", "6 threads, this machine may use 4 cores",
                 "onnxruntime 0.9, this machine has onnxruntime 1.0", "cannot be measured here",
                 "profile-device --cpu --backend onnxruntime --threads 6 --batch 1 --space nb201 "
                 "--out local-profiles/ort-cpu6-b1-nb201"):
        assert part in message, part
    p.check(space=get_space("nb201"), batch=1)  # without host, the device is not asked about
    with pytest.raises(ProfileError, match="cannot be re-measured here"):
        p.check(host=True, doing="re-measured")


def test_for_space_loads_the_spaces_default_and_checks_it():
    from hwnas.models.spaces.base import get_space

    assert Profile.for_space(get_space("nb201")).name == default_profile_name("nb201")
    with pytest.raises(ProfileError, match="pass --space imagenet224"):
        Profile.for_space(get_space("nb201"), default_profile_name("imagenet224"))


def test_names_and_per_device_defaults():
    from hwnas.latency.device import default_settings
    from hwnas.latency.profile import profile_name

    cpu = default_settings("cpu", "onnxruntime", threads=2)
    assert cpu == {"device": "cpu", "precision": "fp32", "batch": 1, "threads": 2}
    gpu = default_settings("cuda", "torch")
    assert gpu == {"device": "cuda", "precision": "fp16", "batch": 64, "cuda_graphs": False}
    assert profile_name("onnxruntime", cpu, "cifar32") == "ort-cpu2-b1-cifar32"
    assert profile_name("tensorrt", default_settings("cuda", "tensorrt"), "imagenet224", "Tesla V100") == \
        "trt-teslav100-fp16-b64-imagenet224"


def test_listing_says_which_device_and_whether_it_fits_here():
    from hwnas.latency.device import host_differences

    for row in list_profiles():
        meta = Profile.load(row["name"]).metadata
        dev = meta["device"]
        name = dev["name"] + (f" family {dev['cpu_family']} model {dev['cpu_model']}" if "cpu_family" in dev else "")
        assert (row["device"], row["isa"], row["threads"]) == (name, dev.get("simd"), meta["settings"].get("threads"))
        imported = meta.get("source", {}).get("kind") == "imported"
        assert row["source"].startswith("imported: " if imported else "measured by profile-device")
        assert row["host_differences"] == host_differences(meta) and row["fits_host"] == (not host_differences(meta))


@pytest.mark.parametrize("name", ["ort-cpu1-b1-imagenet224-avx2", "ort-cpu1-b1-imagenet224-zen5"])
def test_a_shipped_imagenet_profile_covers_every_position_of_the_grid_idw_included(name):
    """Every (op, stride, resolution, first, se) position the decomposition's grid holds, the depthwise kernels of
    the ZenNet zoo's inverted-residual blocks among them, is in the shipped -avx2 and -zen5 profiles; the zoo
    predicts."""
    from hwnas.cli.resolve import resolve_arch
    from hwnas.latency.kernels import kernels_for
    from hwnas.latency.predictor import Predictor
    from hwnas.models.spaces.base import get_space

    prof = Profile.load(name)
    position = lambda p: (p.op, p.stride, p.resolution, p.first, p.se)  # noqa: E731
    grid = {position(p) for p in kernels_for(get_space("imagenet224")).grid_parts("coarse")}
    table = set(prof.table[["op", "stride", "resolution", "first", "se"]].itertuples(index=False, name=None))
    assert any(op.startswith("dwconv") for op, *_ in grid)
    assert grid <= table, sorted(grid - table)[:5]
    pred = Predictor(prof)
    for name in ("flops400M", "flops600M", "flops900M"):
        assert pred.predict_ms(resolve_arch(name, space="imagenet224").arch) > 0
