"""Deploying a found network: export an ONNX graph or a TensorRT engine, verify it, check its latency.

:func:`export` builds the network of a structure (or of a search run's best
result), loads trained weights if given, exports ONNX (opset 18, static or
dynamic batch), optionally simplifies it with onnxslim, verifies the graph
numerically against PyTorch with ONNX Runtime and, for ``tensorrt``, builds a
serialized engine and verifies it too. Everything is written into a temporary
folder beside the output and renamed into place only when every step passed,
so a failed build leaves nothing behind. ``deploy.json`` records shapes,
precision, batch, opset, library versions, the sha256 of every artifact and
the verification errors.

:func:`check` re-hashes a deployed folder, times the artifact with its own
runtime under the settings of a latency profile, and compares the measured
per-image time with the profile's prediction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import io
import json
import os
import platform
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.atomic import atomic_write_bytes
from hwnas.errors import BackendUnavailable, DeployError
from hwnas.models.structure import read_first_line

FORMATS = ("onnx", "tensorrt")
PRECISIONS = ("fp32", "fp16")
OPSET = 18
SCHEMA = 1
MANIFEST = "deploy.json"
ONNX_FILE = "model.onnx"
ENGINE_FILE = "model.plan"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# Largest accepted |runtime - torch fp32| / max|torch fp32| over the verification batches.
MAX_ERROR = {"fp32": 1e-3, "fp16": 1e-2}


# ----------------------------------------------------------------------------------------------
# What is deployed


@dataclass(frozen=True)
class Target:
    """The network to deploy: architecture text, the space it belongs to, and its input/output sizes."""

    text: str
    space: str
    num_classes: int
    resolution: int
    use_se: bool
    source: dict

    def space_object(self):
        """The registered space with this target's class count and resolution."""
        from hwnas.models.spaces.base import get_space

        space = get_space(self.space)
        if (space.num_classes, space.resolution) == (self.num_classes, self.resolution):
            return space
        if dataclasses.is_dataclass(space):
            return dataclasses.replace(space, num_classes=self.num_classes, resolution=self.resolution)
        raise DeployError(f"space {self.space!r} builds {space.num_classes} classes at resolution "
                          f"{space.resolution} only; got num_classes={self.num_classes}, "
                          f"resolution={self.resolution}")


