"""Analytic counts against independent computations on built modules, over many random structures."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hwnas.models.builder import build
from hwnas.models.counts import count, effectiveness, num_layers, output_resolution, stages
from hwnas.models.structure import Structure, parse

KINDS = ["SuperConvK{k}BNRELU", "SuperResK{k}K{k}", "SuperResK1K{k}K1", "SuperResIDWE{e}K{k}"]


def random_structure(rng: random.Random, max_blocks: int = 5, max_width: int = 40) -> Structure:
    """A random chained structure over every block kind, kernel, expansion and stride (small widths)."""
    def width():
        return rng.randint(1, max_width)

    c = width()
    text = f"SuperConvK{rng.choice([1, 3, 5, 7])}BNRELU(3,{c},{rng.choice([1, 2])},{rng.randint(1, 2)})"
    for _ in range(rng.randint(0, max_blocks)):
        kind = rng.choice(KINDS)
        out = width()
        if kind.startswith("SuperConv"):
            name = kind.format(k=rng.choice([1, 3, 5, 7]))
            text += f"{name}({c},{out},{rng.choice([1, 2])},{rng.randint(1, 2)})"
        else:
            name = kind.format(k=rng.choice([3, 5, 7]), e=rng.choice([1, 2, 4, 6]))
            text += f"{name}({c},{out},{rng.choice([1, 2])},{width()},{rng.randint(1, 3)})"
        c = out
    return parse(text)


def table_rule_flops(model: nn.Module, x: torch.Tensor) -> int:
    """Rule 3 of the reference README, by forward hooks on nn.Module layers only (batch 1)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_out = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * per_out + (output.numel() if module.bias is not None else 0)
        elif isinstance(module, nn.BatchNorm2d):
            total += 2 * output.numel()
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features + module.out_features
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            total += inputs[0].numel()
        elif isinstance(module, nn.ReLU):
            total += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


def flop_counter_total(model: nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops()


def numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# 60 random structures, each at one of four settings: with and without SE, even and odd resolutions.
_SETTINGS = [(False, 32), (True, 33), (True, 17), (False, 9)]
CASES = [(seed, *_SETTINGS[seed % 4]) for seed in range(60)]


@pytest.mark.parametrize("seed,use_se,resolution", CASES)
def test_counts_equal_built_module_flop_counter_and_hooks(seed, use_se, resolution):
    torch.manual_seed(seed)
    s = random_structure(random.Random(seed))
    classes = 1 + seed % 13
    model = build(s, num_classes=classes, use_se=use_se).eval()
    x = torch.randn(1, 3, resolution, resolution)
    c = count(s, resolution=resolution, num_classes=classes, use_se=use_se)
    assert c.params == numel(model)
    assert 2 * c.conv_linear_macs == flop_counter_total(model, x)
    assert c.flops == table_rule_flops(model, x)
    features = model.forward_features(x)
    assert features.shape[-1] == output_resolution(s, resolution) == stages(s, resolution)[-1].out_resolution
    assert features.shape[1] == s.out_channels


@pytest.mark.parametrize("seed", range(10))
def test_counts_without_residual_links_equal_built_module(seed):
    s = random_structure(random.Random(1000 + seed))
    model = build(s, num_classes=10, no_residual=True).eval()
    x = torch.randn(1, 3, 16, 16)
    c = count(s, resolution=16, num_classes=10, no_residual=True)
    assert c.params == numel(model)
    assert 2 * c.conv_linear_macs == flop_counter_total(model, x)
    assert c.flops == table_rule_flops(model, x)
    assert not any(isinstance(m, nn.Sequential) and len(m) == 2 and isinstance(m[0], nn.Conv2d)
                   and m[0].bias is not None for m in model.modules())  # no projection shortcut left


def test_hand_computed_tiny_network():
    # conv3x3 3->8 at 8x8: 216 weights + BN 16; SE never in plain convs; FC 8->2: 16 + 2
    s = parse("SuperConvK3BNRELU(3,8,1,1)")
    c = count(s, resolution=8, num_classes=2)
    assert c.params == 216 + 16 + 18
    assert c.conv_linear_macs == 216 * 64 + 16
    assert c.flops == 216 * 64 + 2 * 8 * 64 + 16 + 2
    assert c.layers == 1


def test_layers_sum_sub_layers_and_rho_matches_definition():
    s = parse("SuperConvK3BNRELU(3,8,2,1)SuperResK3K3(8,16,2,8,2)SuperConvK1BNRELU(16,32,1,1)")
    assert num_layers(s) == 4
    # main-path convs: 3x3 3->8; (3x3 8->8, 3x3 8->16), (3x3 16->8, 3x3 8->16); 1x1 16->32
    widths = [3 * 9, 8 * 9, 8 * 9, 16 * 9, 8 * 9, 16]
    prod = 1.0
    for w in widths:
        prod *= w
    assert effectiveness(s) == pytest.approx(len(widths) * prod ** (-1 / len(widths)))
