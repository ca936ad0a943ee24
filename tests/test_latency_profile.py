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