def _read_run_dir(path: Path) -> tuple[str, dict]:
    """The best structure and the config of a search output folder."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise DeployError(f"{path / 'config.json'}: cannot read the search config ({err}); "
                          "expected a search output folder with best.txt and config.json") from None
    if not isinstance(config, dict):
        raise DeployError(f"{path / 'config.json'}: expected a JSON object")
    return read_first_line(path / "best.txt"), config


def resolve_target(source: str, *, space: str | None = None, num_classes: int | None = None,
                   resolution: int | None = None, use_se: bool | None = None) -> Target:
    """A :class:`Target` from a structure string, a file holding one, a zoo name, or a search run folder.

    A search run folder (``best.txt`` + ``config.json``) gives the structure,
    the space and the profile; a zoo name gives classes, resolution and SE;
    otherwise the space (default ``imagenet224``, ``nb201`` for a ``|...|``
    cell) gives the defaults. Explicit arguments override them.
    """
    from hwnas.models.spaces.base import get_space

    path = Path(source)
    info: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    if "(" in source or source.lstrip().startswith("|"):
        text = source.strip()
        info = {"kind": "string"}
    elif path.is_dir():
        if not (path / "best.txt").is_file():
            raise DeployError(f"{source} is a folder without best.txt; expected a search output folder "
                              "(best.txt and config.json) or a structure string")
        text, config = _read_run_dir(path)
        run_space = config.get("space")
        if space is not None and run_space is not None and space != run_space:
            raise DeployError(f"--space {space} contradicts the search run's space {run_space!r} in {source}")
        space = space or run_space
        profile_info = config.get("profile_info") or {}
        profile = profile_info.get("path") or profile_info.get("name") or config.get("profile")
        info = {"kind": "run", "run_dir": str(path.resolve()), "profile": profile}
        defaults = {k: config[k] for k in ("num_classes", "resolution", "use_se") if config.get(k) is not None}
    elif path.is_file():
        text = read_first_line(path)
        info = {"kind": "file", "path": str(path.resolve())}
    elif "/" in source or path.suffix:
        raise DeployError(f"{source}: no such file or folder; expected a structure string, a file holding one, "
                          "a search output folder or a zoo model name")
    else:
        from hwnas.models import zoo

        model = zoo.get(source)  # an unknown name is an error listing the zoo
        text = str(model.structure)
        info = {"kind": "zoo", "name": model.name}
        defaults = {"num_classes": model.num_classes, "resolution": model.resolution, "use_se": model.use_se}
        space = space or ("cifar32" if model.resolution == 32 else "imagenet224")
    space_name = space or ("nb201" if text.startswith("|") else "imagenet224")
    space_obj = get_space(space_name)
    num_classes = int(num_classes if num_classes is not None else defaults.get("num_classes", space_obj.num_classes))
    resolution = int(resolution if resolution is not None else defaults.get("resolution", space_obj.resolution))
    use_se = bool(use_se if use_se is not None else defaults.get("use_se", False))
    if num_classes < 1 or resolution < 1:
        raise DeployError(f"num_classes and resolution must be positive, got {num_classes} and {resolution}")
    arch = space_obj.parse(text)  # StructureError names the fault
    return Target(space_obj.format(arch), space_name, num_classes, resolution, use_se, info)


def build_module(target: Target):
    """The torch module of a target in eval mode (PyTorch's default initialisation, seeded)."""
    import torch

    space = target.space_object()
    arch = space.parse(target.text)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = space.build(arch, use_se=target.use_se)
    return module.eval()


# ----------------------------------------------------------------------------------------------
# Weights


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_weights(module, path: Path, target: Target) -> str:
    """Load a checkpoint into ``module`` strictly; return its sha256. Mismatches raise DeployError."""
    import torch

    if not path.is_file():
        raise DeployError(f"weights file {path} does not exist; expected a checkpoint saved with torch.save")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged or foreign file
        if "weights_only" in str(err):  # a pickle with more than tensors (trainer objects, namespaces)
            raise DeployError(f"weights file {path} holds Python objects besides tensors, which are not loaded "
                              "for safety; save model.state_dict() alone with torch.save") from None
        reason = " ".join(str(err).split())[:200]
        raise DeployError(f"cannot read weights file {path}: {type(err).__name__}: {reason}") from None
    if isinstance(ckpt, dict):
        for key, value in (("num_classes", target.num_classes), ("resolution", target.resolution)):
            if key in ckpt and isinstance(ckpt[key], int) and ckpt[key] != value:
                raise DeployError(f"weights file {path} was saved with {key}={ckpt[key]}, but the deployment "
                                  f"uses {key}={value}; pass --{key.replace('_', '-')} {ckpt[key]}")
        for key in ("state_dict", "model"):
            if isinstance(ckpt.get(key), dict):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise DeployError(f"weights file {path} holds no state_dict; expected a dict of tensors or a dict with "
                          "'state_dict' or 'model'")
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in ckpt.items()}
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise DeployError(f"weights file {path} does not fit this structure: {', '.join(parts)} keys; "
                          "expected a checkpoint of the same structure")
    for key, tensor in own.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            hint = ""
            fc = [k for k in own if k.endswith("weight") and own[k].ndim == 2]
            if fc and key == fc[-1] and state[key].shape[1:] == tensor.shape[1:]:
                hint = f"; the checkpoint has {state[key].shape[0]} classes, pass --num-classes {state[key].shape[0]}"
            raise DeployError(f"weights file {path}: {key} has shape {tuple(state[key].shape)}, expected "
                              f"{tuple(tensor.shape)}{hint}")
    module.load_state_dict(state, strict=True)
    return sha256(path)


# ----------------------------------------------------------------------------------------------
# Export and verification


