"""The Zen-NAS structure spaces: Alg. 3 mutation, sampling within budgets, latency-table parts."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hwnas.errors import BudgetError
from hwnas.models.counts import num_layers, output_resolution
from hwnas.models.units import out_size
from hwnas.models.spaces.base import Space, get_space, space_names
from hwnas.models.spaces.zennas import (
    IDW_TYPES,
    XXBL_TYPES,
    mutate_block,
    split,
    sub_layer_choices,
    width_choices,
)
from hwnas.models.structure import CONV, INVERTED, parse
from hwnas.latency.kernels import kernels_for

IMAGENET = get_space("imagenet224")
CIFAR = get_space("cifar32")


def numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _walk(space, seed: int, steps: int, max_params=None, max_layers=None):
    """A chain of mutants (one or two blocks each), kept within the budgets (as a search would)."""
    rng = random.Random(seed)
    arch = space.initial()
    out = []
    for step in range(steps):
        child = space.mutate(arch, rng, num_blocks=1 + step % 2)
        out.append(child)
        if space.fits(child, max_params=max_params) and (max_layers is None or num_layers(child) <= max_layers):
            arch = child
    return out


def _mutants():
    cifar = [m for seed in range(20) for m in _walk(CIFAR, seed, 25, max_params=1e6, max_layers=18)]
    imagenet = [m for seed in range(20) for m in _walk(IMAGENET, 100 + seed, 25, max_params=3e7, max_layers=20)]
    return cifar, imagenet


CIFAR_MUTANTS, IMAGENET_MUTANTS = _mutants()


def test_spaces_are_registered_and_follow_the_protocol():
    assert {"imagenet224", "cifar32", "nb201"} <= set(space_names())
    for name in space_names():
        assert isinstance(get_space(name), Space)
    assert (IMAGENET.resolution, IMAGENET.num_classes) == (224, 1000)
    assert (CIFAR.resolution, CIFAR.num_classes) == (32, 10)


def test_initial_structures():
    assert output_resolution(IMAGENET.initial(), 224) == 7
    assert str(CIFAR.initial()) == (
        "SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,1,8,1)SuperResK3K3(16,32,2,16,1)"
        "SuperResK3K3(32,64,2,32,1)SuperResK3K3(64,64,2,32,1)SuperConvK1BNRELU(64,128,1,1)")


def test_a_thousand_mutants_parse_round_trip_build_and_count_exactly():
    mutants = CIFAR_MUTANTS + IMAGENET_MUTANTS
    assert len(mutants) == 1000
    for i, m in enumerate(mutants):
        space = CIFAR if i < len(CIFAR_MUTANTS) else IMAGENET
        assert space.parse(space.format(m)) == m
        use_se = i % 3 == 0
        with torch.device("meta"):
            net = space.build(m, use_se=use_se)
        assert numel(net) == space.counts(m, use_se=use_se).params
        # strides never change; a split keeps the layer count and L stays below the split threshold
        assert output_resolution(m, space.resolution) == output_resolution(space.initial(), space.resolution)
        assert all(b.sub_layers < 6 for b in m.blocks)
        assert all(b.kind == CONV or (b.kind, b.kernel, b.expansion) in XXBL_TYPES for b in m.blocks)


def test_small_mutants_run_forward_with_counts_matching_the_flop_counter():
    small = sorted(dict.fromkeys(CIFAR_MUTANTS), key=lambda m: CIFAR.counts(m).flops)[:20]
    space = CIFAR.with_input(resolution=16)
    for m in small:
        net = space.build(m).eval()
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            y = net(torch.randn(1, 3, 16, 16))
        assert y.shape == (1, 10)
        assert counter.get_total_flops() == 2 * space.counts(m).conv_linear_macs
        assert numel(net) == space.counts(m).params


def test_same_seed_same_mutants_and_parent_untouched():
    a = [str(m) for m in _walk(CIFAR, 7, 40)]
    b = [str(m) for m in _walk(CIFAR, 7, 40)]
    c = [str(m) for m in _walk(CIFAR, 8, 40)]
    assert a == b and a != c
    parent = IMAGENET.initial()
    before = str(parent)
    children = [IMAGENET.mutate(parent, random.Random(s)) for s in range(20)]
    assert str(parent) == before
    assert any(str(ch) != before for ch in children)
    with pytest.raises(dataclasses.FrozenInstanceError):
        parent.blocks[0].out_channels = 1  # type: ignore[misc]


def test_width_and_sub_layer_choices():
    assert width_choices(64) == [24, 32, 40, 48, 64, 80, 96, 128, 160]
    assert width_choices(8) == [8, 16]
    assert width_choices(6704) == [2048]
    assert width_choices(2048) == [816, 1024, 1368, 1640, 2048]
    assert sub_layer_choices(1) == [1, 2, 3]
    assert sub_layer_choices(4) == [2, 3, 4, 5, 6]


def test_block_mutation_stays_in_its_group_and_conv_blocks_change_only_width():
    rng = random.Random(0)
    conv = parse("SuperConvK3BNRELU(3,64,2,1)").blocks[0]
    idw = parse("SuperResIDWE6K3(16,32,2,8,1)").blocks[0]
    res = parse("SuperResK3K3(16,32,2,8,1)").blocks[0]
    for _ in range(200):
        c = mutate_block(conv, rng)
        assert (c.kind, c.kernel, c.stride, c.sub_layers, c.in_channels) == (CONV, 3, 2, 1, 3)
        assert c.out_channels in width_choices(64)
    idw_types = {(b.kind, b.kernel, b.expansion) for b in (mutate_block(idw, rng) for _ in range(400))}
    assert idw_types == set(IDW_TYPES)
    res_children = [mutate_block(res, rng) for _ in range(400)]
    assert {(b.kind, b.kernel, b.expansion) for b in res_children} == set(XXBL_TYPES)
    for b in res_children:
        assert b.stride == 2 and b.in_channels == 16
        assert b.out_channels in width_choices(32) and b.mid in width_choices(8)
        assert b.sub_layers in (1, 2, 3)
    assert all(b.kind == INVERTED for b in (mutate_block(idw, rng) for _ in range(50)))


def test_split_keeps_layers_and_adds_a_stride_one_block():
    s = parse("SuperConvK3BNRELU(3,8,2,1)SuperResK1K3K1(8,32,2,16,7)SuperConvK1BNRELU(32,64,1,1)")
    t = split(s)
    assert str(t) == ("SuperConvK3BNRELU(3,8,2,1)SuperResK1K3K1(8,32,2,16,3)SuperResK1K3K1(32,32,1,16,4)"
                      "SuperConvK1BNRELU(32,64,1,1)")
    assert num_layers(t) == num_layers(s)
    assert split(t) == t


@pytest.mark.parametrize("space,max_params,max_flops", [(CIFAR, 1e6, None), (CIFAR, None, 5e7),
                                                        (IMAGENET, 3e6, 4e8), (IMAGENET, 2e5, None)])
def test_sample_stays_within_budget(space, max_params, max_flops):
    seen = set()
    for seed in range(8):
        arch = space.sample(random.Random(seed), max_params=max_params, max_flops=max_flops)
        c = space.counts(arch)
        assert max_params is None or c.params <= max_params
        assert max_flops is None or c.flops <= max_flops
        seen.add(arch)
    assert len(seen) > 1


def test_sample_with_an_impossible_budget_is_a_budget_error():
    with pytest.raises(BudgetError):
        IMAGENET.sample(random.Random(0), max_params=1000)


@pytest.mark.parametrize("use_se", [False, True])
def test_parts_cover_the_network_exactly(use_se):
    # Every conv, BN, projection and SE of the network is in exactly one part (parameter counts add up),
    # and each part runs on the input shape it declares and gives the channels and size it declares.
    for space, mutants in ((CIFAR, CIFAR_MUTANTS[::50]), (IMAGENET, IMAGENET_MUTANTS[::50])):
        for m in mutants:
            parts = kernels_for(space).parts(m, use_se=use_se)
            assert parts[-1].op == "head"
            with torch.device("meta"):
                total = 0
                for p in parts:
                    module, shape = kernels_for(space).build_part(p)
                    assert shape == (p.cin, p.resolution, p.resolution)
                    y = module.eval()(torch.empty(1, *shape))
                    r = out_size(p.resolution, p.stride)
                    if p.op == "head":
                        assert tuple(y.shape) == (1, space.num_classes)
                    elif p.op == "se":
                        assert tuple(y.shape[1:]) == shape
                    else:
                        assert tuple(y.shape[1:]) == (p.cout, r, r), p
                    total += numel(module)
                assert total == numel(space.build(m, use_se=use_se))


def test_parts_of_a_two_unit_block_are_its_kernels_in_order():
    s = parse("SuperConvK3BNRELU(3,8,2,1)SuperResIDWE4K5(8,24,2,16,2)SuperConvK1BNRELU(24,64,1,1)")
    parts = kernels_for(IMAGENET).parts(s)
    assert [(p.op, p.cin, p.cout, p.resolution, p.stride) for p in parts] == [
        ("conv3", 3, 8, 224, 2),
        # sub-layer 1, unit 1 (expansion 4 of mid 16 = 64): 1x1, depthwise 5x5 with the stride, 1x1, projection
        ("conv1", 8, 64, 112, 1), ("dwconv5", 64, 64, 112, 2), ("conv1", 64, 16, 56, 1), ("proj", 8, 16, 112, 2),
        # unit 2 (expansion 4 of out 24 = 96), projection since 16 != 24
        ("conv1", 16, 96, 56, 1), ("dwconv5", 96, 96, 56, 1), ("conv1", 96, 24, 56, 1), ("proj", 16, 24, 56, 1),
        # sub-layer 2: identity shortcuts
        ("conv1", 24, 64, 56, 1), ("dwconv5", 64, 64, 56, 1), ("conv1", 64, 16, 56, 1), ("proj", 24, 16, 56, 1),
        ("conv1", 16, 96, 56, 1), ("dwconv5", 96, 96, 56, 1), ("conv1", 96, 24, 56, 1), ("proj", 16, 24, 56, 1),
        ("conv1", 24, 64, 56, 1),
        ("head", 64, 1000, 56, 1),
    ]


def test_grid_parts_are_unique_and_build():
    parts = list(kernels_for(CIFAR).grid_parts("coarse"))
    assert len(parts) == len(set(parts)) > 100
    assert len(list(kernels_for(CIFAR).grid_parts("full"))) > len(parts)
    with torch.device("meta"):
        for p in parts[:: max(1, len(parts) // 60)]:
            module, shape = kernels_for(CIFAR).build_part(p)
            module.eval()(torch.empty(1, *shape))


def test_width_choices_are_the_official_smart_round_of_every_ratio():
    from hwnas.models.spaces.zennas import MAX_WIDTH, MIN_WIDTH, WIDTH_RATIOS

    for channels in range(1, 3000):
        want = set()
        for r in WIDTH_RATIOS:
            x = min(MAX_WIDTH, max(MIN_WIDTH, channels * r))
            want.add(max(8, 8 * round(x / 8)))  # smart_round(x, base=8) of the official code
        got = width_choices(channels)
        assert got == sorted(want) and all(type(w) is int for w in got)


@pytest.mark.parametrize("name", ["imagenet224", "cifar32", "nb201", "nb201-imagenet16"])
def test_smallest_is_in_the_space_and_no_sample_is_smaller(name):
    space = get_space(name)
    small = space.smallest()
    assert space.parse(space.format(small)) == small
    c = space.counts(small)
    rng = random.Random(7)
    for _ in range(30):
        other = space.counts(space.sample(rng))
        assert c.params <= other.params and c.flops <= other.flops and c.layers <= other.layers


@pytest.mark.parametrize("name", ["cifar32", "nb201"])
def test_with_input_changes_only_resolution_and_classes(name):
    space = get_space(name)
    arch = space.initial()
    other = space.with_input(resolution=16, num_classes=7)
    assert (other.name, other.resolution, other.num_classes) == (space.name, 16, 7)
    assert (space.resolution, space.num_classes) != (16, 7)  # the registered space is untouched
    assert other.with_input() == other
    assert space.with_input(num_classes=7).resolution == space.resolution
    # the classifier alone grows with the classes: (c_in + 1) params per class
    net = other.build(arch)
    assert net.forward(torch.zeros(1, 3, 16, 16)).shape == (1, 7)
    assert other.counts(arch).params == sum(p.numel() for p in net.parameters())
