"""The rest of the NASLib zero-cost set, by the names users expect: epe_nas, fisher, grasp, jacov, l2_norm, plain.

NASLib (automl/NASLib, ``predictors/utils/pruners/measures``, after
Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021)
scores each on one real mini-batch; here, as for grad_norm and snip
(``classic.py``), the network is the one that would be trained (residual
links kept, PyTorch's default initialisation from the proxy's seed, BN in
training mode) and sees one mini-batch of Gaussian images with uniformly
drawn labels. L is the cross-entropy of that batch; sums run over the
weights of every conv and linear layer, as NASLib sums its per-layer arrays.

- ``plain`` — Σ ∂L/∂W ⊙ W (signed).
- ``l2_norm`` — Σ over layers of ‖W‖_F (needs no input; the seed draws the initialisation).
- ``fisher`` — Theis et al. 2018 as NASLib computes it: for each layer's
  output a (pre-BN) and δ = ∂L/∂a, per channel k
  F_k = ½ · mean_n (Σ_{h,w} a δ)²; each F_k counts once per weight of
  its output channel (C_in·k·k times for a conv), as NASLib broadcasts it.
- ``grasp`` — Wang et al. 2020: Σ −W ⊙ (H g), g = ∂L/∂W and H g the
  Hessian-gradient product (a second backward pass through ⟨g, ∂L/∂W⟩).
- ``jacov`` — Mellor et al. 2021 (NASLib's variant): J the gradient of
  Σ outputs with respect to each input image, Σ_J their B×B correlation,
  score = −Σ over its eigenvalues v of log(v + 1e-5) + 1/(v + 1e-5).
- ``epe_nas`` — Lopes et al. 2021: the same per-image Jacobians grouped by
  label; per class c, s_c = Σ log(|corr_c| + 1e-5) over the entries of the
  class's correlation matrix; score = Σ_c |s_c| for ≤ 100 classes, else
  Σ_{c,c'} |s_c − s_c'| / #classes with each s_c divided by its matrix size.
  A class with fewer than two images has no correlation matrix and is
  left out (NASLib's contribution for it is |log(1 + 1e-5)| ≈ 1e-5 or an
  exception it skips).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import ProxyError
from hwnas.search.proxies.base import Proxy, build_network, register_proxy
from hwnas.search.proxies.classic import _LossProxy, _layers

@register_proxy("plain")
class Plain(_LossProxy):
    def evaluate(self, space, arch, generator):
        net, x, labels = self._setup(space, arch, generator)
        weights = [m.weight for m in _layers(net)]
        grads = torch.autograd.grad(F.cross_entropy(net(x), labels), weights, allow_unused=True)
        return float(sum((w.detach().double() * g.double()).sum() for w, g in zip(weights, grads) if g is not None)), {}


@register_proxy("l2_norm")
class L2Norm(Proxy):
    def evaluate(self, space, arch, generator):
        net = build_network(space, arch, generator, init="default", device=self.device, dtype=self.dtype)
        return float(sum(m.weight.detach().double().norm() for m in _layers(net))), {}


@register_proxy("fisher")
class Fisher(_LossProxy):
    def evaluate(self, space, arch, generator):
        net, x, labels = self._setup(space, arch, generator)
        layers = _layers(net)
        acts: dict[nn.Module, torch.Tensor] = {}

        def keep(module, inputs, output):
            acts[module] = output

        handles = [m.register_forward_hook(keep) for m in layers]
        try:
            loss = F.cross_entropy(net(x), labels)
        finally:
            for h in handles:
                h.remove()
        used = [m for m in layers if m in acts]
        grads = torch.autograd.grad(loss, [acts[m] for m in used], allow_unused=True)
        total = 0.0
        for m, g in zip(used, grads):
            if g is None:
                continue
            a, g = acts[m].detach().double(), g.double()
            g_nk = (a * g).sum(dim=tuple(range(2, a.dim()))) if a.dim() > 2 else a * g
            per_channel = 0.5 * g_nk.pow(2).mean(dim=0)
            total += float(per_channel.sum()) * (m.weight[0].numel())
        return total, {}


@register_proxy("grasp")
class Grasp(_LossProxy):
    def evaluate(self, space, arch, generator):
        net, x, labels = self._setup(space, arch, generator)
        weights = [m.weight for m in _layers(net)]
        g = torch.autograd.grad(F.cross_entropy(net(x), labels), weights, allow_unused=True)
        g_f = torch.autograd.grad(F.cross_entropy(net(x), labels), weights, create_graph=True, allow_unused=True)
        z = sum((a.detach() * b).sum() for a, b in zip(g, g_f) if a is not None and b is not None)
        if not isinstance(z, torch.Tensor) or not z.requires_grad:
            raise ProxyError("proxy 'grasp': the loss does not depend on any weight; the candidate is rejected")
        hg = torch.autograd.grad(z, weights, allow_unused=True)
        return float(sum((-w.detach().double() * h.double()).sum() for w, h in zip(weights, hg) if h is not None)), {}


def input_jacobians(net: nn.Module, x: torch.Tensor) -> np.ndarray:
    """∂(Σ outputs)/∂x per image, flattened: (B, 3·H·W)."""
    x = x.clone().requires_grad_(True)
    (j,) = torch.autograd.grad(net(x).sum(), x)
    return j.detach().double().reshape(x.shape[0], -1).cpu().numpy()


def jacov_score(jacobians: np.ndarray) -> float:
    corrs = np.corrcoef(jacobians)
    if not np.all(np.isfinite(corrs)):
        raise ProxyError("proxy 'jacov': a Jacobian is constant (zero variance), so its correlation is undefined; "
                         "the candidate is rejected")
    v = np.linalg.eigvalsh(corrs)
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


def epe_score(jacobians: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    k = 1e-5
    per_class = {}
    for c in np.unique(labels):
        rows = jacobians[labels == c]
        if len(rows) < 2:
            continue
        corrs = np.corrcoef(rows)
        s = float(np.sum(np.log(np.abs(corrs) + k)))
        per_class[int(c)] = s / len(corrs) if num_classes > 100 else s
    if not per_class or not all(math.isfinite(s) for s in per_class.values()):
        raise ProxyError("proxy 'epe_nas': no class has two images with a defined Jacobian correlation; "
                         "the candidate is rejected")
    s = np.array(list(per_class.values()))
    if num_classes <= 100:
        return float(np.abs(s).sum())
    return float(np.abs(s[:, None] - s[None, :]).sum() / len(s))


@register_proxy("jacov")
class Jacov(_LossProxy):
    def evaluate(self, space, arch, generator):
        net, x, _ = self._setup(space, arch, generator)
        return jacov_score(input_jacobians(net, x)), {}


@register_proxy("epe_nas")
class EpeNas(_LossProxy):
    def evaluate(self, space, arch, generator):
        net, x, labels = self._setup(space, arch, generator)
        return epe_score(input_jacobians(net, x), labels.cpu().numpy(), space.num_classes), {}
