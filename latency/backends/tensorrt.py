"""TensorRT (10 or 11 Python API), installed with the ``[tensorrt]`` extra: engine build, engine run, timing.

This module is the one place hwnas talks to TensorRT: profiling times parts
and networks through :class:`TensorRTBackend`, and ``hwnas deploy`` builds,
verifies and times its engines with :func:`build_engine` and :class:`Engine`.

An ONNX graph is parsed and built into an engine whose optimization profile
ends at the given batch (from batch 1 with ``dynamic_batch``), with a
persistent timing cache per GPU model and TensorRT version
(:func:`default_timing_cache`). A sample is one ``execute_async_v3`` between
CUDA events on a dedicated stream. Device buffers come from torch's CUDA
allocator, so no other CUDA binding is needed.

Precision: on TensorRT 10, FP16 is requested with ``BuilderFlag.FP16`` on an
FP32 graph. TensorRT 11 removed that flag and networks are always strongly
typed, so the precision comes from the graph itself: modules are exported in
half precision, and an ONNX file given for fp16 must already be an FP16
graph. fp32 builds clear TF32, so fp32 means fp32.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from hwnas.atomic import atomic_write_bytes
from hwnas.errors import BackendUnavailable, HwnasError
from hwnas.latency.backends import register_backend
from hwnas.latency.export import export_onnx
from hwnas.latency.timing import Measurement, timed_sessions


def load_tensorrt():
    """The tensorrt module (10 or 11) with a visible CUDA GPU, or BackendUnavailable naming what is missing."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendUnavailable(f"tensorrt is not installed ({err}); install the [tensorrt] extra on a machine "
                                 "with an NVIDIA GPU (pip install 'hwnas[tensorrt]')") from None
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable(f"no CUDA GPU is visible (tensorrt {trt.__version__} is installed); TensorRT "
                                 "engines are built on the GPU they run on")
    if _major(trt) not in (10, 11):
        raise BackendUnavailable(f"tensorrt {trt.__version__} found; expected TensorRT 10 or 11")
    return trt


def _major(trt) -> int:
    return int(trt.__version__.split(".")[0])


def default_timing_cache() -> Path:
    """One timing cache per GPU model and TensorRT version, reused by every build."""
    import tensorrt as trt
    import torch

    gpu = "".join(c if c.isalnum() else "-" for c in torch.cuda.get_device_name()).strip("-")
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hwnas" / "tensorrt"
    return root / f"{gpu}-trt{trt.__version__}.timing-cache"


def build_engine(onnx_path, *, precision: str, batch: int, dynamic_batch: bool = False,
                 timing_cache: Path | None = None, workspace_gib: float = 4.0) -> tuple[bytes, dict]:
    """A serialized engine for the ONNX file at ``onnx_path`` (largest and optimal batch ``batch``, smallest 1
    with ``dynamic_batch``), and what it was built with. The timing cache is read (a damaged one is replaced)
    and written back atomically."""
    import torch

    trt = load_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 11 removed the weak-typing flags: its networks are always strongly typed.
    strongly_typed = _major(trt) >= 11 or not hasattr(trt.BuilderFlag, "FP16")
    network = builder.create_network(0)  # explicit batch is the only mode on TensorRT 10 and 11
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise HwnasError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    inp = network.get_input(0)
    if precision == "fp16" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "fp16" and inp.dtype != trt.DataType.HALF:
        raise HwnasError(f"{onnx_path}: TensorRT {trt.__version__} is strongly typed, so fp16 needs an FP16 "
                         "ONNX graph; this one has a non-half input")
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: no TF32 tensor-core rounding
    shape = tuple(inp.shape)
    if any(d < 0 for d in shape[1:]):
        raise HwnasError(f"{onnx_path}: input {inp.name} has a dynamic non-batch dimension {shape}")
    opt = (batch, *shape[1:])
    low = (1, *shape[1:]) if dynamic_batch else opt
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, low, opt, opt)
    config.add_optimization_profile(profile)
    timing_cache = Path(timing_cache) if timing_cache is not None else default_timing_cache()
    blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
    try:
        cache = config.create_timing_cache(blob)
    except Exception:  # a damaged cache file: TensorRT raises; start a fresh cache rather than fail the build
        cache = None
    reused = bool(blob) and cache is not None
    if cache is None:
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise HwnasError(f"TensorRT failed to build an engine for {onnx_path} (see its log above)")
    try:
        atomic_write_bytes(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    except OSError as err:
        raise HwnasError(f"cannot write the TensorRT timing cache {timing_cache}: {err.strerror}; "
                         "pass a writable --timing-cache") from None
    info = {"version": trt.__version__, "device": torch.cuda.get_device_name(),
            "strongly_typed": strongly_typed, "fp16_flag": bool(precision == "fp16" and not strongly_typed),
            "profile": {"min": list(low), "opt": list(opt), "max": list(opt)},
            "timing_cache": str(timing_cache), "timing_cache_reused": reused}
    return bytes(memoryview(engine)), info


class Engine:
    """A deserialized engine (one input, one output) and its execution context."""

    def __init__(self, serialized: bytes, what: str = "the engine"):
        import torch

        trt = load_tensorrt()
        self._torch, self._trt = torch, trt
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(serialized)
        if self._engine is None:
            raise HwnasError(f"TensorRT could not load {what} (built by another TensorRT version or GPU?)")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise HwnasError(f"{what} has inputs {inputs} and outputs {outputs}; expected one of each")
        self._input, self._output = inputs[0], outputs[0]
        self._dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                        trt.DataType.INT32: torch.int32, trt.DataType.INT64: torch.int64}

    def _bind(self, x):
        """Input and output buffers on the GPU for input ``x`` (a torch tensor), bound to the context."""
        torch, engine, context = self._torch, self._engine, self._context
        context.set_input_shape(self._input, tuple(x.shape))
        inp = x.to("cuda", self._dtypes[engine.get_tensor_dtype(self._input)]).contiguous()
        out = torch.empty(tuple(context.get_tensor_shape(self._output)), device="cuda",
                          dtype=self._dtypes[engine.get_tensor_dtype(self._output)])
        context.set_tensor_address(self._input, inp.data_ptr())
        context.set_tensor_address(self._output, out.data_ptr())
        return inp, out

    def run(self, x) -> np.ndarray:
        """The engine's output for input ``x`` (array or tensor), as float32 numpy."""
        torch = self._torch
        _, out = self._bind(torch.as_tensor(x))
        stream = torch.cuda.current_stream()  # the stream the buffers were filled on
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise HwnasError("TensorRT failed to run the engine")
        stream.synchronize()
        return out.float().cpu().numpy()

    def timer(self, batch: int, warmup: int) -> "_TrtTimer":
        """The engine bound to random inputs of ``batch``, warmed up on a dedicated stream."""
        torch = self._torch
        shape = tuple(self._engine.get_tensor_shape(self._input))[1:]
        buffers = self._bind(torch.randn(batch, *shape))
        torch.cuda.synchronize()  # the buffers are filled before the timing stream reads them
        stream = torch.cuda.Stream()
        for _ in range(max(1, warmup)):
            self._context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return _TrtTimer(self, buffers, stream)


