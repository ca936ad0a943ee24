"""Zen-score (Lin et al., "Zen-NAS: A Zero-Shot NAS for High-Performance Deep Image Recognition", ICCV 2021, Alg. 1).

One evaluation builds a fresh network without residual links, initialises
every conv/linear weight from N(0, 1) (biases 0) and every BatchNorm with
weight 1, bias 0 and fresh running statistics (mean 0, variance 1, momentum
0.1), keeps BN in training mode, and draws x, ε ~ N(0, 1) of shape
(batch, 3, r, r). Two forward passes, f(x) and f(x + αε) with α = 0.01, give

    Δ = mean over the batch of Σ_{C,H,W} |f(x) − f(x + αε)|      (feature map before global pooling)
    zen = log Δ + Σ_BN log sqrt(mean_c running_var)              (bn_term="running", the official code)

The running variance is read after both passes, as the official code reads
it: each pass updates it, so it ends at 0.81 + 0.09·v₁ + 0.1·v₂ (v the
unbiased batch variances). ``bn_term="batch"`` uses the paper's text instead:
the mini-batch standard deviation sqrt(mean_c σ²) of the first pass.

The two passes stay separate: a single batched pass of 2B samples would mix
both halves into one set of BN batch statistics and change the score.

The network and inputs are in channels-last memory format: oneDNN (CPU) and
cuDNN then convolve without layout reorders, about 1.6× faster per pass on a
2-core CPU at batch 64 × 32² (``benchmarks/bench_proxies.py``). The values are
the same computation summed in another float32 order: a single score differs
from the contiguous layout's by up to ~3e-4 relative, as much as either differs
from a float64 evaluation (docs/proxies.md), and the order also depends on the
thread count.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hwnas.errors import HwnasError, ProxyError
from hwnas.search.proxies.base import Proxy, build_network, features, gaussian_input, register_proxy

_BN = nn.modules.batchnorm._BatchNorm


@register_proxy("zen")
class ZenScore(Proxy):
    options = {"alpha": 0.01, "bn_term": "running", "se": False}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.bn_term not in ("running", "batch"):
            raise HwnasError(f"unknown bn_term {self.bn_term!r}; expected 'running' (official code) or 'batch' (paper)")

    def evaluate(self, space, arch, generator):
        res, batch = self.resolution_for(space), self.batch_for(space)
        net = build_network(space, arch, generator, init="gaussian", device=self.device, dtype=self.dtype,
                            no_residual=True, use_se=bool(self.se))
        net.train()
        net = net.to(memory_format=torch.channels_last)
        x = gaussian_input(generator, batch, res, self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        eps = gaussian_input(generator, batch, res, self.device, self.dtype).contiguous(
            memory_format=torch.channels_last)
        bns = [m for m in net.modules() if isinstance(m, _BN)]
        batch_std: dict[int, float] = {}
        hooks = []
        if self.bn_term == "batch":
            def record(module, inputs):
                if id(module) not in batch_std:
                    v = inputs[0].detach().double().var(dim=(0, 2, 3), unbiased=False)
                    batch_std[id(module)] = math.log(math.sqrt(v.mean().item()))
            hooks = [m.register_forward_pre_hook(record) for m in bns]
        try:
            with torch.no_grad():
                f1 = features(net, x)
                x.add_(eps, alpha=self.alpha)
                f2 = features(net, x)
                delta = (f1 - f2).abs_().flatten(1).sum(1, dtype=torch.float64).mean().item()
        finally:
            for h in hooks:
                h.remove()
        if self.bn_term == "batch":
            bn = sum(batch_std.values())
        else:
            bn = sum(math.log(math.sqrt(m.running_var.double().mean().item())) for m in bns
                     if m.running_var is not None)
        if not delta > 0:
            why = ("Δ = 0: the output does not depend on the input (on NB201, `none` edges cut it off), so log Δ = -inf"
                   if delta == 0 else f"Δ = {delta}: the features overflow {self.dtype_name}")
            raise ProxyError(f"proxy 'zen' gave a non-finite score ({why}); the candidate is rejected")
        log_delta = math.log(delta)
        return log_delta + bn, {"log_delta": log_delta, "bn": bn}
