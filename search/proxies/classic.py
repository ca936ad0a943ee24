"""The classic zero-cost proxies, each as its original paper defines it.

All four score the network as it would be trained (residual links kept,
PyTorch's default initialisation drawn from the proxy's seed) on Gaussian
inputs, not real images, so they need no data set:

- ``grad_norm`` — Σ over conv/linear layers of ‖∂L/∂W‖₂ (Frobenius), L the
  cross-entropy of one mini-batch against uniformly drawn labels
  (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021).
- ``snip`` — Σ over conv/linear weights of |W ⊙ ∂L/∂W|, the connection
  sensitivity of Lee et al., "SNIP", ICLR 2019, with the same loss.
- ``synflow`` — Tanaka et al., "Pruning neural networks without any data by
  iteratively conserving synaptic flow", NeurIPS 2020, as Abdelfattah et al.
  apply it to NAS: BatchNorm removed, every weight replaced by its absolute
  value, one all-ones input, R = Σ f(1) computed in float64, score =
  Σ |θ ⊙ ∂R/∂θ| over conv/linear weights. Positive (the ZenNAS copy
  returns its negative; this one does not).
- ``naswot`` — Mellor et al., "Neural Architecture Search without Training",
  ICML 2021: every ReLU's input is coded as 1 where positive, 0 elsewhere;
  K[i, j] = Σ over units of [c_i = c_j] = N_A − Hamming(c_i, c_j) over the
  images of a batch; score = log |det K|.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from hwnas.errors import ProxyError
from hwnas.search.proxies.base import Proxy, build_network, features, gaussian_input, register_proxy

_WEIGHTED = (nn.Conv2d, nn.Linear)


def _layers(net: nn.Module) -> list[nn.Module]:
    """The convolutions and linear layers of ``net``: the weights the gradient proxies look at."""
    return [m for m in net.modules() if isinstance(m, _WEIGHTED)]


def _weights(net: nn.Module):
    return [m.weight for m in _layers(net)]


class _LossProxy(Proxy):
    """Shared by the proxies of one mini-batch with cross-entropy against random labels (grad_norm, snip and the
    NASLib set): a network in PyTorch's default initialisation, in train mode, a Gaussian batch, uniform labels."""

    def _setup(self, space, arch, generator):
        res, batch = self.resolution_for(space), self.batch_for(space)
        net = build_network(space, arch, generator, init="default", device=self.device, dtype=self.dtype)
        net.train()
        x = gaussian_input(generator, batch, res, self.device, self.dtype)
        labels = torch.randint(0, space.num_classes, (batch,), generator=generator, device=self.device)
        return net, x, labels

    def _gradients(self, space, arch, generator):
        net, x, labels = self._setup(space, arch, generator)
        loss = F.cross_entropy(net(x), labels)
        weights = _weights(net)
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
        return [(w, g) for w, g in zip(weights, grads) if g is not None]


@register_proxy("grad_norm")
class GradNorm(_LossProxy):
    def evaluate(self, space, arch, generator):
        pairs = self._gradients(space, arch, generator)
        return float(sum(g.double().norm().item() for _, g in pairs)), {}


@register_proxy("snip")
class Snip(_LossProxy):
    def evaluate(self, space, arch, generator):
        pairs = self._gradients(space, arch, generator)
        return float(sum((w.double() * g.double()).abs().sum().item() for w, g in pairs)), {}


def _drop_batchnorm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            _drop_batchnorm(child)


@register_proxy("synflow")
class Synflow(Proxy):
    def evaluate(self, space, arch, generator):
        res = self.resolution_for(space)
        net = build_network(space, arch, generator, init="default", device=self.device, dtype=torch.float64)
        _drop_batchnorm(net)
        net.eval()
        with torch.no_grad():
            for p in net.parameters():
                p.abs_()
        out = net(torch.ones(1, 3, res, res, device=self.device, dtype=torch.float64))
        weights = _weights(net)
        grads = torch.autograd.grad(out.sum(), weights, allow_unused=True)
        value = sum((w * g).abs().sum().item() for w, g in zip(weights, grads) if g is not None)
        if not math.isfinite(value):
            raise ProxyError("proxy 'synflow' overflowed float64 (the network is too deep for its product of "
                             "absolute weights); the candidate is rejected")
        return float(value), {"log_synflow": math.log(value) if value > 0 else float("-inf")}


_RELUS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}


class _ReluCodes(TorchFunctionMode):
    """Adds every ReLU input's binary code to the NASWOT kernel (module or functional ReLU alike)."""

    def __init__(self, batch: int, device):
        super().__init__()
        self.kernel = torch.zeros(batch, batch, dtype=torch.float64, device=device)
        self.units = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _RELUS:
            x = args[0].detach().flatten(1)
            # exact integer sums: float32 holds them while a layer has < 2**24 units
            dtype = torch.float32 if x.shape[1] < 2**24 else torch.float64
            c = (x > 0).to(dtype)
            same = c @ c.T + (1 - c) @ (1 - c).T
            self.kernel += same.double()
            self.units += x.shape[1]
        return func(*args, **(kwargs or {}))


@register_proxy("naswot")
class Naswot(Proxy):
    def evaluate(self, space, arch, generator):
        res, batch = self.resolution_for(space), self.batch_for(space)
        net = build_network(space, arch, generator, init="default", device=self.device, dtype=self.dtype)
        net.train()
        x = gaussian_input(generator, batch, res, self.device, self.dtype)
        codes = _ReluCodes(batch, self.device)
        with torch.no_grad(), codes:
            features(net, x)
        return naswot_logdet(codes.kernel.cpu().numpy()), {"relu_units": codes.units}


def naswot_logdet(kernel: np.ndarray) -> float:
    """log |det K| of the NASWOT kernel; a singular kernel (two identical codes) has no finite score."""
    sign, logdet = np.linalg.slogdet(kernel)
    if sign == 0 or not math.isfinite(logdet):
        raise ProxyError("proxy 'naswot' got a singular kernel (two inputs share every ReLU code); "
                         "the candidate is rejected")
    return float(logdet)
