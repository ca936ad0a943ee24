"""plain, l2_norm, fisher, grasp, jacov, epe_nas and zico against hand computations on a two-layer MLP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hwnas.errors import ProxyError
from hwnas.models.spaces.base import get_space
from hwnas.search.proxies import get_proxy, proxy_names
from hwnas.search.proxies.base import proxy_class
from hwnas.search.proxies.naslib import epe_score

RES, HIDDEN, CLASSES = 3, 5, 3


class TinyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(3 * RES * RES, HIDDEN, bias=False)
        self.l2 = nn.Linear(HIDDEN, CLASSES, bias=False)

    def forward_features(self, x):
        return torch.relu(self.l1(x.flatten(1)))

    def forward(self, x):
        return self.l2(self.forward_features(x))


class TinySpace:
    name, resolution, num_classes = "tiny", RES, CLASSES

    def __init__(self):
        self.built = []

    def build(self, arch, *, no_residual=False, use_se=False):
        self.built.append(TinyMLP())
        return self.built[-1]


def _draws(seed, batch, batches=1):
    """The proxies' draws: one seed for the default initialisation, then per batch the input and the labels."""
    g = torch.Generator().manual_seed(seed)
    torch.randint(0, 2**62, (1,), generator=g)
    out = []
    for _ in range(batches):
        x = torch.randn(batch, 3, RES, RES, generator=g).double().flatten(1).numpy()
        y = torch.randint(0, CLASSES, (batch,), generator=g).numpy()
        out.append((x, y))
    return out


def _weights(space):
    net = space.built[-1]
    return net.l1.weight.detach().double().numpy(), net.l2.weight.detach().double().numpy()


def _forward_backward(w1, w2, x, y):
    """Activations and gradients of the mean cross-entropy, by hand."""
    h_pre = x @ w1.T
    h = np.maximum(h_pre, 0)
    z = h @ w2.T
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = (p - np.eye(CLASSES)[y]) / len(x)
    dh = (dz @ w2) * (h_pre > 0)
    return {"h_pre": h_pre, "z": z, "dz": dz, "dh": dh, "g1": dh.T @ x, "g2": dz.T @ h}


def _jacobians(w1, w2, x):
    """∂ Σ_k z_k / ∂x per image: (1ᵀ W2 ⊙ relu'(h_pre)) W1."""
    h_pre = x @ w1.T
    return ((np.ones(CLASSES) @ w2)[None, :] * (h_pre > 0)) @ w1


def test_plain_and_l2_norm_by_hand():
    space = TinySpace()
    got = get_proxy("plain", batch_size=6, seed=3).score(space, None).value
    w1, w2 = _weights(space)
    (x, y), = _draws(3, 6)
    fb = _forward_backward(w1, w2, x, y)
    assert got == pytest.approx((w1 * fb["g1"]).sum() + (w2 * fb["g2"]).sum(), rel=1e-5, abs=1e-9)
    got = get_proxy("l2_norm", seed=3).score(space, None).value
    w1, w2 = _weights(space)
    assert got == pytest.approx(np.linalg.norm(w1) + np.linalg.norm(w2), rel=1e-6)


def test_fisher_by_hand():
    space = TinySpace()
    got = get_proxy("fisher", batch_size=7, seed=5).score(space, None).value
    w1, w2 = _weights(space)
    (x, y), = _draws(5, 7)
    fb = _forward_backward(w1, w2, x, y)
    f1 = 0.5 * ((fb["h_pre"] * fb["dh"]) ** 2).mean(axis=0)  # per hidden unit
    f2 = 0.5 * ((fb["z"] * fb["dz"]) ** 2).mean(axis=0)  # per class
    want = f1.sum() * w1.shape[1] + f2.sum() * w2.shape[1]  # each channel once per weight of that channel
    assert got == pytest.approx(want, rel=1e-4)


