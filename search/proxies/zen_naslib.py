"""The Zen-score as NASLib / NAS-Bench-Suite-Zero compute it (``zen_naslib``), beside hwnas's ``zen``.

NASLib's ``measures/zen.py`` follows the Zen-NAS code line by line (Gaussian
N(0, 1) conv/linear weights and zero biases, BN weight 1 and bias 0,
x + 0.01·ε mixup of two Gaussian batches, Δ = mean_batch Σ_{C,H,W} |f(x) −
f(x + αε)| with f the input of the global average pool, plus
Σ_BN log sqrt(mean running_var) read after both passes), but it scores the
network it is given — the network as it would be trained. Zen-NAS instead
builds every candidate with ``no_reslink=True``. On NB201 that is the one
difference from hwnas's ``zen`` that changes a score at initialisation:

- ``zen`` drops the shortcut (2×2 average pool → 1×1 conv) of the two
  residual reduction blocks, as Zen-NAS prescribes; ``zen_naslib`` keeps it.
- The cells' ``skip_connect`` edges are operations of the cell and stay in
  both (neither Zen-NAS's ``no_reslink`` nor NASLib removes them).
- NASLib's NB201 cells use BN with ``affine=False``; at initialisation
  (weight 1, bias 0) that changes nothing. Their running variance is
  tracked in the NASLib version that produced the published scores (a
  BN without running statistics would fail in ``torch.mean(None)``).
- f(x) is taken at the same place (after the head's BN + ReLU), the input is
  Gaussian in both, the mixup is the same.

``bn="eval"`` runs the network in evaluation mode instead (BN normalises
with its initial running statistics, mean 0 and variance 1, so it is an
identity and the BN term is 0): what a caller that hands NASLib an
``eval()``-mode network gets. Both give every cell a score or a ProxyError:
Δ = 0 (the output is cut off by ``none`` edges) has no logarithm, and an
activation that overflows float32 (eval mode) is not finite.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hwnas.errors import HwnasError, ProxyError
from hwnas.search.proxies.base import Proxy, build_network, features, gaussian_input, register_proxy

_BN = nn.modules.batchnorm._BatchNorm


@register_proxy("zen_naslib")
class ZenNaslib(Proxy):
    options = {"alpha": 0.01, "bn": "train"}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.bn not in ("train", "eval"):
            raise HwnasError(f"unknown bn {self.bn!r}; expected 'train' (batch statistics) or 'eval'")

    def evaluate(self, space, arch, generator):
        res, batch = self.resolution_for(space), self.batch_for(space)
        net = build_network(space, arch, generator, init="gaussian", device=self.device, dtype=self.dtype)
        net.train(self.bn == "train")
        x = gaussian_input(generator, batch, res, self.device, self.dtype)
        eps = gaussian_input(generator, batch, res, self.device, self.dtype)
        with torch.no_grad():
            f1 = features(net, x)
            f2 = features(net, x + self.alpha * eps)
            delta = (f1 - f2).abs().flatten(1).sum(1, dtype=torch.float64).mean().item()
        if not math.isfinite(delta):
            raise ProxyError(f"proxy 'zen_naslib': the features overflow {self.dtype_name} (Δ = {delta}); "
                             "the candidate is rejected")
        if delta <= 0:
            raise ProxyError("proxy 'zen_naslib': Δ = 0 (the output does not depend on the input: `none` edges "
                             "cut it off), so log Δ is undefined; the candidate is rejected")
        bn = sum(math.log(math.sqrt(m.running_var.double().mean().item())) for m in net.modules()
                 if isinstance(m, _BN) and m.running_var is not None)
        return math.log(delta) + bn, {"log_delta": math.log(delta), "bn": bn}
