"""ZiCo (Li et al., "ZiCo: Zero-shot NAS via Inverse Coefficient of Variation on Gradients", ICLR 2023).

ZiCo is defined on real training batches. What hwnas's ``zico`` sees
instead: ``batches`` (default 2, as the authors' NB201 runs) independent
mini-batches of Gaussian images x ~ N(0, 1) with uniformly drawn labels,
each of the proxy's batch size. The network is the one that would be
trained (residual links kept, PyTorch's default initialisation from the
proxy's seed, BN in training mode). For each mini-batch b the gradient
g_b = ∂L_b/∂θ of the cross-entropy is taken separately, as the paper defines
it, and

    zico = Σ over conv/linear layers l of log( Σ_{θ ∈ l, σ_θ > 0} mean_b |g_b,θ| / σ_θ )

with σ_θ the standard deviation of g_b,θ over the batches (population,
ddof 0, as ``np.std``). A layer whose sum is 0 is left out, as in the
authors' code; a network where every layer is left out has no score.

``gradients="accumulated"`` reproduces the authors' code instead
(SLDGroup/ZiCo ``compute_zico.py`` calls ``loss.backward()`` per batch
without zeroing the gradients, so its b-th "gradient" is g_1 + … + g_b); the
published ZiCo figures were computed that way. The default follows the
paper's definition (statistics of independent per-batch gradients).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import HwnasError, ProxyError
from hwnas.search.proxies.base import Proxy, build_network, gaussian_input, register_proxy


def zico_of_gradients(per_layer: list[torch.Tensor]) -> float:
    """Σ_l log Σ mean|g|/std over layers, each given as a (batches, parameters) tensor of gradients."""
    total, used = 0.0, 0
    for g in per_layer:
        g = g.double()
        std = g.std(dim=0, unbiased=False)
        keep = std > 0
        s = float((g.abs().mean(dim=0)[keep] / std[keep]).sum())
        if s > 0:
            total += math.log(s)
            used += 1
    if used == 0:
        raise ProxyError("proxy 'zico': no layer has gradients that vary across batches; the candidate is rejected")
    return total


@register_proxy("zico")
class ZiCo(Proxy):
    options = {"batches": 2, "gradients": "per_batch"}
    needs_data = False  # defined on real data; here it sees Gaussian images and random labels

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if int(self.batches) < 2:
            raise HwnasError(f"zico needs at least 2 batches (a standard deviation across them), got {self.batches}")
        if self.gradients not in ("per_batch", "accumulated"):
            raise HwnasError(f"unknown gradients {self.gradients!r}; expected 'per_batch' (paper) or "
                             "'accumulated' (the authors' code)")

    def evaluate(self, space, arch, generator):
        res, batch = self.resolution_for(space), self.batch_for(space)
        net = build_network(space, arch, generator, init="default", device=self.device, dtype=self.dtype)
        net.train()
        weights = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        grads: list[list[torch.Tensor]] = [[] for _ in weights]
        for _ in range(int(self.batches)):
            x = gaussian_input(generator, batch, res, self.device, self.dtype)
            labels = torch.randint(0, space.num_classes, (batch,), generator=generator, device=self.device)
            loss = F.cross_entropy(net(x), labels)
            for store, g, w in zip(grads, torch.autograd.grad(loss, weights, allow_unused=True), weights):
                g = (torch.zeros_like(w) if g is None else g).flatten()
                store.append(g + store[-1] if store and self.gradients == "accumulated" else g)
        return zico_of_gradients([torch.stack(g) for g in grads]), {}
