"""A deployment folder: the exported ONNX graph (and TensorRT engine), verified against PyTorch, and deploy.json.

:func:`export` builds the network of an architecture, loads trained weights
if given, exports it with the profiling exporter
(:func:`hwnas.latency.export.export_onnx`: the graph the latency profiles'
calibration networks were timed as; static or dynamic batch), optionally
simplifies it with onnxslim, verifies it numerically against PyTorch with
ONNX Runtime and, for ``tensorrt``, builds a serialized engine
(:func:`hwnas.latency.backends.tensorrt.build_engine`) and verifies it too.
Everything is written into a temporary folder beside the output and renamed
into place only when every step passed, so a failed build leaves nothing
behind. ``deploy.json`` records shapes, precision, batch, opset, library
versions, the sha256 of every artifact and the verification errors.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from hwnas.atomic import atomic_write_bytes
from hwnas.deploy.weights import load_weights, sha256
from hwnas.errors import DeployError
from hwnas.latency.export import INPUT_NAME, export_onnx

FORMATS = ("onnx", "tensorrt")
PRECISIONS = ("fp32", "fp16")
SCHEMA = 1
MANIFEST = "deploy.json"
ONNX_FILE = "model.onnx"
ENGINE_FILE = "model.plan"
OUTPUT_NAME = "logits"
EXPORTER = "torch.onnx.export(dynamo=False)"
# Largest accepted |runtime - torch fp32| / max|torch fp32| over the verification batches.
MAX_ERROR = {"fp32": 1e-3, "fp16": 1e-2}
# The largest input batch an export verifies with (batch x 3 x resolution², 1 GiB in float32).
MAX_INPUT_ELEMENTS = 2**28


def build_module(space, arch, use_se: bool = False):
    """The torch module of ``arch`` in eval mode (PyTorch's default initialisation, seeded)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = space.build(arch, use_se=use_se)
    return module.eval()


def _simplify(path: Path) -> None:
    import onnx
    import onnxslim

    model = onnxslim.slim(onnx.load(str(path)))
    if model is None:
        raise DeployError(f"onnxslim could not simplify {path.name}; retry with --no-simplify")
    atomic_write_bytes(path, model.SerializeToString())


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


def _io_info(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def describe(value):
        tensor = value.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in tensor.shape.dim]
        return {"name": value.name, "shape": dims, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name}

    return {"opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            "input": describe(model.graph.input[0]), "output": describe(model.graph.output[0])}


def _versions(fmt: str, simplified: bool) -> dict:
    import torch

    from hwnas.latency.device import library_versions

    out = library_versions()
    if simplified:
        import onnxslim

        out["onnxslim"] = onnxslim.__version__
    if fmt == "tensorrt":
        out["cuda"] = torch.version.cuda
    return out


def export(space, arch, out: str | Path, *, use_se: bool = False, fmt: str = "onnx", precision: str = "fp32",
           batch: int = 64, dynamic_batch: bool = False, weights: str | Path | None = None, simplify: bool = False,
           tolerance: float | None = None, timing_cache: str | Path | None = None, seed: int = 0,
           source: dict | None = None, log=None) -> dict:
    """Export, verify and write a deployment folder for ``arch`` of ``space`` (whose ``num_classes`` and
    ``resolution`` it is built with); return its manifest (also written as deploy.json).

    ``source`` says where the architecture came from (recorded as is; a ``profile`` in it is the default
    profile of ``hwnas deploy check``). ``log``, if given, is called with a short message before each step.
    """
    import torch

    from hwnas.latency.backends import tensorrt
    from hwnas.latency.backends.onnxruntime import ort_session

    log = log or (lambda message: None)
    if fmt not in FORMATS:
        raise DeployError(f"format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise DeployError(f"precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if batch < 1:
        raise DeployError(f"batch {batch}; expected a positive integer")
    elements = batch * 3 * space.resolution ** 2
    if elements > MAX_INPUT_ELEMENTS:
        raise DeployError(f"a batch of {batch} images of {space.resolution}x{space.resolution} holds {elements} "
                          f"values; expected at most {MAX_INPUT_ELEMENTS} (a smaller --batch or --resolution)")
    tolerance = MAX_ERROR[precision] if tolerance is None else float(tolerance)
    out = Path(out)
    weights = Path(weights) if weights is not None else None
    if weights is not None and not weights.is_file():
        raise DeployError(f"weights file {weights} does not exist; expected a checkpoint saved with torch.save")
    if fmt == "tensorrt":
        tensorrt.load_tensorrt()
        timing_cache = Path(timing_cache) if timing_cache else tensorrt.default_timing_cache()
    _prepare_out(out)
    module = build_module(space, arch, use_se)
    weights_hash = None
    if weights is not None:
        weights_hash = load_weights(module, weights, num_classes=space.num_classes, resolution=space.resolution)

    shape = (3, space.resolution, space.resolution)
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
    log(f"{space.name} network, {space.num_classes} classes, resolution {space.resolution}, "
        f"{'weights ' + weights.name if weights is not None else 'untrained weights'}")
    try:
        with torch.no_grad():
            references = [module(x).numpy() for x in inputs]
        onnx_path = tmp / ONNX_FILE
        # fp16: an FP16 graph with FP16 input and output, exported from a half copy of the module
        export_module = copy.deepcopy(module) if half else module
        log(f"exporting ONNX ({precision}, batch {batch}{' dynamic' if dynamic_batch else ''})")
        export_onnx(export_module, shape, max(2, batch) if dynamic_batch else batch, onnx_path,
                    dynamic_batch=dynamic_batch, half=half, output_name=OUTPUT_NAME)
        if simplify:
            log("simplifying with onnxslim")
            _simplify(onnx_path)
        io_info = _io_info(onnx_path)
        log(f"verifying with ONNX Runtime at batch {', '.join(map(str, sizes))}")
        session = ort_session(onnx_path)
        outputs = [session.run(None, {INPUT_NAME: x.numpy().astype(np_dtype)})[0] for x in inputs]
        verification = {"onnx": _verify("the ONNX graph", outputs, references, tolerance,
                                        "onnxruntime CPUExecutionProvider", sizes)}
        trt_info = None
        if fmt == "tensorrt":
            log(f"building the TensorRT engine (timing cache {timing_cache})")
            serialized, trt_info = tensorrt.build_engine(onnx_path, precision=precision, batch=batch,
                                                         dynamic_batch=dynamic_batch, timing_cache=timing_cache)
            atomic_write_bytes(tmp / ENGINE_FILE, serialized)
            log("verifying the TensorRT engine")
            engine = tensorrt.Engine(serialized)
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
            "exporter": EXPORTER,
            "simplified": simplify,
            "input": io_info["input"],
            "output": io_info["output"],
            "structure": space.format(arch),
            "space": space.name,
            "num_classes": space.num_classes,
            "resolution": space.resolution,
            "use_se": use_se,
            "params": int(sum(p.numel() for p in module.parameters())),
            "source": source or {},
            "weights": ({"path": str(weights.resolve()), "sha256": weights_hash} if weights is not None
                        else {"path": None, "note": "untrained: PyTorch default initialisation, seed 0"}),
            "artifacts": artifacts,
            "versions": _versions(fmt, simplify),
            "verification": verification,
        }
        if trt_info is not None:
            manifest["tensorrt"] = trt_info
        atomic_write_bytes(tmp / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        _commit(tmp, out)
    except RuntimeError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (isinstance(err, torch.OutOfMemoryError) or "allocate" in str(err) or "out of memory" in str(err)):
            raise
        raise DeployError(f"out of memory exporting this network at batch {batch}, resolution {space.resolution}; "
                          "expected a smaller --batch or --resolution") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


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
