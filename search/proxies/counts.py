"""Parameter and FLOP counts as proxies: exact, from the architecture alone (no module is built).

NAS-Bench-Zero (Chen et al., 2022) and Abdelfattah et al. (ICLR 2021) found
these plain counts to be strong baselines that the zero-shot proxies must
beat. Both come from the space's analytic ``counts`` (see
``hwnas.models.counts`` for the FLOP rule); SE is included only with ``se=True``.
"""

from __future__ import annotations

from hwnas.search.proxies.base import Proxy, register_proxy


class _CountProxy(Proxy):
    options = {"se": False}
    deterministic = True
    field = ""

    def evaluate(self, space, arch, generator):
        counts = space.with_input(resolution=self.resolution_for(space)).counts(arch, use_se=bool(self.se))
        value = float(getattr(counts, self.field))
        return value, {self.field: value}


@register_proxy("params")
class Params(_CountProxy):
    field = "params"


@register_proxy("flops")
class Flops(_CountProxy):
    field = "flops"
