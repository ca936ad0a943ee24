"""ONNX Runtime backend: CPU execution provider (the phone-class target) or CUDA provider.

Settings: ``device`` (``cpu`` or ``cuda``), ``threads`` (intra-op threads,
default 1: on 2-core shared machines one thread is the stable choice),
``batch`` (default 1), ``precision`` (``fp32``; ``fp16`` only on CUDA, where
the exported graph is converted to half). Graph optimizations are on
(ORT_ENABLE_ALL), execution is sequential, one inter-op thread.

Timing: warm-up runs, then ``repeats`` samples; each sample is the mean of
enough back-to-back runs to last at least ``min_sample_ms`` (so that tiny parts
are not dominated by timer resolution). Each run passes a numpy input and
returns a numpy output, so every timing includes the hand-off of the input and
output activations; the predictor's calibration accounts for that. With one
intra-op thread, samples during which the process did not hold the CPU are
discarded (see ``_OrtTimer``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from hwnas.errors import BackendUnavailable, HwnasError
from hwnas.latency.backends import register_backend
from hwnas.latency.export import export_onnx
from hwnas.latency.timing import Measurement, timed_sessions


PREEMPTION_RATIO = 0.9


def ort_session(model, *, provider: str = "CPUExecutionProvider", threads: int | None = None,
                optimized_model_path=None):
    """An ONNX Runtime session for an ONNX file or a model's bytes: all graph optimizations, sequential
    execution, one inter-op thread, ``threads`` intra-op threads (ORT's default when None), warnings off;
    with ``optimized_model_path`` ORT writes the graph it optimized there."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if optimized_model_path is not None:
        opts.optimized_model_filepath = str(optimized_model_path)
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), sess_options=opts,
                                providers=[provider])


@register_backend("onnxruntime")
class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, device: str = "cpu", threads: int = 1, batch: int = 1, precision: str = "fp32",
                 warmup: int = 10, repeats: int = 25, min_sample_ms: float = 2.0, **_ignored):
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendUnavailable(f"onnxruntime is not installed ({err}); pip install onnxruntime") from None
        if device not in ("cpu", "cuda"):
            raise HwnasError(f"onnxruntime device must be 'cpu' or 'cuda', got {device!r}")
        if precision not in ("fp32", "fp16"):
            raise HwnasError(f"precision must be fp32 or fp16, got {precision!r}")
        if device == "cpu" and precision != "fp32":
            raise BackendUnavailable("onnxruntime on CPU is profiled in fp32 only (its CPU kernels for fp16 convs are "
                                     "not the fast path); use --precision fp32")
        self._provider = "CPUExecutionProvider" if device == "cpu" else "CUDAExecutionProvider"
        if self._provider not in ort.get_available_providers():
            raise BackendUnavailable(f"onnxruntime has no {self._provider} here (available: "
                                     f"{', '.join(ort.get_available_providers())})")
        if int(threads) < 1 or int(batch) < 1:
            raise HwnasError("threads and batch must be positive integers")
        self._ort = ort
        self.settings = {"device": device, "threads": int(threads), "batch": int(batch), "precision": precision}
        self.warmup, self.repeats, self.min_sample_ms = int(warmup), int(repeats), float(min_sample_ms)

    def versions(self) -> dict:
        return {"onnxruntime": self._ort.__version__}

    def export(self, module, input_shape, path, *, batch=None) -> None:
        """Write the ONNX file this backend times for ``module``."""
        export_onnx(module, tuple(input_shape), int(batch or self.settings["batch"]), path,
                    half=self.settings["precision"] == "fp16")

    def prepare(self, module, input_shape, *, batch=None, warmup=None) -> "_OrtTimer":
        batch = int(batch or self.settings["batch"])
        tmp = tempfile.TemporaryDirectory(prefix="hwnas-ort-")
        try:
            path = Path(tmp.name) / "part.onnx"
            self.export(module, input_shape, path, batch=batch)
            return self.prepare_onnx(path, batch=batch, warmup=warmup, tmp=tmp)
        except BaseException:
            tmp.cleanup()
            raise

    def measure_module(self, module, input_shape, *, batch=None, warmup=None, repeats=None,
                       sessions: int = 1) -> Measurement:
        batch = int(batch or self.settings["batch"])
        with tempfile.TemporaryDirectory(prefix="hwnas-ort-") as tmp:  # exported once for all the sessions
            path = Path(tmp) / "part.onnx"
            self.export(module, input_shape, path, batch=batch)
            return timed_sessions(lambda: self.prepare_onnx(path, batch=batch, warmup=warmup),
                                  self.repeats if repeats is None else int(repeats), sessions)

    def prepare_onnx(self, path, *, batch=None, warmup=None, tmp=None) -> "_OrtTimer":
        if not Path(path).is_file():
            raise HwnasError(f"no ONNX file at {path}")
        session = ort_session(path, provider=self._provider, threads=self.settings["threads"])
        inp = session.get_inputs()[0]
        shape = [d if isinstance(d, int) and d > 0 else None for d in inp.shape]
        if shape[0] is None:
            shape[0] = int(batch or self.settings["batch"])
        if any(d is None for d in shape[1:]):
            raise HwnasError(f"{path}: input {inp.name!r} has a symbolic non-batch dimension {inp.shape}")
        dtype = np.float16 if "float16" in inp.type else np.float32
        feed = {inp.name: np.random.default_rng(0).standard_normal(shape).astype(dtype)}
        warmup = self.warmup if warmup is None else int(warmup)
        # Warm-up, and size each sample so it lasts at least min_sample_ms.
        t0 = time.perf_counter()
        for _ in range(max(1, warmup)):
            session.run(None, feed)
        one = (time.perf_counter() - t0) * 1e3 / max(1, warmup)
        inner = max(1, int(np.ceil(self.min_sample_ms / max(one, 1e-6))))
        check = self.settings["device"] == "cpu" and self.settings["threads"] == 1
        return _OrtTimer(session, feed, inner, check, tmp)


class _OrtTimer:
    """One ORT session. A sample is the mean of ``inner`` back-to-back runs.

    On a shared machine another process may take the core in the middle of a
    sample. With one intra-op thread ORT computes on the calling thread, so a
    sample whose process CPU time falls short of its wall time was preempted
    and is reported invalid (``take_samples`` replaces it).
    """

    def __init__(self, session, feed, inner: int, check: bool, tmp=None):
        self.session, self.feed, self.inner, self.check, self._tmp = session, feed, inner, check, tmp

    def sample(self) -> tuple[float, bool]:
        run, feed = self.session.run, self.feed
        t, c = time.perf_counter(), time.process_time()
        for _ in range(self.inner):
            run(None, feed)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        return wall * 1e3 / self.inner, not self.check or cpu >= PREEMPTION_RATIO * wall

    def close(self) -> None:
        self.session = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