def _export_onnx(module, x, path: Path, *, dynamic_batch: bool, opset: int) -> str:
    """Export with torch's dynamo exporter, falling back to the TorchScript one; return which was used."""
    import torch

    names = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset)
    errors = []
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            dynamic = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
            torch.onnx.export(module, (x,), str(path), dynamo=True, dynamic_shapes=dynamic, verbose=False,
                              external_data=False, **names)
            return "torch.onnx.export(dynamo=True)"
        except Exception as err:  # the exporter raises many error types; the TorchScript one is the fallback
            errors.append(f"dynamo: {type(err).__name__}: {' '.join(str(err).split())[:160]}")
        try:
            axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(module, (x,), str(path), dynamo=False, dynamic_axes=axes, do_constant_folding=True,
                              **names)
            return "torch.onnx.export(dynamo=False)"
        except Exception as err:
            errors.append(f"torchscript: {type(err).__name__}: {' '.join(str(err).split())[:160]}")
    raise DeployError(f"ONNX export failed: {'; '.join(errors)}")


def _simplify(path: Path) -> None:
    import onnx
    import onnxslim

    model = onnxslim.slim(onnx.load(str(path)))
    if model is None:
        raise DeployError(f"onnxslim could not simplify {path.name}; retry with --no-simplify")
    onnx.save(model, str(path))


