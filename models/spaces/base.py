"""The search-space protocol and its registry.

A space turns text into architectures and back, builds torch modules, counts
them, samples and mutates them (how a network splits into timed parts is
latency's concern: :mod:`hwnas.latency.kernels`). Adding a space is one new file
in this package that defines a class with these methods and registers a factory
with ``@register_space``; the registry imports every module of the package.

Capabilities beyond :class:`Space` are protocols of their own, checked with
``isinstance``: :class:`FiniteSpace` (every architecture can be listed) and
:class:`StructureSpace` (architectures are Zen-NAS block structures).
"""

from __future__ import annotations

import random
from typing import Hashable, Protocol, Sequence, runtime_checkable

from torch import nn

from hwnas.errors import HwnasError
from hwnas.registry import Registry
from hwnas.models.counts import Counts


@runtime_checkable
class Space(Protocol):
    name: str  # registry name, e.g. "imagenet224"
    resolution: int  # input resolution the space is searched at
    num_classes: int
    default_proxy: str  # the proxy a search of the space uses unless told otherwise

    def parse(self, text: str) -> Hashable:
        """An architecture from its text; raises StructureError on malformed text."""

    def format(self, arch) -> str:
        """The canonical text of an architecture: ``parse(format(a)) == a``."""

    def build(self, arch, *, no_residual: bool = False, use_se: bool = False) -> nn.Module:
        """The torch module; it has ``forward_features`` (before global pooling)."""

    def counts(self, arch, *, use_se: bool = False) -> Counts:
        """Exact params / FLOPs / layers from the architecture alone."""

    def initial(self) -> Hashable:
        """The small starting architecture of a search."""

    def sample(self, rng: random.Random, max_params: float | None = None,
               max_flops: float | None = None) -> Hashable:
        """A random architecture within the given budgets."""

    def mutate(self, arch, rng: random.Random, num_blocks: int = 1) -> Hashable:
        """A mutant of ``arch`` (Zen-NAS Alg. 3 for the structure spaces); ``num_blocks`` is how many
        blocks the search asks to replace (a space without blocks may mutate one element regardless)."""

    def smallest(self) -> Hashable:
        """The smallest network of the space: no network of it has fewer params, FLOPs or layers."""

    def with_input(self, resolution: int | None = None, num_classes: int | None = None) -> "Space":
        """This space at another input resolution and/or class count (None keeps the current one)."""


@runtime_checkable
class FiniteSpace(Space, Protocol):
    """A space small enough to list: every architecture, in a fixed order."""

    def all_archs(self) -> Sequence[Hashable]:
        """Every architecture of the space."""


@runtime_checkable
class StructureSpace(Space, Protocol):
    """A space of Zen-NAS block structures (:class:`~hwnas.models.structure.Structure`): the DeepMAD
    effectiveness and ZenNAS's layer budget apply to its networks."""

    def effectiveness(self, arch) -> float:
        """DeepMAD's ρ of the network (:func:`hwnas.models.counts.effectiveness`)."""


_SPACES = Registry(__package__)  # hwnas.models.spaces: every module of it is imported to register its spaces


def register_space(name: str):
    """Class decorator: make a space available by name."""
    return _SPACES.register(name)


def get_space(name: str) -> Space:
    factory = _SPACES.get(name)
    if factory is None:
        raise HwnasError(f"unknown space {name!r}; expected one of: {', '.join(space_names())}")
    return factory()


def space_names() -> list[str]:
    return _SPACES.names()
