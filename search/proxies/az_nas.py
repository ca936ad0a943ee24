"""AZ-NAS (Lee & Ham, "AZ-NAS: Assembling Zero-Cost Proxies for Network Architecture Search", CVPR 2024).

One evaluation builds the network as it would be trained (residual links
kept), initialises conv/linear weights Kaiming-normal (fan-in, ReLU gain:
N(0, 2/fan_in)), biases 0, BN weight 1 / bias 0 with batch statistics (BN in
training mode), and passes one Gaussian batch x ~ N(0, 1). The features
are the stem's output and every block's output (NB201: the 15 cells and 2
reduction blocks; ZenNAS: every block of the structure string). Then:

- **expressivity** — Σ over features of the entropy −Σ p log(p + 1e-8) of
  the normalised eigenvalues p = λ / Σλ of the channel covariance (features
  as B·H·W samples of C channels, mean removed);
- **progressivity** — the smallest increase of that entropy from one
  feature to the next (min over consecutive differences);
- **trainability** — the mean over consecutive blocks of 2 − σ − 1/(σ + 1e-6),
  σ the largest singular value of E[g_in g_outᵀ], g_out a random ±1
  gradient at a block's output and g_in its back-propagation to the
  block's input (space-to-depth when the block halves the resolution). A
  block that passes the gradient through unchanged (an identity cell)
  scores −inf, as in the authors' code, so the cell ranks last;
- **complexity** — the space's FLOPs (``space.counts``).

``az_nas`` aggregates them over a set of N architectures as the authors do:
score = Σ_m log(rank_m / N), ranks ascending with ties averaged. It is a
:class:`SetRelativeProxy`; the components are registered as ordinary
proxies too (``az_expressivity``, ``az_progressivity``, ``az_trainability``)
so that the benchmark can cache them and hybrids can use them.

Where this differs from the authors' code: eigenvalues are computed in
float64 and negative rounding residues clamped to 0 (a covariance is
positive semi-definite); a NaN component (a feature of all zeros) counts as
−inf, as the authors' code maps NaN to −inf.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from hwnas.errors import ProxyError
from hwnas.search.proxies.base import Proxy, SetRelativeProxy, build_network, gaussian_input, register_proxy

COMPONENTS = ("expressivity", "progressivity", "trainability", "complexity")
_CACHE: OrderedDict = OrderedDict()  # the components of the last few evaluations (the three proxies share one)


def _kaiming_fan_in(net: nn.Module) -> None:
    """Scale the N(0, 1) weights of ``build_network(init='gaussian')`` to N(0, 2/fan_in)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.mul_(math.sqrt(2.0 / fan_in))


def _blocks(net: nn.Module) -> list[nn.Module]:
    # NB201 networks keep stem, cells and reductions in ``layers``; ZenNAS networks their blocks in ``blocks``.
    for attr in ("layers", "blocks"):
        seq = getattr(net, attr, None)
        if isinstance(seq, (nn.Sequential, nn.ModuleList)):
            return list(seq)
    raise ProxyError(f"AZ-NAS needs a network of blocks (NB201 or ZenNAS), not a {type(net).__name__}")


def channel_entropy(feature: torch.Tensor) -> float:
    """Entropy of the normalised eigenvalues of the channel covariance of a (B, C, H, W) feature."""
    b, c, h, w = feature.shape
    x = feature.detach().double().permute(0, 2, 3, 1).reshape(b * h * w, c)
    x = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.eigvalsh(x.T @ x / x.shape[0]).clamp_min(0.0)
    p = s / s.sum()
    return float((-p * torch.log(p + 1e-8)).sum())


