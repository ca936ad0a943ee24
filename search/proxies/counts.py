"""Parameter and FLOP counts as proxies: exact, from the architecture alone (no module is built).

NAS-Bench-Zero (Chen et al., 2022) and Abdelfattah et al. (ICLR 2021) found
these plain counts to be strong baselines that the zero-shot proxies must
beat. Both come from the space's analytic ``counts`` (see
``hwnas.models.counts`` for the FLOP rule); SE is included only with ``se=True``.
"""

from __future__ import annotations

from hwnas.models.counts import count
from hwnas.models.structure import Structure
from hwnas.search.proxies.base import Proxy, register_proxy


class _CountProxy(Proxy):
    options = {"se": False}
    deterministic = True
    field = ""

    def evaluate(self, space, arch, generator):
        if isinstance(arch, Structure):  # any resolution, not only the space's
            counts = count(arch, resolution=self.resolution_for(space), num_classes=space.num_classes,
                           use_se=bool(self.se))
        else:
            counts = space.counts(arch, use_se=bool(self.se))
        value = float(getattr(counts, self.field))
        return value, {self.field: value}


@register_proxy("params")
class Params(_CountProxy):
    field = "params"


@register_proxy("flops")
class Flops(_CountProxy):
    field = "flops"