def test_grasp_is_minus_weight_times_hessian_gradient_by_finite_differences():
    space = TinySpace()
    got = get_proxy("grasp", batch_size=6, seed=2).score(space, None).value
    w1, w2 = _weights(space)
    (x, y), = _draws(2, 6)
    fb = _forward_backward(w1, w2, x, y)
    g1, g2 = fb["g1"], fb["g2"]
    eps = 1e-6
    plus = _forward_backward(w1 + eps * g1, w2 + eps * g2, x, y)
    minus = _forward_backward(w1 - eps * g1, w2 - eps * g2, x, y)
    hg1 = (plus["g1"] - minus["g1"]) / (2 * eps)
    hg2 = (plus["g2"] - minus["g2"]) / (2 * eps)
    want = -(w1 * hg1).sum() - (w2 * hg2).sum()
    assert got == pytest.approx(want, rel=1e-3, abs=1e-7)


def test_jacov_by_hand():
    space = TinySpace()
    got = get_proxy("jacov", batch_size=5, seed=8).score(space, None).value
    w1, w2 = _weights(space)
    (x, _), = _draws(8, 5)
    v = np.linalg.eigvals(np.corrcoef(_jacobians(w1, w2, x))).real
    want = -np.sum(np.log(v + 1e-5) + 1 / (v + 1e-5))
    assert got == pytest.approx(want, rel=1e-4)


def test_epe_nas_by_hand():
    space = TinySpace()
    got = get_proxy("epe_nas", batch_size=12, seed=4).score(space, None).value
    w1, w2 = _weights(space)
    (x, y), = _draws(4, 12)
    jac = _jacobians(w1, w2, x)
    want = 0.0
    for c in range(CLASSES):
        rows = jac[y == c]
        if len(rows) >= 2:
            want += abs(np.log(np.abs(np.corrcoef(rows)) + 1e-5).sum())
    assert got == pytest.approx(want, rel=1e-4)


def test_epe_nas_over_100_classes_uses_pairwise_differences():
    rng = np.random.default_rng(0)
    jac = rng.normal(size=(6, 4))
    labels = np.array([0, 0, 1, 1, 1, 2])  # class 2 has one image: left out
    s0 = np.log(np.abs(np.corrcoef(jac[:2])) + 1e-5).sum() / 2
    s1 = np.log(np.abs(np.corrcoef(jac[2:5])) + 1e-5).sum() / 3
    assert epe_score(jac, labels, 120) == pytest.approx(2 * abs(s0 - s1) / 2)
    with pytest.raises(ProxyError):
        epe_score(jac, np.arange(6), 10)


def test_zico_by_hand():
    space = TinySpace()
    got = get_proxy("zico", batch_size=4, seed=6).score(space, None).value
    w1, w2 = _weights(space)
    grads = [_forward_backward(w1, w2, x, y) for x, y in _draws(6, 4, batches=2)]
    want = 0.0
    for key in ("g1", "g2"):
        g = np.stack([fb[key].ravel() for fb in grads])
        std = g.std(axis=0)
        keep = std > 0
        want += np.log((np.abs(g).mean(axis=0)[keep] / std[keep]).sum())
    assert got == pytest.approx(want, rel=1e-4)


def test_zico_accumulated_gradients_as_the_authors_code():
    space = TinySpace()
    got = get_proxy("zico", batch_size=4, seed=6, batches=3, gradients="accumulated").score(space, None).value
    w1, w2 = _weights(space)
    grads = [_forward_backward(w1, w2, x, y) for x, y in _draws(6, 4, batches=3)]
    want = 0.0
    for key in ("g1", "g2"):
        g = np.cumsum(np.stack([fb[key].ravel() for fb in grads]), axis=0)  # g1, g1+g2, g1+g2+g3
        std = g.std(axis=0)
        keep = std > 0
        want += np.log((np.abs(g).mean(axis=0)[keep] / std[keep]).sum())
    assert got == pytest.approx(want, rel=1e-4)


def test_every_proxy_says_whether_it_needs_data_and_none_does():
    for name in proxy_names():
        assert proxy_class(name).needs_data is False, name


@pytest.mark.parametrize("name", ["plain", "l2_norm", "fisher", "grasp", "jacov", "epe_nas", "zico"])
def test_finite_and_deterministic_on_nb201(name):
    space = get_space("nb201")
    arch = space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    a = get_proxy(name, batch_size=4, resolution=8, seed=1).score(space, arch).value
    b = get_proxy(name, batch_size=4, resolution=8, seed=1).score(space, arch).value
    assert np.isfinite(a) and a == b