def _ort_run(path: Path, batches: list[np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return [session.run(None, {INPUT_NAME: x})[0] for x in batches]


def _errors(outputs: list[np.ndarray], references: list[np.ndarray]) -> dict:
    """Max absolute error, and that error relative to the largest reference magnitude."""
    max_abs, scale, finite = 0.0, 0.0, True
    for y, ref in zip(outputs, references):
        y = y.astype(np.float64)
        ref = ref.astype(np.float64)
        if y.shape != ref.shape:
            raise DeployError(f"runtime output shape {y.shape} differs from PyTorch's {ref.shape}")
        finite &= bool(np.isfinite(y).all())
        max_abs = max(max_abs, float(np.abs(y - ref).max()))
        scale = max(scale, float(np.abs(ref).max()))
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    return {"max_abs_error": max_abs if finite else float("inf"), "max_rel_error": rel if finite else float("inf"),
            "reference_max_abs": scale, "finite": finite}


def _verify(name: str, outputs: list[np.ndarray], references: list[np.ndarray], tolerance: float,
            runtime: str, batch_sizes: list[int]) -> dict:
    result = {"runtime": runtime, "reference": "torch fp32 on CPU", "batch_sizes": batch_sizes,
              **_errors(outputs, references), "tolerance": tolerance}
    result["passed"] = bool(result["finite"] and result["max_rel_error"] <= tolerance)
    if not result["passed"]:
        what = "non-finite outputs" if not result["finite"] else (
            f"max relative error {result['max_rel_error']:.3g} > tolerance {tolerance:.3g} "
            f"(max abs error {result['max_abs_error']:.3g})")
        raise DeployError(f"{name} does not match PyTorch: {what}; nothing was written")
    return result


# ----------------------------------------------------------------------------------------------
# TensorRT


def _tensorrt():
    """The tensorrt module and a visible CUDA GPU, or BackendUnavailable naming what is missing."""
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailable("tensorrt is not installed; install the [tensorrt] extra on a machine with an "
                                 "NVIDIA GPU (pip install 'hwnas[tensorrt]')") from None
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable(f"no CUDA GPU is visible (tensorrt {trt.__version__} is installed); TensorRT "
                                 "engines are built on the GPU they run on")
    major = int(trt.__version__.split(".")[0])
    if major not in (10, 11):
        raise BackendUnavailable(f"tensorrt {trt.__version__} found; expected TensorRT 10 or 11")
    return trt


def default_timing_cache() -> Path:
    """One timing cache per GPU model and TensorRT version, reused by every build."""
    import tensorrt as trt
    import torch

    gpu = "".join(c if c.isalnum() else "-" for c in torch.cuda.get_device_name()).strip("-")
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hwnas" / "tensorrt"
    return root / f"{gpu}-trt{trt.__version__}.timing-cache"


def _build_engine(onnx_path: Path, engine_path: Path, *, precision: str, batch: int, dynamic_batch: bool,
                  timing_cache: Path, workspace_gib: float = 4.0) -> dict:
    """Parse the ONNX graph, build a serialized engine, write it; return what was built with.

    FP16: TensorRT 10 gets ``BuilderFlag.FP16``; TensorRT 11 networks are
    strongly typed, so the precision is the FP16 ONNX graph's own (``fp16``
    deployments export an FP16 graph for both). fp32 builds clear TF32.
    """
    trt = _tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 11 removed the weak-typing flags: its networks are always strongly typed.
    strongly_typed = int(trt.__version__.split(".")[0]) >= 11 or not hasattr(trt.BuilderFlag, "FP16")
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DeployError(f"TensorRT could not parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: no TF32 tensor-core rounding
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    opt = (batch, *shape[1:])
    low = (1, *shape[1:]) if dynamic_batch else opt
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, low, opt, opt)
    config.add_optimization_profile(profile)
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
        raise DeployError("TensorRT failed to build an engine (see its log above)")
    atomic_write_bytes(engine_path, bytes(memoryview(engine)))
    try:
        atomic_write_bytes(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    except OSError as err:
        raise DeployError(f"cannot write the TensorRT timing cache {timing_cache}: {err.strerror}; "
                          "pass a writable --timing-cache") from None
    import torch

    return {"version": trt.__version__, "device": torch.cuda.get_device_name(),
            "strongly_typed": strongly_typed, "fp16_flag": bool(precision == "fp16" and not strongly_typed),
            "profile": {"min": list(low), "opt": list(opt), "max": list(opt)},
            "timing_cache": str(timing_cache), "timing_cache_reused": reused}


class _Engine:
    """A deserialized engine with torch CUDA buffers for its input and output."""

    def __init__(self, engine_path: Path):
        import torch

        trt = _tensorrt()
        self.torch, self.trt = torch, trt
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise DeployError(f"TensorRT could not load {engine_path} (built by another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        self.dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}

    def _bind(self, x):
        torch = self.torch
        self.context.set_input_shape(INPUT_NAME, tuple(x.shape))
        inp = x.to("cuda", self.dtypes[self.engine.get_tensor_dtype(INPUT_NAME)]).contiguous()
        out = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT_NAME)), device="cuda",
                          dtype=self.dtypes[self.engine.get_tensor_dtype(OUTPUT_NAME)])
        self.context.set_tensor_address(INPUT_NAME, inp.data_ptr())
        self.context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
        return inp, out

    def run(self, x) -> np.ndarray:
        torch = self.torch
        inp, out = self._bind(torch.as_tensor(x))
        stream = torch.cuda.current_stream()  # the stream the buffers were filled on
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise DeployError("TensorRT failed to run the engine")
        stream.synchronize()
        return out.float().cpu().numpy()

    def time_ms(self, batch: int, shape: tuple[int, ...], warmup: int, repeats: int) -> list[float]:
        """Batch times between CUDA events on a dedicated stream."""
        torch = self.torch
        buffers = self._bind(torch.randn(batch, *shape))
        torch.cuda.synchronize()  # the buffers are filled before the timing stream reads them
        stream = torch.cuda.Stream()
        for _ in range(max(1, warmup)):
            self.context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        samples = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            self.context.execute_async_v3(stream.cuda_stream)
            end.record(stream)
            end.synchronize()
            samples.append(start.elapsed_time(end))
        del buffers
        return samples


# ----------------------------------------------------------------------------------------------
# The deploy step


def _prepare_out(out: Path) -> None:
    """Refuse an output that would overwrite something other than an earlier deployment."""
    if out.exists() and not out.is_dir():
        raise DeployError(f"--out {out} is a file; expected a folder path")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise DeployError(f"--out {out} exists and is not an earlier deployment (no {MANIFEST}); "
                          "expected a new or empty folder")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise DeployError(f"cannot write to {out}: its parent folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DeployError(f"cannot write to {out}: its parent folder {parent} is not writable")


def _commit(tmp: Path, out: Path) -> None:
    """Move the finished temporary folder into place; an earlier deployment there is replaced."""
    if out.is_dir():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "previous")
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old / "previous", out)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def versions(tensorrt: bool = False) -> dict:
    import onnx
    import onnxruntime
    import onnxslim
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
           "onnxruntime": onnxruntime.__version__, "onnxslim": onnxslim.__version__}
    if tensorrt:
        import tensorrt as trt

        out["tensorrt"] = trt.__version__
        out["cuda"] = torch.version.cuda
    return out


