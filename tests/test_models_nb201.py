"""The NAS-Bench-201 space: parse/format, params and FLOPs against the benchmark's table, modules, parts."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hwnas.errors import StructureError
from hwnas.models.spaces.base import get_space
from hwnas.models.spaces.nb201 import EDGES, OPS, Cell, accuracy_table, all_cells, parse_cell
from hwnas.latency.kernels import kernels_for

SPACE = get_space("nb201")
TABLE = accuracy_table()


def numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_table_has_every_cell_once():
    assert len(TABLE) == 15625 == len(all_cells())
    assert set(TABLE["arch"]) == {str(c) for c in all_cells()}


def test_every_string_round_trips_and_counts_reproduce_params_and_flops_exactly():
    for arch, params_m, flops_m in zip(TABLE["arch"], TABLE["params_M"], TABLE["flops_M"]):
        cell = parse_cell(arch)
        assert str(cell) == arch
        c = SPACE.counts(cell)
        assert round(c.params / 1e6, 6) == params_m
        assert round(c.flops / 1e6, 6) == pytest.approx(flops_m, abs=1e-6)


@pytest.mark.parametrize("index", random.Random(0).sample(range(15625), 25) + [0, 9930, 11472])
def test_built_module_matches_csv_and_flop_counter(index):
    row = TABLE.iloc[index]
    cell = SPACE.parse(row["arch"])
    net = SPACE.build(cell).eval()
    assert numel(net) == SPACE.counts(cell).params
    assert round(numel(net) / 1e6, 6) == row["params_M"]
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        y = net(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10)
    assert counter.get_total_flops() == 2 * 2 * SPACE.counts(cell).conv_linear_macs


@pytest.mark.parametrize("name,classes,res", [("nb201-cifar100", 100, 32), ("nb201-imagenet16", 120, 16)])
def test_other_datasets_change_the_head_and_input_as_the_benchmark(name, classes, res):
    space = get_space(name)
    cell = SPACE.parse(TABLE["arch"][9930])
    base = SPACE.counts(cell)
    c = space.counts(cell)
    assert c.params - base.params == 65 * (classes - 10)
    net = space.build(cell).eval()
    assert numel(net) == c.params
    with torch.no_grad():
        assert net(torch.randn(1, 3, res, res)).shape == (1, classes)
    if res == 16:
        assert c.flops / 1e6 == pytest.approx((base.flops / 1e6 - 0.00065) / 4 + 0.0078, abs=1e-9)


def test_forward_features_shape_and_no_residual():
    cell = SPACE.parse("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|")
    net = SPACE.build(cell)
    assert net.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 64, 8, 8)
    plain = SPACE.build(cell, no_residual=True)
    assert numel(net) - numel(plain) == 16 * 32 + 32 * 64  # the two reductions' 1x1 shortcut convs
    assert plain(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_none_edges_give_zeros():
    cell = Cell(("none",) * 6)
    net = SPACE.build(cell).eval()
    with torch.no_grad():
        out = net.layers[1](torch.randn(1, 16, 8, 8))  # first cell
    assert torch.count_nonzero(out) == 0


BAD = [
    ("nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", 0, "expected '|'"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", 1, "unknown operation 'conv'"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", 5, "must read 'none~0'"),
    ("|none~0|+|none~0|none~1|", 24, "expected '+'"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|x", 47, "expected the end"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2", 40, "end of string"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", 17, "unknown operation '+'"),
    ("", 0, "expected '|'"),
]


@pytest.mark.parametrize("text,position,words", BAD)
def test_parse_errors_name_the_position(text, position, words):
    with pytest.raises(StructureError) as info:
        parse_cell(text)
    assert info.value.position == position
    assert words in str(info.value)


def test_mutate_changes_exactly_one_edge_and_is_seeded():
    rng = random.Random(0)
    cell = SPACE.initial()
    for _ in range(200):
        child = SPACE.mutate(cell, rng)
        assert sum(a != b for a, b in zip(cell.ops, child.ops)) == 1
        assert SPACE.parse(SPACE.format(child)) == child
        cell = child
    a = [SPACE.mutate(SPACE.initial(), random.Random(5)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


def test_sample_within_budget():
    rng = random.Random(1)
    for _ in range(20):
        cell = SPACE.sample(rng, max_params=4e5)
        assert SPACE.counts(cell).params <= 4e5


@pytest.mark.parametrize("index", [0, 9930, 11472, 3])
def test_parts_cover_the_network(index):
    cell = SPACE.parse(TABLE["arch"][index])
    parts = kernels_for(SPACE).parts(cell)
    live = sum(op != "none" for op in cell.ops)
    assert len(parts) == 1 + 15 * live + 2 + 1
    total = 0
    for p in parts:
        module, shape = kernels_for(SPACE).build_part(p)
        with torch.no_grad():
            y = module.eval()(torch.randn(1, *shape))
        assert y.shape[1] == p.cout
        total += numel(module)
    assert total == numel(SPACE.build(cell))
    grid = list(kernels_for(SPACE).grid_parts("coarse"))
    assert set(parts) <= set(grid) and len(grid) == len(set(grid))


def test_cell_rejects_bad_operations():
    with pytest.raises(StructureError):
        Cell(("none",) * 5)
    with pytest.raises(StructureError):
        Cell(("none",) * 5 + ("conv",))
    assert len(EDGES) == 6 and OPS[0] == "none"


def test_mutate_changes_one_edge_whatever_num_blocks():
    rng_a, rng_b = random.Random(3), random.Random(3)
    cell = SPACE.initial()
    for _ in range(50):
        child = SPACE.mutate(cell, rng_a, num_blocks=2)
        assert child == SPACE.mutate(cell, rng_b)  # the same draws as a one-block mutation
        assert sum(a != b for a, b in zip(cell.ops, child.ops)) == 1
        cell = child
