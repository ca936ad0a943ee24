"""MeCo (Jiang et al., "Zero-shot NAS via the Minimum Eigenvalue of Pearson Correlation", NeurIPS 2023).

The network as it would be trained (residual links kept, PyTorch's default
initialisation drawn from the proxy's seed, BN in training mode) sees ONE
Gaussian image x ~ N(0, 1). For the output f_i of every module of the
network (every entry of ``named_modules()``, containers included, as the
authors' forward hooks count them), reshaped to C_i channels × H·W
positions, P_i is the C_i × C_i Pearson correlation matrix between channels
(NaN and ±inf entries set to 0, so a constant channel contributes 0) and

    meco     = Σ_i λ_min(P_i)
    meco_opt = Σ_i (C_i / 8) · λ_min(P_i restricted to 8 random channels)

``meco_opt`` is the authors' cheaper variant: a correlation of 8 channels
drawn without replacement (from the proxy's generator) per module, scaled
by C_i / 8. A module's output that is not a tensor of at least two
dimensions (batch and features), or has one position per channel (its
term is 0), is skipped.

Input size: the authors' code feeds 1 × 3 × 64 × 64 whatever the data set,
so a 32×32 space's last stage still has more positions (16² = 256) than
channels (64) and P_i can be full rank. hwnas follows that: the default
resolution is max(64, the space's); ``resolution=`` overrides it. The value
depends on how finely the network is split into modules (every module is a
term); NB201 networks are built with the benchmark's own modules.
"""

from __future__ import annotations

import torch

from hwnas.search.proxies.base import Proxy, build_network, gaussian_input, register_proxy


def min_correlation_eigenvalue(rows: torch.Tensor) -> float:
    """λ_min of the Pearson correlation between the rows of a 2-D tensor (NaN/inf entries read as 0)."""
    corr = torch.corrcoef(rows.double())
    corr = torch.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)
    return float(torch.linalg.eigvalsh(corr).min())


class _MeCoBase(Proxy):
    sample_channels = 0  # 0: all channels (meco); n: n random channels scaled by C/n (meco_opt)

    def resolution_for(self, space) -> int:
        return self.resolution or max(64, space.resolution)

    def evaluate(self, space, arch, generator):
        net = build_network(space, arch, generator, init="default", device=self.device, dtype=self.dtype)
        net.train()
        x = gaussian_input(generator, 1, self.resolution_for(space), self.device, self.dtype)
        terms: list[float] = []

        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor) or output.dim() < 2:
                return
            fea = output[0].detach().reshape(output.shape[1], -1)
            if fea.shape[1] < 2:  # one position per channel: every correlation is NaN, read as 0, so λ_min = 0
                return
            if self.sample_channels:
                c = fea.shape[0]
                idx = torch.randperm(c, generator=generator, device=fea.device)[: self.sample_channels]
                terms.append(c / self.sample_channels * min_correlation_eigenvalue(fea[idx]))
            else:
                terms.append(min_correlation_eigenvalue(fea))

        handles = [m.register_forward_hook(hook) for m in net.modules()]
        try:
            with torch.no_grad():
                net(x)
        finally:
            for h in handles:
                h.remove()
        return float(sum(terms)), {"modules": len(terms)}


@register_proxy("meco")
class MeCo(_MeCoBase):
    sample_channels = 0


@register_proxy("meco_opt")
class MeCoOpt(_MeCoBase):
    sample_channels = 8