class _TrtTimer:
    """A sample is one ``execute_async_v3`` between CUDA events recorded on the timer's stream, synchronized on
    the end event."""

    def __init__(self, engine: Engine, buffers, stream):
        self._engine, self._buffers, self._stream = engine, buffers, stream

    def sample(self) -> tuple[float, bool]:
        torch, stream = self._engine._torch, self._stream
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        self._engine._context.execute_async_v3(stream.cuda_stream)
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end), True

    def close(self) -> None:
        self._engine = None
        self._buffers = ()


@register_backend("tensorrt")
class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, device: str = "cuda", precision: str = "fp16", batch: int = 64, warmup: int = 20,
                 repeats: int = 50, workspace_gib: float = 4.0, **_ignored):
        trt = load_tensorrt()
        import torch

        if device != "cuda":
            raise HwnasError(f"tensorrt runs on device cuda only, got {device!r}")
        if precision not in ("fp32", "fp16"):
            raise HwnasError(f"precision must be fp32 or fp16, got {precision!r}")
        self._trt, self._torch = trt, torch
        self.settings = {"device": "cuda", "precision": precision, "batch": int(batch)}
        self.warmup, self.repeats = int(warmup), int(repeats)
        self.workspace_gib = float(workspace_gib)

    def versions(self) -> dict:
        return {"tensorrt": self._trt.__version__, "torch": self._torch.__version__,
                "cuda": self._torch.version.cuda}

    def export(self, module, input_shape, path, *, batch=None) -> None:
        """Write the ONNX file this backend builds its engine from for ``module`` (TRT 11 is strongly typed: an
        fp16 engine needs an fp16 graph)."""
        half = self.settings["precision"] == "fp16" and _major(self._trt) >= 11
        export_onnx(module, tuple(input_shape), int(batch or self.settings["batch"]), path, dynamic_batch=True,
                    half=half)

    def prepare(self, module, input_shape, *, batch=None, warmup=None) -> _TrtTimer:
        batch = int(batch or self.settings["batch"])
        with tempfile.TemporaryDirectory(prefix="hwnas-trt-") as tmp:
            path = Path(tmp) / "part.onnx"
            self.export(module, input_shape, path, batch=batch)
            return self.prepare_onnx(path, batch=batch, warmup=warmup)

    def measure_module(self, module, input_shape, *, batch=None, warmup=None, repeats=None,
                       sessions: int = 1) -> Measurement:
        return timed_sessions(lambda: self.prepare(module, input_shape, batch=batch, warmup=warmup),
                              self.repeats if repeats is None else int(repeats), sessions)

    def prepare_onnx(self, path, *, batch=None, warmup=None) -> _TrtTimer:
        """An engine built from the ONNX file at ``path`` for exactly ``batch``, ready to time."""
        if not Path(path).is_file():
            raise HwnasError(f"no ONNX file at {path}")
        batch = int(batch or self.settings["batch"])
        serialized, _ = build_engine(path, precision=self.settings["precision"], batch=batch,
                                     workspace_gib=self.workspace_gib)
        return self._timer(Engine(serialized, str(path)), batch, warmup)

    def prepare_engine(self, path, *, batch=None, warmup=None) -> _TrtTimer:
        """A serialized engine (``hwnas deploy``'s model.plan) ready to time at ``batch``."""
        return self._timer(Engine(Path(path).read_bytes(), str(path)), int(batch or self.settings["batch"]), warmup)

    def _timer(self, engine: Engine, batch: int, warmup) -> _TrtTimer:
        return engine.timer(batch, self.warmup if warmup is None else int(warmup))
