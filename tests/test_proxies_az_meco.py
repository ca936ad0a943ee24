"""AZ-NAS, MeCo / MeCo_opt and zen_naslib against independent computations on tiny conv networks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import ProxyError
from hwnas.models.spaces.base import get_space
from hwnas.search.proxies import get_proxy
from hwnas.search.proxies.az_nas import log_rank_sum
from hwnas.search.proxies.base import SetRelativeProxy


class BlockNet(nn.Module):
    """stem conv 3→4 (3×3), block ReLU → conv 4→4 (3×3), block ReLU → conv 4→6 (2×2, stride 2); no BN."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False),
                                    nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1, bias=False)),
                                    nn.Sequential(nn.ReLU(), nn.Conv2d(4, 6, 2, stride=2, bias=False)))
        self.fc = nn.Linear(6, 2)

    def forward_features(self, x):
        return self.layers(x)

    def forward(self, x):
        return self.fc(self.forward_features(x).mean((2, 3)))


class BlockSpace:
    name, resolution, num_classes = "blocks", 4, 2

    def __init__(self):
        self.built = []

    def build(self, arch, *, no_residual=False, use_se=False):
        self.built.append(BlockNet())
        return self.built[-1]

    def counts(self, arch, *, use_se=False):
        return SimpleNamespace(flops=1234.0)


def _entropy(feature: np.ndarray) -> float:
    b, c, h, w = feature.shape
    x = feature.transpose(0, 2, 3, 1).reshape(-1, c)
    x = x - x.mean(axis=0)
    s = np.clip(np.linalg.eigvalsh(x.T @ x / len(x)), 0, None)
    p = s / s.sum()
    return float(-(p * np.log(p + 1e-8)).sum())