def block_trainability(f_in: torch.Tensor, f_out: torch.Tensor, generator: torch.Generator) -> float:
    """2 − σ − 1/(σ + 1e-6) of one block, σ the spectral norm of E[g_in g_outᵀ] (−inf for an identity)."""
    g_out = torch.randint(0, 2, f_out.shape, generator=generator, device=f_out.device).to(f_out.dtype) * 2 - 1
    (g_in,) = torch.autograd.grad(f_out, f_in, grad_outputs=g_out)
    if g_in.shape == g_out.shape and torch.equal(g_in, g_out):
        return float("-inf")
    if g_in.shape[2:] != g_out.shape[2:]:
        g_in = F.pixel_unshuffle(g_in, g_in.shape[2] // g_out.shape[2])
    bo, co, ho, wo = g_out.shape
    a = g_in.double().permute(0, 2, 3, 1).reshape(-1, g_in.shape[1])
    o = g_out.double().permute(0, 2, 3, 1).reshape(-1, co)
    sigma = float(torch.linalg.svdvals(a.T @ o / (bo * ho * wo)).max())
    return 2.0 - sigma - 1.0 / (sigma + 1e-6)


def az_components(proxy: Proxy, space, arch, generator: torch.Generator) -> dict[str, float]:
    """The four AZ-NAS components of one evaluation (shared by the registered proxies through a small cache)."""
    settings = sorted((k, v) for k, v in proxy.settings().items() if k != "proxy")
    key = (space.name, space.resolution, space.num_classes, str(arch), repr(settings),
           generator.get_state().numpy().tobytes())
    if key in _CACHE:
        out, state = _CACHE[key]
        generator.set_state(state)
        return dict(out)
    res, batch = proxy.resolution_for(space), proxy.batch_for(space)
    net = build_network(space, arch, generator, init="gaussian", device=proxy.device, dtype=proxy.dtype)
    _kaiming_fan_in(net)
    net.train()
    x = gaussian_input(generator, batch, res, proxy.device, proxy.dtype)
    feats = []
    for block in _blocks(net):
        x = block(x)
        feats.append(x)
    entropies = np.array([channel_entropy(f) for f in feats])
    train = [block_trainability(feats[i - 1], feats[i], generator) for i in reversed(range(1, len(feats)))]
    out = {"expressivity": float(entropies.sum()), "progressivity": float(np.min(np.diff(entropies))),
           "trainability": float(np.mean(train)), "complexity": float(space.counts(arch).flops)}
    out = {k: (float("-inf") if math.isnan(v) else v) for k, v in out.items()}
    _CACHE[key] = (dict(out), generator.get_state())
    while len(_CACHE) > 8:
        _CACHE.popitem(last=False)
    return out


def log_rank_sum(table, names=COMPONENTS) -> list[float]:
    """Σ over components of log(rank / N) within the set (ranks ascending, ties averaged; −inf/NaN rank last)."""
    n = len(table)
    if n == 0:
        return []
    total = np.zeros(n)
    for name in names:
        col = np.array([row[name] for row in table], dtype=float)
        col = np.where(np.isnan(col), -np.inf, col)
        total += np.log(stats.rankdata(col, method="average") / n)
    return [float(v) for v in total]


@register_proxy("az_nas")
class AZNAS(SetRelativeProxy):
    component_names = COMPONENTS
    component_proxies = {"expressivity": "az_expressivity", "progressivity": "az_progressivity",
                         "trainability": "az_trainability", "complexity": "flops"}

    def evaluate_components(self, space, arch, generator):
        return az_components(self, space, arch, generator)

    def aggregate(self, table):
        return log_rank_sum(table, self.component_names)


class _AZComponent(Proxy):
    component = ""

    def evaluate(self, space, arch, generator):
        value = az_components(self, space, arch, generator)[self.component]
        if value == float("-inf"):
            raise ProxyError(f"proxy {self.name!r} is -inf (a block passes the gradient through unchanged "
                             "or a feature is all zeros); the architecture ranks last")
        return value, {}


@register_proxy("az_expressivity")
class AZExpressivity(_AZComponent):
    component = "expressivity"


@register_proxy("az_progressivity")
class AZProgressivity(_AZComponent):
    component = "progressivity"


@register_proxy("az_trainability")
class AZTrainability(_AZComponent):
    component = "trainability"
