"""PyTorch backend: eager modules on CPU, or on CUDA with FP16, channels_last,
``cudnn.benchmark`` and optional CUDA graphs, timed with CUDA events after an
explicit synchronization (the reference ZenNAS code timed without one).

Settings: ``device`` (``cpu``/``cuda``), ``precision`` (``fp32``/``fp16``;
fp16 needs CUDA), ``batch``, ``threads`` (CPU intra-op threads),
``channels_last`` (default on for CUDA), ``cuda_graphs`` (default off).
"""

from __future__ import annotations

import time

from hwnas.errors import BackendUnavailable, HwnasError
from hwnas.latency.backends import register_backend
from hwnas.latency.timing import Measurement, timed_sessions


@register_backend("torch")
class TorchBackend:
    name = "torch"

    def __init__(self, device: str = "cpu", precision: str = "fp32", batch: int = 1, threads: int = 1,
                 channels_last: bool | None = None, cuda_graphs: bool = False, warmup: int = 10,
                 repeats: int = 25, **_ignored):
        import torch

        if device not in ("cpu", "cuda"):
            raise HwnasError(f"torch device must be 'cpu' or 'cuda', got {device!r}")
        if precision not in ("fp32", "fp16"):
            raise HwnasError(f"precision must be fp32 or fp16, got {precision!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("torch backend with device cuda: no CUDA GPU is visible to torch "
                                     f"(torch {torch.__version__}, CUDA build {torch.version.cuda})")
        if device == "cpu" and precision == "fp16":
            raise BackendUnavailable("torch fp16 timing needs a CUDA GPU; on CPU use --precision fp32")
        if device == "cpu" and cuda_graphs:
            raise HwnasError("cuda_graphs needs device cuda")
        self._torch = torch
        self.settings = {"device": device, "precision": precision, "batch": int(batch), "threads": int(threads),
                         "channels_last": bool(device == "cuda" if channels_last is None else channels_last),
                         "cuda_graphs": bool(cuda_graphs)}
        self.warmup, self.repeats = int(warmup), int(repeats)

    def versions(self) -> dict:
        torch = self._torch
        out = {"torch": torch.__version__}
        if self.settings["device"] == "cuda":
            out["cuda"] = torch.version.cuda
            out["cudnn"] = str(torch.backends.cudnn.version())
        return out

    def export(self, module, input_shape, path, **_kw):
        raise BackendUnavailable("the torch backend times torch modules, not ONNX files")

    def prepare_onnx(self, path, **_kw):
        raise BackendUnavailable("the torch backend times torch modules, not ONNX files; "
                                 "use --backend onnxruntime or tensorrt for an ONNX file")

    def measure_module(self, module, input_shape, *, batch=None, warmup=None, repeats=None,
                       sessions: int = 1) -> Measurement:
        return timed_sessions(lambda: self.prepare(module, input_shape, batch=batch, warmup=warmup),
                              self.repeats if repeats is None else int(repeats), sessions)

    def prepare(self, module, input_shape, *, batch=None, warmup=None) -> "_TorchTimer":
        torch = self._torch
        s = self.settings
        batch = int(batch or s["batch"])
        warmup = self.warmup if warmup is None else int(warmup)
        module = module.eval()
        x = torch.randn(batch, *input_shape)
        if s["device"] == "cpu":
            torch.set_num_threads(s["threads"])
            with torch.inference_mode():
                for _ in range(max(1, warmup)):
                    module(x)
            return _TorchTimer(torch, lambda: module(x), cuda=False)

        torch.backends.cudnn.benchmark = True
        dtype = torch.float16 if s["precision"] == "fp16" else torch.float32
        fmt = torch.channels_last if s["channels_last"] else torch.contiguous_format
        module = module.to("cuda", dtype=dtype, memory_format=fmt)
        x = x.to("cuda", dtype=dtype).contiguous(memory_format=fmt)
        with torch.inference_mode():
            step = lambda: module(x)  # noqa: E731
            if s["cuda_graphs"]:
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(3):
                        module(x)
                torch.cuda.current_stream().wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    module(x)
                step = graph.replay
            for _ in range(max(1, warmup)):
                step()
            torch.cuda.synchronize()
        return _TorchTimer(torch, step, cuda=True)


class _TorchTimer:
    """A module and its input on the backend's device; a sample is one forward pass.

    On CUDA a sample is timed between CUDA events on the current stream and
    synchronized on the end event before it is read.
    """

    def __init__(self, torch, step, cuda: bool):
        self._torch, self._step, self._cuda = torch, step, cuda

    def sample(self) -> tuple[float, bool]:
        torch = self._torch
        with torch.inference_mode():
            if not self._cuda:
                t = time.perf_counter()
                self._step()
                return (time.perf_counter() - t) * 1e3, True
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self._step()
            end.record()
            end.synchronize()
            return start.elapsed_time(end), True

    def close(self) -> None:
        self._step = None
