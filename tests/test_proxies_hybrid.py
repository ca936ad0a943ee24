"""Hybrid expressions: safe parsing, evaluation, rejection."""

from __future__ import annotations

import math

import pytest

from hwnas.errors import HwnasError, ProxyError
from hwnas.models.spaces.base import get_space
from hwnas.search.proxies import get_proxy
from hwnas.search.proxies.hybrid import evaluate_expression, parse_expression, referenced_names


def test_parse_and_evaluate():
    tree = parse_expression("zen + 0.5*log(flops) - params/2 + -synflow**2")
    assert referenced_names(tree) == ["zen", "flops", "params", "synflow"]
    values = {"zen": 3.0, "flops": math.e ** 4, "params": 8.0, "synflow": 1.5}
    assert evaluate_expression(tree, values) == pytest.approx(3 + 2 - 4 - 2.25)


@pytest.mark.parametrize("text", ["__import__('os')", "zen.real", "zen+", "log(zen, 2)", "foo+1", "lambda: 1",
                                  "zen if flops else params", "[zen]", "'a'", "log", "zen[0]", "open(zen)",
                                  "True*zen"])
def test_rejects_anything_but_arithmetic_of_proxies(text):
    with pytest.raises(HwnasError):
        parse_expression(text)


def test_undefined_transform_is_a_proxy_error():
    tree = parse_expression("log(zen)")
    with pytest.raises(ProxyError, match="undefined"):
        evaluate_expression(tree, {"zen": -1.0}, "log(zen)")
    with pytest.raises(ProxyError):
        evaluate_expression(parse_expression("zen/params"), {"zen": 1.0, "params": 0.0})


def test_hybrid_of_counts_equals_the_expression():
    space = get_space("cifar32")
    arch = space.parse("SuperConvK3BNRELU(3,8,1,1)SuperResK1K3K1(8,16,2,4,1)SuperConvK1BNRELU(16,32,1,1)")
    params = get_proxy("params").score(space, arch).value
    flops = get_proxy("flops").score(space, arch).value
    result = get_proxy("params + 2*log(flops)").score(space, arch)
    assert result.value == pytest.approx(params + 2 * math.log(flops))
    assert result.parts == {"params": params, "flops": flops}


def test_hybrid_passes_specific_options_to_the_proxies_that_take_them():
    proxy = get_proxy("zen + log(flops)", bn_term="batch", batch_size=4)
    assert proxy.components["zen"].bn_term == "batch"
    assert proxy.components["zen"].batch_size == 4
    with pytest.raises(HwnasError, match="option"):
        get_proxy("flops + params", bn_term="batch")


def test_hybrid_nb201_is_its_fitted_expression_over_its_terms_scored_alone():
    """The named NB201 hybrid (the space's default proxy) against its five terms, each scored on its own."""
    space = get_space("nb201")
    assert type(space).default_proxy == "hybrid_nb201"
    cell = space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|skip_connect~2|")
    named = get_proxy("hybrid_nb201", batch_size=4, seed=3).score(space, cell)
    terms = {n: get_proxy(n, batch_size=4, seed=3).score(space, cell).value
             for n in ("meco_opt", "synflow", "az_expressivity", "az_progressivity", "az_trainability")}
    # the weights as `hwnas proxies fit` printed them (docs/proxies.md)
    want = (math.log(terms["meco_opt"]) + 0.0256872 * math.log(terms["synflow"]) + 0.0380637 * terms["az_expressivity"]
            + 2.18921 * terms["az_progressivity"] + 0.656677 * terms["az_trainability"])
    assert named.value == pytest.approx(want, rel=1e-9)
    assert named.parts == pytest.approx(terms, rel=1e-12)
