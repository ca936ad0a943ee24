"""The ZenNet zoo: published table reproduced, noted rows as their notes say, packaged data identical."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from hwnas.models import zoo
from hwnas.models.builder import build
from hwnas.models.counts import count
from hwnas.models.describe import zoo_table

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
MODELS = list(zoo.models().values())
PLAIN = [m for m in MODELS if not m.table_note]
NOTED = [m for m in MODELS if m.table_note]


def test_zoo_has_fifteen_models_twelve_plain():
    assert len(MODELS) == 15 and len(PLAIN) == 12 and len(NOTED) == 3


@pytest.mark.parametrize("m", PLAIN, ids=lambda m: m.name)
def test_plain_rows_within_two_percent(m):
    c = count(m.structure, m.resolution, m.num_classes, use_se=m.counted_with_se)
    assert c.params / 1e6 == pytest.approx(m.params_m, rel=0.02)
    assert c.flops / 1e6 == pytest.approx(m.flops_m, rel=0.02)


def _about(note: str) -> float:
    return float(re.search(r"about ([0-9.]+)M", note).group(1))


@pytest.mark.parametrize("m", NOTED, ids=lambda m: m.name)
def test_noted_rows_match_their_note(m):
    c = count(m.structure, m.resolution, m.num_classes, use_se=m.counted_with_se)
    if m.table_note.startswith("params_M"):
        # the figure repeats the CIFAR-10 row; the 100-class classifier adds the stated parameters
        added = int(re.search(r"adds ([0-9,]+) parameters", m.table_note).group(1).replace(",", ""))
        ten = count(m.structure, m.resolution, 10, use_se=m.counted_with_se)
        assert c.params - ten.params == added == (100 - 10) * (m.structure.out_channels + 1)
        assert c.params / 1e6 == pytest.approx(_about(m.table_note), abs=0.0005)
        assert ten.params / 1e6 == pytest.approx(m.params_m, rel=0.02)
        assert c.flops / 1e6 == pytest.approx(m.flops_m, rel=0.02)
    else:
        assert m.table_note.startswith("flops_M")
        assert c.flops / 1e6 == pytest.approx(_about(m.table_note), abs=0.5)
        assert c.params / 1e6 == pytest.approx(m.params_m, rel=0.02)


@pytest.mark.parametrize("m", MODELS, ids=lambda m: m.name)
def test_zoo_counts_equal_the_built_module_with_and_without_se(m):
    for use_se in (False, True):
        with torch.device("meta"):
            net = build(m.structure, num_classes=m.num_classes, use_se=use_se)
        params = sum(p.numel() for p in net.parameters())
        assert params == count(m.structure, m.resolution, m.num_classes, use_se=use_se).params


def test_se_rows_are_counted_as_the_reference_says():
    se = {m.name: m.counted_with_se for m in MODELS if m.use_se}
    assert se == {"zennet_imagenet1k_flops400M_SE_res224": False, "zennet_imagenet1k_flops600M_SE_res224": False,
                  "zennet_imagenet1k_flops900M_SE_res224": True}


def test_zoo_table_rows():
    rows = zoo_table()
    assert [r["name"] for r in rows] == [m.name for m in MODELS]
    for r in rows:
        if not r["table_note"]:
            assert abs(r["params_delta_pct"]) < 2 and abs(r["flops_delta_pct"]) < 2


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared/reference is not present beside this checkout")
@pytest.mark.parametrize("folder", ["zennet", "nasbench201"])
def test_packaged_data_equals_reference_byte_for_byte(folder):
    packaged = ROOT / "models" / "data" / folder
    reference = REFERENCE / folder
    names = sorted(p.name for p in reference.iterdir() if p.is_file())
    assert sorted(p.name for p in packaged.iterdir() if p.is_file()) == names
    for name in names:
        assert (packaged / name).read_bytes() == (reference / name).read_bytes(), name
