"""Exact counts of a structure's network, computed from the structure alone (no module is built).

- ``params``: every trainable parameter of the built module (``Network``).
- ``flops``: multiply-accumulates under the rule the published ZenNet table used
  (ptflops on the module): convolutions (c_in/groups·k² per output element, plus
  one per output element for a conv bias), BatchNorm (two per element), the
  classifier (c_in·classes + classes), and inside SE its pooling (one per input
  element), its ReLU (one per element), its convs and BNs. Trunk ReLUs,
  sigmoid, the SE multiply, residual additions and the final pooling count 0.
- ``conv_linear_macs``: convolutions and the classifier's multiplications only
  (``torch.utils.flop_counter`` reports twice this).
- ``layers``: the sum of sub-layer counts ``L`` over the blocks, as ZenNAS's
  ``--max_layers`` budget counts it (not a count of convolutions).

These are the true counts of the network. The official search's own
``get_model_size`` / ``get_FLOPs`` undercount (one value per BN channel, the FC
bias as one value, stride-2 projection shortcuts at a quarter of their cost);
see the README.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from hwnas.models.structure import Structure
from hwnas.models.units import Unit, block_units, out_size, se_reduced, units


@dataclass(frozen=True)
class Counts:
    params: int
    flops: int
    conv_linear_macs: int
    layers: int
    resolution: int
    num_classes: int
    use_se: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _unit_costs(unit: Unit, size: int) -> tuple[int, int, int, int]:
    """(params, table MACs, conv MACs, output size) of one unit at input size ``size``."""
    params = flops = macs = 0
    h = size
    for i, conv in enumerate(unit.convs):
        h = out_size(h, conv.stride)
        area = h * h
        params += conv.weights + 2 * conv.cout
        conv_macs = conv.weights * area
        macs += conv_macs
        flops += conv_macs + 2 * conv.cout * area
        if i == unit.se_after:
            c = conv.cout
            r = se_reduced(c)
            params += 2 * c * r + 2 * r + 2 * c
            macs += 2 * c * r
            # pool over the input, squeeze conv, BN, ReLU, excite conv, BN
            flops += c * area + c * r + 2 * r + r + r * c + 2 * c
    if unit.shortcut == "proj":
        area = h * h
        params += unit.cin * unit.cout + unit.cout + 2 * unit.cout
        macs += unit.cin * unit.cout * area
        flops += unit.cin * unit.cout * area + unit.cout * area + 2 * unit.cout * area
    return params, flops, macs, h


def count(structure: Structure, resolution: int = 224, num_classes: int = 1000, use_se: bool = False,
          no_residual: bool = False) -> Counts:
    """Params, table-rule FLOPs, conv+linear MACs and layers of the built network."""
    params = flops = macs = 0
    h = resolution
    for _, unit in units(structure, use_se=use_se, no_residual=no_residual):
        p, f, m, h = _unit_costs(unit, h)
        params += p
        flops += f
        macs += m
    c = structure.out_channels
    params += c * num_classes + num_classes
    flops += c * num_classes + num_classes
    macs += c * num_classes
    return Counts(params, flops, macs, num_layers(structure), resolution, num_classes, use_se)


def num_layers(structure: Structure) -> int:
    """ZenNAS's layer count: the sum of ``L`` over all blocks, stem and last conv included."""
    return sum(b.sub_layers for b in structure.blocks)


def output_resolution(structure: Structure, resolution: int) -> int:
    h = resolution
    for b in structure.blocks:
        h = out_size(h, b.stride)
    return h


@dataclass(frozen=True)
class Stage:
    """One block of the string seen as a stage: its widths, depth and resolution."""

    index: int
    name: str
    in_channels: int
    out_channels: int
    mid: int | None
    stride: int
    sub_layers: int
    convs: int
    in_resolution: int
    out_resolution: int


def stages(structure: Structure, resolution: int = 224) -> list[Stage]:
    """Per-block widths, depths and resolutions (a block of the string is a stage)."""
    out = []
    h = resolution
    for i, b in enumerate(structure.blocks):
        h_out = out_size(h, b.stride)
        convs = sum(len(u.convs) for u in block_units(b))
        out.append(Stage(i, b.name, b.in_channels, b.out_channels, b.mid, b.stride, b.sub_layers, convs, h, h_out))
        h = h_out
    return out


def main_path_convs(structure: Structure):
    """The convolutions along the main path, in order (no shortcuts, no SE)."""
    for _, unit in units(structure):
        yield from unit.convs


def effectiveness(structure: Structure) -> float:
    """Incorporated-NAS / DeepMAD effectiveness ρ = L·(∏ w_i)^(−1/L), w_i = c_i·k_i²/g_i.

    L is the number of convolutions along the main path and c_i the input
    channels of conv i; computed in log space so deep networks do not overflow.
    """
    convs = list(main_path_convs(structure))
    depth = len(convs)
    log_width = sum(math.log(c.cin * c.kernel * c.kernel / c.groups) for c in convs) / depth
    return depth * math.exp(-log_width)