def _space_to_depth(g: np.ndarray, r: int) -> np.ndarray:
    b, c, h, w = g.shape
    return g.reshape(b, c, h // r, r, w // r, r).transpose(0, 1, 3, 5, 2, 4).reshape(b, c * r * r, h // r, w // r)


def _trainability(g_in: np.ndarray, g_out: np.ndarray) -> float:
    if g_in.shape[2:] != g_out.shape[2:]:
        g_in = _space_to_depth(g_in, g_in.shape[2] // g_out.shape[2])
    a = g_in.transpose(0, 2, 3, 1).reshape(-1, g_in.shape[1])
    o = g_out.transpose(0, 2, 3, 1).reshape(-1, g_out.shape[1])
    sigma = np.linalg.svd(a.T @ o / len(o), compute_uv=False).max()
    return 2 - sigma - 1 / (sigma + 1e-6)


def test_az_components_by_hand():
    space, batch, seed = BlockSpace(), 3, 11
    proxy = get_proxy("az_nas", batch_size=batch, seed=seed)
    got = proxy.components(space, None)
    convs = [m for m in space.built[-1].modules() if isinstance(m, nn.Conv2d)]
    w = [c.weight.detach().double() for c in convs]
    # the draws: N(0,1) weights (then scaled by sqrt(2/fan_in)), linear weight, the input, then ±1 gradients
    g = torch.Generator().manual_seed(seed)
    raw = [torch.empty(c.weight.shape).normal_(generator=g) for c in convs]
    torch.empty(2, 6).normal_(generator=g)
    for wi, ri in zip(w, raw):
        assert torch.allclose(wi, ri.double() * math.sqrt(2.0 / ri[0].numel()), atol=1e-6)
    x = torch.randn(batch, 3, 4, 4, generator=g).double()
    f0 = F.conv2d(x, w[0], padding=1)
    f1 = F.conv2d(F.relu(f0), w[1], padding=1)
    f2 = F.conv2d(F.relu(f1), w[2], stride=2)
    feats = [f.numpy() for f in (f0, f1, f2)]
    ent = np.array([_entropy(f) for f in feats])
    assert got["expressivity"] == pytest.approx(ent.sum(), rel=1e-5)
    assert got["progressivity"] == pytest.approx(np.diff(ent).min(), rel=1e-5, abs=1e-6)
    g_out2 = torch.randint(0, 2, f2.shape, generator=g).double() * 2 - 1
    g_out1 = torch.randint(0, 2, f1.shape, generator=g).double() * 2 - 1
    # back-propagation through ReLU → conv as a transposed convolution, masked by ReLU's derivative
    g_in2 = F.conv_transpose2d(g_out2, w[2], stride=2) * (f1 > 0)
    g_in1 = F.conv_transpose2d(g_out1, w[1], padding=1) * (f0 > 0)
    want = np.mean([_trainability(g_in2.numpy(), g_out2.numpy()), _trainability(g_in1.numpy(), g_out1.numpy())])
    assert got["trainability"] == pytest.approx(want, rel=1e-5)
    assert got["complexity"] == 1234.0


def test_az_rank_aggregation_by_hand():
    table = [{"a": 1.0, "b": 5.0}, {"a": 3.0, "b": float("-inf")}, {"a": 2.0, "b": 5.0}, {"a": float("nan"), "b": 7.0}]
    # a: ranks 2, 4, 3, 1 (NaN last); b: ranks 2.5, 1, 2.5, 4 (ties averaged, -inf last); N = 4
    want = [math.log(2 / 4) + math.log(2.5 / 4), math.log(4 / 4) + math.log(1 / 4),
            math.log(3 / 4) + math.log(2.5 / 4), math.log(1 / 4) + math.log(4 / 4)]
    assert log_rank_sum(table, ("a", "b")) == pytest.approx(want)


def test_az_nas_is_set_relative_and_its_components_are_proxies():
    space = get_space("nb201")
    cells = ["|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|",
             "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",
             "|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_3x3~0|none~1|nor_conv_3x3~2|"]
    archs = [space.parse(c) for c in cells]
    proxy = get_proxy("az_nas", batch_size=4, resolution=8, seed=2)
    assert isinstance(proxy, SetRelativeProxy)
    with pytest.raises(ProxyError, match="set"):
        proxy.score(space, archs[0])
    results = proxy.score_set(space, archs)
    table = [r.parts for r in results]
    assert [r.value for r in results] == pytest.approx(log_rank_sum(table))
    assert table[1]["trainability"] == float("-inf")  # an identity cell: the gradient passes unchanged
    for name in ("expressivity", "progressivity", "trainability"):
        single = get_proxy(f"az_{name}", batch_size=4, resolution=8, seed=2)
        assert single.score(space, archs[0]).value == table[0][name]
    with pytest.raises(ProxyError, match="-inf"):
        get_proxy("az_trainability", batch_size=4, resolution=8, seed=2).score(space, archs[1])


class ConvNet(nn.Module):
    """conv 3→12 (3×3) → ReLU → pool → linear: MeCo's terms are the conv's and the ReLU's outputs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(12, 2)

    def forward_features(self, x):
        return self.relu(self.conv(x))

    def forward(self, x):
        return self.fc(self.forward_features(x).mean((2, 3)))


class ConvSpace(BlockSpace):
    name, resolution = "conv", 5

    def build(self, arch, *, no_residual=False, use_se=False):
        self.built.append(ConvNet())
        return self.built[-1]


def _min_corr_eig(rows: np.ndarray) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.corrcoef(rows)
    return float(np.linalg.eigvalsh(np.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0)).min())


@pytest.mark.parametrize("name", ["meco", "meco_opt"])
def test_meco_by_hand(name):
    space, seed, res = ConvSpace(), 9, 5
    got = get_proxy(name, resolution=res, seed=seed).score(space, None).value
    net = space.built[-1]
    g = torch.Generator().manual_seed(seed)
    torch.randint(0, 2**62, (1,), generator=g)
    x = torch.randn(1, 3, res, res, generator=g).double()
    conv = F.conv2d(x, net.conv.weight.detach().double(), net.conv.bias.detach().double(), padding=1)
    outs = [conv[0].reshape(12, -1).numpy(), F.relu(conv)[0].reshape(12, -1).numpy()]
    if name == "meco":
        want = sum(_min_corr_eig(o) for o in outs)
    else:  # 8 channels drawn per module in the order the hooks run, scaled by 12 / 8
        want = sum(12 / 8 * _min_corr_eig(o[torch.randperm(12, generator=g)[:8].numpy()]) for o in outs)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-8)


def test_meco_default_input_is_64_pixels_for_small_spaces():
    assert get_proxy("meco").resolution_for(get_space("nb201")) == 64
    assert get_proxy("meco").resolution_for(get_space("imagenet224")) == 224
    assert get_proxy("meco", resolution=32).resolution_for(get_space("nb201")) == 32


class BNNet(nn.Module):
    """conv 3→4 → BN → ReLU, with a 1×1 shortcut conv added (a residual link zen_naslib keeps)."""

    def __init__(self, residual: bool):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.short = nn.Conv2d(3, 4, 1, bias=False) if residual else None
        self.fc = nn.Linear(4, 2)

    def forward_features(self, x):
        y = self.bn(self.conv(x))
        return torch.relu(y if self.short is None else y + self.short(x))

    def forward(self, x):
        return self.fc(self.forward_features(x).mean((2, 3)))


class BNSpace(BlockSpace):
    name, resolution = "bn", 6

    def build(self, arch, *, no_residual=False, use_se=False):
        self.built.append(BNNet(residual=not no_residual))
        return self.built[-1]


def test_zen_naslib_by_hand_keeps_the_residual_link():
    space, batch, seed = BNSpace(), 5, 4
    got = get_proxy("zen_naslib", batch_size=batch, seed=seed).score(space, None)
    net = space.built[-1]
    assert net.short is not None
    g = torch.Generator().manual_seed(seed)
    w_conv = torch.empty(4, 3, 3, 3).normal_(generator=g).double()
    w_short = torch.empty(4, 3, 1, 1).normal_(generator=g).double()
    torch.empty(2, 4).normal_(generator=g)
    x = torch.randn(batch, 3, 6, 6, generator=g).double()
    eps = torch.randn(batch, 3, 6, 6, generator=g).double()

    def f(inp):
        y = F.conv2d(inp, w_conv, padding=1)
        mean, var = y.mean((0, 2, 3), keepdim=True), y.var((0, 2, 3), unbiased=False, keepdim=True)
        return torch.relu((y - mean) / torch.sqrt(var + 1e-5) + F.conv2d(inp, w_short)), y.var((0, 2, 3))

    f1, v1 = f(x)
    f2, v2 = f(x + 0.01 * eps)
    delta = (f1 - f2).abs().flatten(1).sum(1).mean().item()
    running = 0.9 * (0.9 * 1 + 0.1 * v1) + 0.1 * v2
    want = math.log(delta) + math.log(math.sqrt(running.mean().item()))
    assert got.value == pytest.approx(want, rel=1e-4)


def test_zen_naslib_equals_zen_where_there_is_no_residual_link():
    space = get_space("nb201")
    cell = space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")

    class NoShortcut:  # the NB201 network without reduction shortcuts, whatever the caller asks
        name, resolution, num_classes = "nb201-noshort", 8, 10

        def build(self, arch, *, no_residual=False, use_se=False):
            return space.build(arch, no_residual=True)

    ours = get_proxy("zen", batch_size=4, seed=3).score(NoShortcut(), cell).value
    theirs = get_proxy("zen_naslib", batch_size=4, seed=3).score(NoShortcut(), cell).value
    assert theirs == pytest.approx(ours, rel=1e-4)
    with_shortcut = get_proxy("zen_naslib", batch_size=4, resolution=8, seed=3).score(space, cell).value
    assert with_shortcut != pytest.approx(ours, rel=1e-3)


def test_zen_naslib_names_why_a_cell_fails():
    space = get_space("nb201")
    cut = space.parse("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(ProxyError, match="Δ = 0"):
        get_proxy("zen_naslib", batch_size=2, resolution=8).score(space, cut)
    with pytest.raises(ProxyError, match="Δ = 0"):
        get_proxy("zen", batch_size=2, resolution=8).score(space, cut)
    with pytest.raises(Exception, match="bn"):
        get_proxy("zen_naslib", bn="frozen")


@pytest.mark.parametrize("name", ["meco", "meco_opt", "zen_naslib"])
def test_finite_and_deterministic_on_nb201(name):
    space = get_space("nb201")
    arch = space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    a = get_proxy(name, batch_size=4, resolution=16, seed=1).score(space, arch).value
    b = get_proxy(name, batch_size=4, resolution=16, seed=1).score(space, arch).value
    assert np.isfinite(a) and a == b
