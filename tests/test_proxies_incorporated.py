"""Incorporated score: the entropy term by hand, the weights, rejection of E <= 0, rho."""

from __future__ import annotations

import math

import pytest

from hwnas.errors import HwnasError, ProxyError
from hwnas.models.counts import effectiveness
from hwnas.models.spaces.base import get_space
from hwnas.search.proxies import get_proxy
from hwnas.search.proxies.incorporated import entropy_score

TEXT = "SuperConvK3BNRELU(3,8,2,1)SuperResK3K3(8,16,2,4,2)SuperConvK1BNRELU(16,32,1,1)"


def _space():
    return get_space("cifar32").with_input(resolution=16)


def test_entropy_by_hand():
    space = _space()
    arch = space.parse(TEXT)
    # stage 1: conv 3->8 k3 s2 at 16 -> 8x8x8 ; one layer, log(3·9)
    h1 = math.log(8 * 8 * 8) * math.log(3 * 9)
    # stage 2: two basic units (k3): 8->4, 4->16, 16->4, 4->16 ; output 4x4x16
    h2 = math.log(4 * 4 * 16) * (math.log(8 * 9) + math.log(4 * 9) + math.log(16 * 9) + math.log(4 * 9))
    # stage 3: 1x1 conv 16->32 at 4x4
    h3 = math.log(4 * 4 * 32) * math.log(16)
    depths = [1, 2, 1]
    var = sum((d - 4 / 3) ** 2 for d in depths) / 3
    e = entropy_score(arch, 16)
    assert e["h"] == pytest.approx(h1 + h2 + h3)
    assert e["q"] == pytest.approx(math.exp(var))
    assert e["e_score"] == pytest.approx(h1 + h2 + h3 - 10 * math.exp(var))
    half = entropy_score(arch, 16, layer_term="deepmad_code")
    assert half["h"] == pytest.approx((h1 + h2 + h3) / 2)
    weighted = entropy_score(arch, 16, alpha=[1, 2, 0], beta=1)
    assert weighted["e_score"] == pytest.approx(h1 + 2 * h2 - math.exp(var))


@pytest.mark.parametrize("transform,wz,wd", [("log", 0.9, 0.1), ("sqrt", 0.8, 0.2)])
def test_default_weights_and_value(transform, wz, wd):
    space = _space()
    arch = space.parse(TEXT)
    result = get_proxy("incorporated", batch_size=4, seed=2, transform=transform).score(space, arch)
    zen = get_proxy("zen", batch_size=4, seed=2).score(space, arch).value
    e = entropy_score(arch, 16)["e_score"]
    f = math.log(e) if transform == "log" else math.sqrt(e)
    assert result.parts["zen"] == pytest.approx(zen, rel=1e-12)
    assert result.value == pytest.approx(wz * zen + wd * f, rel=1e-12)
    assert result.parts["rho"] == pytest.approx(effectiveness(arch))
    assert result.parts["e_score"] == pytest.approx(e)


def test_one_weight_implies_the_other():
    proxy = get_proxy("incorporated", wz=0.7)
    assert proxy.wd == pytest.approx(0.3)


def test_non_positive_entropy_is_rejected_with_reason():
    space = _space()
    with pytest.raises(ProxyError, match="E_score"):
        get_proxy("incorporated", batch_size=2, beta=1e9).score(space, space.parse(TEXT))


def test_bad_options_are_errors():
    with pytest.raises(HwnasError, match="transform"):
        get_proxy("incorporated", transform="cube")
    with pytest.raises(HwnasError, match="no option"):
        get_proxy("zen", wz=0.5)


def test_a_space_without_an_entropy_is_rejected_by_incorporated():
    class Other:  # neither ZenNAS structures nor NAS-Bench-201 cells (NB201: tests/test_proxies_incorporated_nb201.py)
        name, resolution, num_classes = "other", 32, 10

    with pytest.raises(ProxyError, match="structure-string space or NAS-Bench-201"):
        get_proxy("incorporated", batch_size=2).score(Other(), "arch")


def test_effectiveness_by_hand():
    arch = _space().parse(TEXT)
    widths = [3 * 9, 8 * 9, 4 * 9, 16 * 9, 4 * 9, 16]
    want = len(widths) * math.exp(-sum(map(math.log, widths)) / len(widths))
    assert effectiveness(arch) == pytest.approx(want)
