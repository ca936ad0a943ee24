"""How a network of each space splits into timed parts: one module per space (see :mod:`.base`)."""

from hwnas.latency.kernels.base import PROJECTION, Decomposition, Part, conv_part, conv_spec, kernels_for

__all__ = ["PROJECTION", "Decomposition", "Part", "conv_part", "conv_spec", "kernels_for"]
