"""Latency backends: one small protocol, a registry, and shared timing statistics.

A backend times a torch module (exported or run as its runtime needs) or an
ONNX file under fixed settings and returns a :class:`Measurement` of the
*batch* time. Adding a runtime is one new file in this package that defines a
class with ``name``, ``settings``, ``versions()``, ``measure_module`` and
``measure_onnx`` and decorates it with ``@register_backend``. Imports of the
runtimes themselves are lazy: an absent runtime or device raises
:class:`hwnas.errors.BackendUnavailable` naming what is missing, never a
silent fallback.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from hwnas.errors import BackendUnavailable, HwnasError


@dataclass(frozen=True)
class Measurement:
    """Batch time statistics in milliseconds over ``repeats`` timed samples."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int

    @property
    def spread(self) -> float:
        """Relative width of the p10-p90 band around the median."""
        return (self.p90_ms - self.p10_ms) / self.median_ms if self.median_ms > 0 else float("inf")

    def as_dict(self) -> dict:
        return {"median_ms": self.median_ms, "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "repeats": self.repeats}


def summarize(samples_ms: Sequence[float]) -> Measurement:
    a = np.asarray(samples_ms, dtype=float)
    p10, med, p90 = np.percentile(a, [10, 50, 90])
    return Measurement(float(med), float(p10), float(p90), int(a.size))


class Backend(Protocol):
    name: str
    settings: dict  # everything that changes a timing: device, precision, batch, threads, ...

    def versions(self) -> dict:
        """Versions of the runtime libraries this backend uses."""

    def measure_module(self, module, input_shape: tuple[int, int, int], *, batch: int | None = None,
                       warmup: int | None = None, repeats: int | None = None) -> Measurement:
        """Batch time of ``module`` on inputs of ``(batch, *input_shape)``."""

    def measure_onnx(self, path, *, batch: int | None = None, warmup: int | None = None,
                     repeats: int | None = None) -> Measurement:
        """Batch time of an ONNX file (its first input's non-batch shape is taken from the file)."""


_BACKENDS: dict[str, Callable[..., Backend]] = {}
_MODULES = {"onnxruntime": "onnxruntime", "torch": "torch_backend", "tensorrt": "tensorrt"}


def register_backend(name: str):
    def wrap(factory):
        _BACKENDS[name] = factory
        return factory

    return wrap


def backend_names() -> list[str]:
    return sorted(_MODULES)


def get_backend(name: str, **settings) -> Backend:
    """A backend by name with its settings; raises BackendUnavailable with the reason."""
    if name not in _MODULES:
        raise HwnasError(f"unknown latency backend {name!r}; expected one of: {', '.join(backend_names())}")
    importlib.import_module(f"hwnas.latency.backends.{_MODULES[name]}")
    return _BACKENDS[name](**settings)


def probe(name: str, **settings) -> str | None:
    """None if the backend can be created with these settings, else the reason it cannot."""
    try:
        get_backend(name, **settings)
    except BackendUnavailable as err:
        return str(err)
    return None


def export_onnx(module, input_shape: tuple[int, int, int], batch: int, path, *, dynamic_batch: bool = False,
                half: bool = False) -> None:
    """Export a torch module to ONNX (TorchScript exporter, opset 17) at a fixed batch.

    The TorchScript exporter is used because it takes ~30 ms per small module
    where the dynamo exporter takes >1 s, which matters for thousands of parts.
    """
    import io
    import warnings

    import torch

    module = module.eval()
    x = torch.randn(batch, *input_shape)
    if half:
        module, x = module.half(), x.half()
    kwargs = dict(input_names=["input"], output_names=["output"], opset_version=17, do_constant_folding=True)
    if dynamic_batch:
        kwargs["dynamic_axes"] = {"input": {0: "batch"}, "output": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        buffer = io.BytesIO()
        try:
            torch.onnx.export(module, (x,), buffer, dynamo=False, **kwargs)
        except TypeError:  # torch without the ``dynamo`` keyword: the TorchScript exporter is the default
            torch.onnx.export(module, (x,), buffer, **kwargs)
    from pathlib import Path

    Path(path).write_bytes(buffer.getvalue())
