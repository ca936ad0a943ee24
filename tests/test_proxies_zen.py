"""Zen-score against a hand computation, determinism, repeats, rejection, and the official code."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
import torch

from hwnas.errors import ProxyError
from hwnas.models.spaces.base import get_space
from hwnas.search.proxies import get_proxy

ONE_CONV = "SuperConvK1BNRELU(3,4,1,1)"
SMALL = "SuperConvK3BNRELU(3,8,2,1)SuperResK1K3K1(8,16,2,4,1)SuperConvK1BNRELU(16,32,1,1)"


def _space(resolution=8, num_classes=10):
    return get_space("cifar32").with_input(resolution=resolution, num_classes=num_classes)


def _hand_zen(seed, batch, res, classes, bn_term):
    """Zen of conv1x1(3->4) -> BN(train, eps 1e-3) -> ReLU, with numpy, drawing the same random numbers."""
    g = torch.Generator().manual_seed(seed)
    w = torch.empty(4, 3, 1, 1).normal_(generator=g)[:, :, 0, 0].double().numpy()
    torch.empty(classes, 4).normal_(generator=g)  # the classifier is initialised too (unused)
    x = torch.randn(batch, 3, res, res, generator=g).double().numpy()
    e = torch.randn(batch, 3, res, res, generator=g).double().numpy()

    def forward(inp):
        y = np.einsum("oc,bchw->bohw", w, inp)
        mean = y.mean(axis=(0, 2, 3), keepdims=True)
        var = y.var(axis=(0, 2, 3), keepdims=True)
        n = y.size / y.shape[1]
        out = np.maximum((y - mean) / np.sqrt(var + 1e-3), 0)
        return out, var.ravel(), var.ravel() * n / (n - 1)

    f1, v1, u1 = forward(x)
    f2, _, u2 = forward(x + 0.01 * e)
    delta = np.abs(f1 - f2).reshape(batch, -1).sum(axis=1).mean()
    if bn_term == "running":
        running = 0.9 * (0.9 * 1.0 + 0.1 * u1) + 0.1 * u2
        bn = math.log(math.sqrt(running.mean()))
    else:
        bn = math.log(math.sqrt(v1.mean()))
    return math.log(delta) + bn


@pytest.mark.parametrize("bn_term", ["running", "batch"])
def test_zen_of_one_conv_network_by_hand(bn_term):
    space = _space(resolution=8)
    got = get_proxy("zen", batch_size=4, seed=3, bn_term=bn_term).score(space, space.parse(ONE_CONV)).value
    want = _hand_zen(seed=3, batch=4, res=8, classes=10, bn_term=bn_term)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_same_seed_same_score_and_global_rng_untouched():
    space = _space(resolution=16)
    arch = space.parse(SMALL)
    state = torch.get_rng_state()
    a = get_proxy("zen", batch_size=4, seed=1).score(space, arch).value
    torch.manual_seed(12345)  # global RNG must not matter
    b = get_proxy("zen", batch_size=4, seed=1).score(space, arch).value
    c = get_proxy("zen", batch_size=4, seed=2).score(space, arch).value
    assert a == b
    assert a != c
    torch.set_rng_state(state)


def test_repeat_is_the_mean_of_independent_evaluations():
    space = _space(resolution=16)
    arch = space.parse(SMALL)
    proxy = get_proxy("zen", batch_size=4, seed=5, repeat=3)
    g = proxy.generator()
    singles = [proxy.evaluate(space, arch, g)[0] for _ in range(3)]
    result = proxy.score(space, arch)
    assert result.value == pytest.approx(sum(singles) / 3, rel=1e-12)
    assert len(set(singles)) == 3  # fresh network and statistics each time
    assert "std" in result.parts


def test_zero_output_network_is_rejected_not_nan():
    space = get_space("nb201")
    dead = space.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(ProxyError, match="non-finite"):
        get_proxy("zen", batch_size=2, resolution=8).score(space, dead)


def test_batch_term_exceeds_running_term():
    # the running variance after two passes is 0.81 + 0.19·v: with v >> 1 its log is lower by about 0.83
    space = _space(resolution=16)
    arch = space.parse(SMALL)
    run = get_proxy("zen", batch_size=8, bn_term="running").score(space, arch).parts["bn"]
    bat = get_proxy("zen", batch_size=8, bn_term="batch").score(space, arch).parts["bn"]
    assert bat > run


# The official ZenNAS work tree comes only from the environment; the reference tools sit in ../shared
# beside the repository root.
OFFICIAL = os.environ.get("ZENNAS_DIR", "")
TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir, "shared", "tools",
                     "zennas-reference")


@pytest.mark.skipif(not (OFFICIAL and os.path.isdir(OFFICIAL) and os.path.isdir(TOOLS)),
                    reason="needs ZENNAS_DIR set to an official ZenNAS work tree and "
                           "../shared/tools/zennas-reference beside the repository")
def test_matches_official_code_seed_by_seed():
    saved = list(sys.path)
    try:
        sys.path.insert(0, os.path.abspath(TOOLS))
        from official_common import load_official

        load_official(OFFICIAL, cpu_patch=False)  # CPU only: no .cuda() patch leaks into other tests
        import Masternet
        from ZeroShotProxy import compute_zen_score as czs
    finally:
        sys.path[:] = saved
    space = _space(resolution=32, num_classes=10)
    arch = space.parse(SMALL)
    for seed in (0, 1):
        model = Masternet.MasterNet(num_classes=10, plainnet_struct=SMALL, no_create=False, no_reslink=True)
        torch.manual_seed(seed)
        ref = czs.compute_nas_score(gpu=None, model=model, mixup_gamma=1e-2, resolution=32, batch_size=8,
                                    repeat=1, fp16=False)["avg_nas_score"]
        ours = get_proxy("zen", batch_size=8, seed=seed).score(space, arch).value
        assert ours == pytest.approx(ref, rel=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_zen_on_cuda_is_deterministic_and_close_to_cpu_statistics():
    space = _space(resolution=32)
    arch = space.parse(SMALL)
    a = get_proxy("zen", batch_size=16, seed=0, device="cuda").score(space, arch).value
    b = get_proxy("zen", batch_size=16, seed=0, device="cuda").score(space, arch).value
    cpu = get_proxy("zen", batch_size=16, seed=0, repeat=5).score(space, arch).value
    assert a == b
    assert a == pytest.approx(cpu, rel=0.05)  # other random numbers, same distribution
