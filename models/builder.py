"""Build a torch ``nn.Module`` from a structure: trunk blocks, global average pooling, classifier.

The module mirrors the official ZenNAS masternet: every BatchNorm has
eps = 1e-3; trunk ReLUs, the final pooling and the residual additions are
functional calls (so module hooks see convolutions, BN, SE and the classifier,
as the published zoo counts did); ``no_residual=True`` drops every residual
link and projection, as the Zen-score requires. ``forward_features`` returns
the feature map before global pooling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.models.structure import Structure, parse
from hwnas.models.units import Conv, Unit, block_units, se_reduced

BN_EPS = 1e-3


def _conv(spec: Conv, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(spec.cin, spec.cout, spec.kernel, spec.stride, spec.padding, groups=spec.groups, bias=bias)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class SqueezeExcite(nn.Module):
    """SE as the official ZenNAS module builds it: pool, 1×1 conv, BN, ReLU, 1×1 conv, BN, sigmoid."""

    def __init__(self, channels: int):
        super().__init__()
        reduced = se_reduced(channels)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, reduced, 1, bias=False),
            _bn(reduced),
            nn.ReLU(),
            nn.Conv2d(reduced, channels, 1, bias=False),
            _bn(channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class UnitModule(nn.Module):
    """One unit: convs with BN (ReLU between them), optional SE, optional shortcut, ReLU at the end."""

    def __init__(self, unit: Unit):
        super().__init__()
        self.convs = nn.ModuleList(_conv(c) for c in unit.convs)
        self.bns = nn.ModuleList(_bn(c.cout) for c in unit.convs)
        self.se_after = unit.se_after
        self.se = SqueezeExcite(unit.se_channels) if unit.se_after is not None else None
        self.shortcut = unit.shortcut
        self.proj = None
        if unit.shortcut == "proj":
            self.proj = nn.Sequential(nn.Conv2d(unit.cin, unit.cout, 1, unit.stride, bias=True), _bn(unit.cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        last = len(self.convs) - 1
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            y = bn(conv(y))
            if i < last:
                y = F.relu(y)
            if i == self.se_after:
                y = self.se(y)
        if self.proj is not None:
            y = y + self.proj(x)
        elif self.shortcut == "identity":
            y = y + x
        return F.relu(y)


class Network(nn.Module):
    """A network built from a structure string: ``forward_features`` then ``forward_head``."""

    def __init__(self, structure: Structure | str, num_classes: int = 1000, use_se: bool = False,
                 no_residual: bool = False):
        super().__init__()
        if isinstance(structure, str):
            structure = parse(structure)
        self.structure = structure
        self.num_classes = num_classes
        self.use_se = use_se
        self.no_residual = no_residual
        self.blocks = nn.ModuleList(
            nn.Sequential(*(UnitModule(u) for u in block_units(b, use_se and b.is_residual, no_residual)))
            for b in structure.blocks
        )
        self.fc = nn.Linear(structure.out_channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build(structure: Structure | str, num_classes: int = 1000, use_se: bool = False,
          no_residual: bool = False) -> Network:
    """The torch module of a structure (PyTorch's default initialisation)."""
    return Network(structure, num_classes=num_classes, use_se=use_se, no_residual=no_residual)