def _io_info(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def describe(value):
        tensor = value.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in tensor.shape.dim]
        return {"name": value.name, "shape": dims, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name}

    return {"opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            "input": describe(model.graph.input[0]), "output": describe(model.graph.output[0])}


def export(source: str, out: str | Path, *, fmt: str = "onnx", precision: str = "fp32", batch: int = 64,
           dynamic_batch: bool = False, weights: str | Path | None = None, num_classes: int | None = None,
           resolution: int | None = None, space: str | None = None, use_se: bool | None = None,
           simplify: bool = True, tolerance: float | None = None, opset: int = OPSET,
           timing_cache: str | Path | None = None, seed: int = 0, log=None) -> dict:
    """Export, verify and write a deployment folder; return its manifest (also written as deploy.json).

    ``log``, if given, is called with a short message before each step.
    """
    import torch

    log = log or (lambda message: None)

    if fmt not in FORMATS:
        raise DeployError(f"format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise DeployError(f"precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if batch < 1:
        raise DeployError(f"batch {batch}; expected a positive integer")
    if opset < 17:
        raise DeployError(f"opset {opset}; expected 17 or newer")
    tolerance = MAX_ERROR[precision] if tolerance is None else float(tolerance)
    out = Path(out)
    weights = Path(weights) if weights is not None else None
    if weights is not None and not weights.is_file():
        raise DeployError(f"weights file {weights} does not exist; expected a checkpoint saved with torch.save")
    if fmt == "tensorrt":
        _tensorrt()
        timing_cache = Path(timing_cache) if timing_cache else default_timing_cache()
    _prepare_out(out)
    target = resolve_target(source, space=space, num_classes=num_classes, resolution=resolution, use_se=use_se)
    module = build_module(target)
    weights_hash = load_weights(module, weights, target) if weights is not None else None

    shape = (3, target.resolution, target.resolution)
    rng = torch.Generator().manual_seed(seed)
    sizes = sorted({1, batch}) if dynamic_batch else [batch]
    inputs = [torch.randn(n, *shape, generator=rng) for n in sizes]
    half = precision == "fp16"
    np_dtype = np.float16 if half else np.float32

    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.resolve().parent))
    except OSError as err:
        raise DeployError(f"cannot write to {out}: {err.strerror}") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the deployment gets the usual permissions
    # Progress starts once every input is checked, so bad input stays a one-line error.
    log(f"{target.space} network, {target.num_classes} classes, resolution {target.resolution}, "
        f"{'weights ' + weights.name if weights is not None else 'untrained weights'}")
    try:
        with torch.no_grad():
            references = [module(x).numpy() for x in inputs]
        onnx_path = tmp / ONNX_FILE
        example = torch.randn(max(2, batch) if dynamic_batch else batch, *shape, generator=rng)
        export_module = module
        if half:  # an FP16 graph with FP16 input and output, exported from a half copy of the module
            import copy

            export_module, example = copy.deepcopy(module).half(), example.half()
        log(f"exporting ONNX opset {opset} ({precision}, batch {batch}{' dynamic' if dynamic_batch else ''})")
        exporter = _export_onnx(export_module, example, onnx_path, dynamic_batch=dynamic_batch, opset=opset)
        if simplify:
            log("simplifying with onnxslim")
            _simplify(onnx_path)
        io_info = _io_info(onnx_path)
        log(f"verifying with ONNX Runtime at batch {', '.join(map(str, sizes))}")
        outputs = _ort_run(onnx_path, [x.numpy().astype(np_dtype) for x in inputs])
        verification = {"onnx": _verify("the ONNX graph", outputs, references, tolerance,
                                        "onnxruntime CPUExecutionProvider", sizes)}
        trt_info = None
        if fmt == "tensorrt":
            engine_path = tmp / ENGINE_FILE
            log(f"building the TensorRT engine (timing cache {timing_cache})")
            trt_info = _build_engine(onnx_path, engine_path, precision=precision, batch=batch,
                                     dynamic_batch=dynamic_batch, timing_cache=timing_cache)
            log("verifying the TensorRT engine")
            engine = _Engine(engine_path)
            verification["tensorrt"] = _verify("the TensorRT engine", [engine.run(x) for x in inputs], references,
                                               tolerance, f"tensorrt {trt_info['version']} on {trt_info['device']}",
                                               sizes)
        artifacts = {p.name: {"sha256": sha256(p), "bytes": p.stat().st_size} for p in sorted(tmp.iterdir())}
        manifest = {
            "schema": SCHEMA,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "format": fmt,
            "precision": precision,
            "batch": batch,
            "dynamic_batch": dynamic_batch,
            "opset": io_info["opset"],
            "exporter": exporter,
            "simplified": simplify,
            "input": io_info["input"],
            "output": io_info["output"],
            "structure": target.text,
            "space": target.space,
            "num_classes": target.num_classes,
            "resolution": target.resolution,
            "use_se": target.use_se,
            "params": int(sum(p.numel() for p in module.parameters())),
            "source": target.source,
            "weights": ({"path": str(weights.resolve()), "sha256": weights_hash} if weights is not None
                        else {"path": None, "note": "untrained: PyTorch default initialisation, seed 0"}),
            "artifacts": artifacts,
            "versions": versions(tensorrt=fmt == "tensorrt"),
            "verification": verification,
        }
        if trt_info is not None:
            manifest["tensorrt"] = trt_info
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _commit(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


# ----------------------------------------------------------------------------------------------
# Checking a deployment


def read_manifest(directory: str | Path, verify_hashes: bool = True) -> dict:
    """The manifest of a deployment folder; with ``verify_hashes`` every artifact's sha256 is re-checked."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise DeployError(f"{directory} has no {MANIFEST}; expected a folder written by `hwnas deploy`")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as err:
        raise DeployError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise DeployError(f"{path} has schema {manifest.get('schema') if isinstance(manifest, dict) else None}; "
                          f"expected {SCHEMA}")
    if verify_hashes:
        for name, info in manifest.get("artifacts", {}).items():
            artifact = directory / name
            if not artifact.is_file():
                raise DeployError(f"{artifact} is missing; the deployment is incomplete")
            if sha256(artifact) != info["sha256"]:
                raise DeployError(f"{artifact} changed since it was deployed (sha256 differs from {MANIFEST})")
    return manifest


# The runtime a profile's backend must match for each artifact format.
_RUNTIME = {"onnx": "onnxruntime", "tensorrt": "tensorrt"}


def _refusals(manifest: dict, profile, space) -> list[str]:
    """Every way the deployment's settings differ from the profile's: each makes the comparison meaningless."""
    settings = profile.settings
    out = []
    runtime = _RUNTIME[manifest["format"]]
    if profile.backend != runtime:
        out.append(f"the profile was measured with {profile.backend}, the artifact runs on {runtime}")
    if profile.precision != manifest["precision"]:
        out.append(f"the profile is {profile.precision}, the artifact {manifest['precision']}")
    if manifest["dynamic_batch"]:
        if manifest["format"] == "tensorrt" and profile.batch > manifest["batch"]:
            out.append(f"the profile's batch {profile.batch} exceeds the engine's largest batch {manifest['batch']}")
    elif profile.batch != manifest["batch"]:
        out.append(f"the profile's batch is {profile.batch}, the artifact's static batch {manifest['batch']} "
                   f"(deploy with --batch {profile.batch} or --dynamic-batch)")
    if profile.space != manifest["space"]:
        out.append(f"the profile is for space {profile.space}, the artifact's space is {manifest['space']}")
    for key in ("resolution", "num_classes"):
        if getattr(space, key) != manifest[key]:
            out.append(f"the profile predicts {key} {getattr(space, key)}, the artifact has {manifest[key]}")
    if manifest.get("use_se"):
        out.append("the artifact has SE modules, the profile predicts networks without them")
    profiled_on = str(profile.metadata.get("device", {}).get("name", ""))
    from hwnas.latency.device import current_device_name

    here = current_device_name(settings)
    if profiled_on != here:
        out.append(f"the profile was measured on {profiled_on or 'an unnamed device'}, this machine is {here}")
    return out


def check(directory: str | Path, profile_path: str | Path | None = None, *, tolerance: float = 0.10,
          warmup: int | None = None, repeats: int | None = None) -> dict:
    """Measure a deployed artifact under a profile's settings and compare with the profile's prediction.

    The profile defaults to the one of the search run the deployment came
    from. Returns ``predicted_ms`` and ``measured_ms`` (per image: the batch
    time, :func:`hwnas.latency.backends.network_ms` of the samples as for
    whole networks everywhere, / batch), ``rel_error = measured / predicted - 1`` and
    ``within_tolerance``. Settings that differ (runtime, precision, batch,
    space, resolution, classes, SE, device) raise DeployError naming them.
    """
    from hwnas.latency.backends import get_backend, measure_interleaved, network_ms, summarize
    from hwnas.latency.predictor import Predictor
    from hwnas.latency.profile import Profile
    from hwnas.models.spaces.base import get_space

    if tolerance <= 0:
        raise DeployError(f"tolerance {tolerance}; expected a positive fraction such as 0.10")
    directory = Path(directory)
    manifest = read_manifest(directory)
    if profile_path is None:
        profile_path = manifest.get("source", {}).get("profile")
        if not profile_path:
            raise DeployError(f"{directory} was not deployed from a search run with a profile; pass --profile")
    profile = Profile.load(profile_path)
    space = get_space(profile.space)
    refusals = _refusals(manifest, profile, space)
    if refusals:
        raise DeployError(f"{directory} cannot be checked against profile {profile.name}: {'; '.join(refusals)}")

    batch = profile.batch
    predicted = float(Predictor(profile).predict_ms(space.parse(manifest["structure"])))
    if manifest["format"] == "onnx":
        backend = get_backend(profile.backend, **profile.settings)
        # timed the way whole networks are (samples in rounds spread over a second or more)
        measurement = measure_interleaved(backend, [directory / ONNX_FILE],
                                          lambda path: backend.prepare_onnx(path, batch=batch, warmup=warmup),
                                          repeats=repeats)[0]
        threads = profile.settings.get("threads")
        runtime = (f"onnxruntime {backend.versions().get('onnxruntime')} {profile.settings.get('device', 'cpu')}"
                   + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""))
    else:
        engine = _Engine(directory / ENGINE_FILE)
        shape = tuple(int(d) for d in manifest["input"]["shape"][1:])
        measurement = summarize(engine.time_ms(batch, shape, 20 if warmup is None else warmup,
                                               50 if repeats is None else repeats))
        runtime = f"tensorrt {manifest['tensorrt']['version']} engine on {manifest['tensorrt']['device']}"
    measured = network_ms(measurement) / batch
    rel_error = measured / predicted - 1.0 if predicted > 0 else float("inf")
    return {
        "directory": str(directory),
        "profile": profile.name,
        "profile_hash": profile.hash,
        "device": profile.metadata.get("device", {}).get("name"),
        "structure": manifest["structure"],
        "format": manifest["format"],
        "precision": manifest["precision"],
        "batch": batch,
        "runtime": runtime,
        "predicted_ms": predicted,
        "measured_ms": measured,
        "measured_batch_ms": measurement.as_dict(),
        "rel_error": rel_error,
        "tolerance": tolerance,
        "within_tolerance": bool(abs(rel_error) <= tolerance),
    }
