"""The search-space protocol and its registry.

A space turns text into architectures and back, builds torch modules, counts
them, samples and mutates them (how a network splits into timed parts is
latency's concern: :mod:`hwnas.latency.kernels`). Adding a space is one new
file that defines a class with these methods and decorates it with
``@register_space``.
"""

from __future__ import annotations

import random
from typing import Callable, Hashable, Protocol, runtime_checkable

from torch import nn

from hwnas.errors import HwnasError
from hwnas.models.counts import Counts


@runtime_checkable
class Space(Protocol):
    name: str  # registry name, e.g. "imagenet224"
    resolution: int  # input resolution the space is searched at
    num_classes: int

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

    def mutate(self, arch, rng: random.Random) -> Hashable:
        """A mutant of ``arch`` (Zen-NAS Alg. 3 for the structure spaces)."""


_SPACES: dict[str, Callable[[], Space]] = {}


def register_space(name: str):
    """Class decorator: make a space available by name."""

    def wrap(factory):
        _SPACES[name] = factory
        return factory

    return wrap


def get_space(name: str) -> Space:
    _load_builtin()
    try:
        return _SPACES[name]()
    except KeyError:
        raise HwnasError(f"unknown space {name!r}; expected one of: {', '.join(sorted(_SPACES))}") from None


def space_names() -> list[str]:
    _load_builtin()
    return sorted(_SPACES)


def _load_builtin() -> None:
    # Importing the modules runs their @register_space decorators.
    from hwnas.models.spaces import nb201, zennas  # noqa: F401
