"""``hybrid_nb201``: the per-cell hybrid fitted on NAS-Bench-201's CIFAR-10 cells, under one name.

Its weights were fitted with ``hwnas proxies fit --holdout 0.5`` on 1,500 of 3,000 sampled cells
(docs/proxies.md, "The AZ-NAS components as terms of a per-cell hybrid"); on the 1,500 held out it ranks
cells at Spearman 0.942 / 0.929 / 0.901 (CIFAR-10 / CIFAR-100 / ImageNet16-120), and the NB201 search with
it had the lowest mean regret (README), so it is NB201's default proxy. On another space it is a valid
expression but not a fitted one.
"""

from __future__ import annotations

from hwnas.search.proxies.base import register_proxy
from hwnas.search.proxies.hybrid import Hybrid

EXPRESSION = ("log(meco_opt)+0.0256872*log(synflow)+0.0380637*az_expressivity+2.18921*az_progressivity"
              "+0.656677*az_trainability")


@register_proxy("hybrid_nb201")
class HybridNB201(Hybrid):
    """MeCo_opt, synflow and the three AZ-NAS components, weighted as fitted on NB201 (:data:`EXPRESSION`)."""

    def __init__(self, **options):
        super().__init__(EXPRESSION, **options)
        self.name = "hybrid_nb201"
