"""TensorRT backend (TensorRT 10 or 11 Python API), installed with the ``[tensorrt]`` extra.

An ONNX graph is parsed, built into an engine with an optimization profile
fixed at the profile's batch and a persistent timing cache, and timed with
``execute_async_v3`` between CUDA events on a dedicated stream. Device buffers
come from torch's CUDA allocator, so no other CUDA binding is needed.

Precision: on TensorRT 10, FP16 is requested with ``BuilderFlag.FP16`` on an
FP32 graph. TensorRT 11 removed that flag and networks are always strongly
typed, so the precision comes from the graph itself: modules are exported in
half precision, and an ONNX file given for fp16 must already be an FP16 graph.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hwnas.errors import BackendUnavailable, HwnasError
from hwnas.latency.backends import Measurement, export_onnx, register_backend, timed


def _timing_cache_path() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hwnas"
    root.mkdir(parents=True, exist_ok=True)
    return root / "tensorrt-timing.cache"


@register_backend("tensorrt")
class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, device: str = "cuda", precision: str = "fp16", batch: int = 64, warmup: int = 20,
                 repeats: int = 50, workspace_gib: float = 4.0, **_ignored):
        try:
            import tensorrt as trt
        except ImportError as err:
            raise BackendUnavailable(f"TensorRT is not installed ({err}); install the [tensorrt] extra on a "
                                     "machine with an NVIDIA GPU (PyPI's tensorrt wheels fetch NVIDIA's libraries)")
        try:
            import torch
        except ImportError as err:  # pragma: no cover - torch is a hard dependency
            raise BackendUnavailable(f"torch is needed for CUDA buffers: {err}")
        if device != "cuda":
            raise HwnasError(f"tensorrt runs on device cuda only, got {device!r}")
        if not torch.cuda.is_available():
            raise BackendUnavailable("tensorrt backend: no CUDA GPU is visible")
        if precision not in ("fp32", "fp16"):
            raise HwnasError(f"precision must be fp32 or fp16, got {precision!r}")
        self._trt, self._torch = trt, torch
        self.major = int(trt.__version__.split(".")[0])
        if self.major not in (10, 11):
            raise BackendUnavailable(f"TensorRT {trt.__version__} found; this backend supports TensorRT 10 and 11")
        self.settings = {"device": "cuda", "precision": precision, "batch": int(batch)}
        self.warmup, self.repeats = int(warmup), int(repeats)
        self.workspace = int(workspace_gib * (1 << 30))
        self._logger = trt.Logger(trt.Logger.WARNING)

    def versions(self) -> dict:
        return {"tensorrt": self._trt.__version__, "torch": self._torch.__version__,
                "cuda": self._torch.version.cuda}

    def prepare(self, module, input_shape, *, batch=None, warmup=None) -> "_TrtTimer":
        batch = int(batch or self.settings["batch"])
        # TRT 11 is strongly typed: an fp16 engine needs an fp16 graph.
        half = self.settings["precision"] == "fp16" and self.major >= 11
        with tempfile.TemporaryDirectory(prefix="hwnas-trt-") as tmp:
            path = Path(tmp) / "part.onnx"
            export_onnx(module, tuple(input_shape), batch, path, dynamic_batch=True, half=half)
            return self.prepare_onnx(path, batch=batch, warmup=warmup)

    def measure_module(self, module, input_shape, *, batch=None, warmup=None, repeats=None) -> Measurement:
        timer = self.prepare(module, input_shape, batch=batch, warmup=warmup)
        return timed(timer, self.repeats if repeats is None else int(repeats))

    def build_engine(self, path, batch: int):
        """A serialized engine for the ONNX file at ``path`` with its batch fixed to ``batch``."""
        trt = self._trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # explicit batch is the only mode on TensorRT 10 and 11
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(Path(path).read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise HwnasError(f"TensorRT could not parse {path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace)
        if self.settings["precision"] == "fp16":
            if self.major == 10:
                config.set_flag(trt.BuilderFlag.FP16)
            elif network.get_input(0).dtype != trt.DataType.HALF:
                raise HwnasError(f"{path}: TensorRT {trt.__version__} is strongly typed, so fp16 needs an FP16 "
                                 "ONNX graph; this one has a non-half input")
        inp = network.get_input(0)
        shape = tuple(inp.shape)
        if any(d < 0 for d in shape[1:]):
            raise HwnasError(f"{path}: input {inp.name} has a dynamic non-batch dimension {shape}")
        fixed = (batch, *shape[1:])
        profile = builder.create_optimization_profile()
        profile.set_shape(inp.name, fixed, fixed, fixed)
        config.add_optimization_profile(profile)
        cache_file = _timing_cache_path()
        cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.exists() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise HwnasError(f"TensorRT failed to build an engine for {path}")
        tmp = cache_file.with_suffix(".tmp")
        tmp.write_bytes(memoryview(config.get_timing_cache().serialize()))
        os.replace(tmp, cache_file)
        return engine

    def measure_onnx(self, path, *, batch=None, warmup=None, repeats=None) -> Measurement:
        timer = self.prepare_onnx(path, batch=batch, warmup=warmup)
        return timed(timer, self.repeats if repeats is None else int(repeats))

    def prepare_onnx(self, path, *, batch=None, warmup=None) -> "_TrtTimer":
        trt, torch = self._trt, self._torch
        if not Path(path).is_file():
            raise HwnasError(f"no ONNX file at {path}")
        batch = int(batch or self.settings["batch"])
        warmup = self.warmup if warmup is None else int(warmup)
        runtime = trt.Runtime(self._logger)
        engine = runtime.deserialize_cuda_engine(self.build_engine(path, batch))
        context = engine.create_execution_context()
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                  trt.DataType.INT32: torch.int32, trt.DataType.INT64: torch.int64}
        buffers = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                shape = tuple(engine.get_tensor_shape(name))
                shape = (batch, *shape[1:])
                context.set_input_shape(name, shape)
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(context.get_tensor_shape(name))
            buf = torch.randn(shape, device="cuda").to(dtypes[engine.get_tensor_dtype(name)])
            buffers.append(buf)
            context.set_tensor_address(name, buf.data_ptr())
        stream = torch.cuda.Stream()
        for _ in range(max(1, warmup)):
            context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return _TrtTimer(torch, engine, context, buffers, stream)


class _TrtTimer:
    """An engine, its execution context and device buffers; a sample is one ``execute_async_v3`` between CUDA
    events recorded on the timer's stream, synchronized on the end event."""

    def __init__(self, torch, engine, context, buffers, stream):
        self._torch, self._engine, self._context, self._buffers, self._stream = torch, engine, context, buffers, stream

    def sample(self) -> tuple[float, bool]:
        torch, stream = self._torch, self._stream
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        self._context.execute_async_v3(stream.cuda_stream)
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end), True

    def close(self) -> None:
        self._context = self._engine = None
        self._buffers = []
