"""Latency backends: one small protocol and a registry that finds them.

A backend prepares a torch module (exported or run as its runtime needs) or
an ONNX file under fixed settings as a warmed-up
:class:`hwnas.latency.timing.Timer`; timing statistics and the interleaved
timing of whole networks live in :mod:`hwnas.latency.timing`.
Adding a runtime is one new file in this package that defines a class with
``name``, ``settings``, ``repeats``, ``versions()``, ``export``, ``prepare``,
``prepare_onnx`` and ``measure_module`` and decorates it with
``@register_backend``: every module of the package is imported when a
backend is first asked for. Imports of the runtimes themselves are lazy: an
absent runtime or device raises :class:`hwnas.errors.BackendUnavailable`
naming what is missing, never a silent fallback.
"""

from __future__ import annotations

from typing import Protocol

from hwnas.errors import BackendUnavailable, HwnasError
from hwnas.latency.timing import Measurement, Timer
from hwnas.registry import Registry


class Backend(Protocol):
    name: str
    settings: dict  # everything that changes a timing: device, precision, batch, threads, ...
    repeats: int  # samples per measurement

    def versions(self) -> dict:
        """Versions of the runtime libraries this backend uses."""

    def prepare(self, module, input_shape: tuple[int, int, int], *, batch: int | None = None,
                warmup: int | None = None) -> Timer:
        """``module`` ready to time on inputs of ``(batch, *input_shape)``, warmed up."""

    def export(self, module, input_shape: tuple[int, int, int], path, *, batch: int | None = None) -> None:
        """Write the ONNX file of ``module`` that ``prepare_onnx`` times (BackendUnavailable for a backend that
        runs torch modules only)."""

    def prepare_onnx(self, path, *, batch: int | None = None, warmup: int | None = None) -> Timer:
        """An ONNX file ready to time (BackendUnavailable for a backend that runs torch modules only)."""

    def measure_module(self, module, input_shape: tuple[int, int, int], *, batch: int | None = None,
                       warmup: int | None = None, repeats: int | None = None, sessions: int = 1) -> Measurement:
        """Batch time of ``module`` on inputs of ``(batch, *input_shape)``: the fastest of ``sessions`` fresh
        sessions (engines), ``repeats`` samples in all (:func:`hwnas.latency.timing.timed_sessions`)."""


_BACKENDS = Registry(__name__)
register_backend = _BACKENDS.register


def backend_names() -> list[str]:
    return _BACKENDS.names()


def get_backend(name: str, **settings) -> Backend:
    """A backend by name with its settings; raises BackendUnavailable with the reason."""
    factory = _BACKENDS.get(name)
    if factory is None:
        raise HwnasError(f"unknown latency backend {name!r}; expected one of: {', '.join(backend_names())}")
    return factory(**settings)


def probe(name: str, **settings) -> str | None:
    """None if the backend can be created with these settings, else the reason it cannot."""
    try:
        get_backend(name, **settings)
    except BackendUnavailable as err:
        return str(err)
    return None
