"""grad_norm, snip, synflow, naswot, params and flops against independent computations."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from hwnas.errors import ProxyError
from hwnas.models.spaces.base import get_space
from hwnas.search.proxies import get_proxy
from hwnas.search.proxies.classic import _ReluCodes, naswot_logdet

RES = 4


class TinyMLP(nn.Module):
    """flatten -> linear(48, 5) -> ReLU -> linear(5, 3): small enough to do everything by hand."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(3 * RES * RES, 5, bias=False)
        self.l2 = nn.Linear(5, 3, bias=False)

    def forward_features(self, x):
        return torch.relu(self.l1(x.flatten(1)))

    def forward(self, x):
        return self.l2(self.forward_features(x))


class TinySpace:
    """A space of one network; it keeps the last module it built so the test can read its weights."""

    name, resolution, num_classes = "tiny", RES, 3

    def __init__(self):
        self.built = []

    def build(self, arch, *, no_residual=False, use_se=False):
        self.built.append(TinyMLP())
        return self.built[-1]


def _inputs(seed, batch):
    """The proxies' draws: one seed for the default initialisation, the input, then the labels."""
    g = torch.Generator().manual_seed(seed)
    torch.randint(0, 2**62, (1,), generator=g)
    x = torch.randn(batch, 3, RES, RES, generator=g).double()
    labels = torch.randint(0, 3, (batch,), generator=g)
    return x.flatten(1).numpy(), labels.numpy()


def _loss_grads(space, seed, batch):
    w1 = space.built[-1].l1.weight.detach().double().numpy()
    w2 = space.built[-1].l2.weight.detach().double().numpy()
    x, y = _inputs(seed, batch)
    h_pre = x @ w1.T
    h = np.maximum(h_pre, 0)
    z = h @ w2.T
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = (p - np.eye(3)[y]) / batch
    g2 = dz.T @ h
    dh = (dz @ w2) * (h_pre > 0)
    g1 = dh.T @ x
    return (w1, g1), (w2, g2)


def test_grad_norm_by_hand():
    space = TinySpace()
    got = get_proxy("grad_norm", batch_size=6, seed=4).score(space, None).value
    (_, g1), (_, g2) = _loss_grads(space, 4, 6)
    assert got == pytest.approx(np.linalg.norm(g1) + np.linalg.norm(g2), rel=1e-5)


def test_snip_by_hand():
    space = TinySpace()
    got = get_proxy("snip", batch_size=6, seed=4).score(space, None).value
    (w1, g1), (w2, g2) = _loss_grads(space, 4, 6)
    assert got == pytest.approx(np.abs(w1 * g1).sum() + np.abs(w2 * g2).sum(), rel=1e-5)


def test_synflow_of_a_linear_chain_is_layers_times_the_path_sum():
    space = TinySpace()
    got = get_proxy("synflow").score(space, None).value
    a1 = np.abs(space.built[-1].l1.weight.detach().numpy().astype(np.float64))
    a2 = np.abs(space.built[-1].l2.weight.detach().numpy().astype(np.float64))
    r = np.ones(3) @ a2 @ a1 @ np.ones(3 * RES * RES)  # R = 1ᵀ|W2||W1|1
    # per-weight |θ ∂R/∂θ| summed over a layer is R (homogeneity), so two layers give 2R
    per_weight = (a1 * np.outer(a2.sum(axis=0), np.ones(3 * RES * RES))).sum() + (a2 * (a1.sum(axis=1))[None, :]).sum()
    assert got == pytest.approx(per_weight, rel=1e-12)
    assert got == pytest.approx(2 * r, rel=1e-12)
    assert got > 0


def test_naswot_kernel_on_known_codes():
    x = torch.tensor([[1.0, -1.0, 2.0, 0.5], [1.0, 1.0, -1.0, 0.5], [-1.0, -1.0, -1.0, -2.0]])
    codes = _ReluCodes(3, "cpu")
    with codes:
        torch.relu(x)
        torch.nn.functional.relu(x[:, :2])  # a second ReLU adds its own agreements
    c = (x.numpy() > 0).astype(int)
    want = np.array([[(c[i] == c[j]).sum() + (c[i, :2] == c[j, :2]).sum() for j in range(3)] for i in range(3)])
    np.testing.assert_array_equal(codes.kernel.numpy(), want)
    assert naswot_logdet(codes.kernel.numpy()) == pytest.approx(np.log(abs(np.linalg.det(want))))


def test_naswot_singular_kernel_is_rejected():
    with pytest.raises(ProxyError, match="singular"):
        naswot_logdet(np.ones((3, 3)))


def test_naswot_score_uses_every_relu_of_a_real_network():
    space = get_space("cifar32").with_input(resolution=8)
    arch = space.parse("SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,8,1,4,1)SuperConvK1BNRELU(8,16,1,1)")
    result = get_proxy("naswot", batch_size=8).score(space, arch)
    # stem 8·64, unit: inner ReLU 4·64 and output ReLU 8·64, last conv 16·64
    assert result.parts["relu_units"] == (8 + 4 + 8 + 16) * 64
    assert result.value == get_proxy("naswot", batch_size=8).score(space, arch).value


@pytest.mark.parametrize("name", ["params", "flops"])
def test_count_proxies_equal_the_built_module_and_counter(name):
    space = get_space("cifar32")
    arch = space.parse("SuperConvK3BNRELU(3,8,1,1)SuperResK1K3K1(8,16,2,4,1)SuperConvK1BNRELU(16,32,1,1)")
    value = get_proxy(name).score(space, arch).value
    if name == "params":
        assert value == sum(p.numel() for p in space.build(arch).parameters())
    else:
        # the table rule, by module hooks: conv MACs (+1 per output for a bias), BN 2 per element, FC
        net, total = space.build(arch), []

        def hook(module, inputs, out):
            if isinstance(module, nn.Conv2d):
                k = module.kernel_size[0] * module.kernel_size[1]
                total.append(out.numel() * (module.in_channels // module.groups * k + (module.bias is not None)))
            elif isinstance(module, nn.BatchNorm2d):
                total.append(2 * out.numel())
            elif isinstance(module, nn.Linear):
                total.append(module.in_features * module.out_features + module.out_features)

        for m in net.modules():
            m.register_forward_hook(hook)
        net(torch.zeros(1, 3, 32, 32))
        assert value == sum(total)


def test_all_classic_proxies_finite_and_deterministic_on_nb201():
    space = get_space("nb201")
    arch = space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    for name in ("grad_norm", "snip", "synflow", "naswot"):
        a = get_proxy(name, batch_size=4, resolution=8, seed=7).score(space, arch).value
        b = get_proxy(name, batch_size=4, resolution=8, seed=7).score(space, arch).value
        assert np.isfinite(a) and a == b, name
