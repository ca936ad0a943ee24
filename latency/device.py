"""Device identity: what a profile was measured on, and the check that a requested GPU is present.

GPUs are identified through NVML (``pynvml`` from nvidia-ml-py): name, driver,
memory and clocks. CPUs through /proc/cpuinfo (model, logical cores) and the
affinity mask. A profile is never produced for a device that is not present.
"""

from __future__ import annotations

import os
import platform
import re
from importlib import metadata as importlib_metadata

from hwnas.errors import BackendUnavailable

LIBRARIES = ("torch", "onnx", "onnxruntime", "numpy", "tensorrt", "nvidia-ml-py")


def cpu_info() -> dict:
    model = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        text = open("/proc/cpuinfo").read()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if m:
            model = m.group(1).strip()
        f = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
        if f:
            flags = [x for x in f.group(1).split() if x in ("avx2", "avx512f", "avx512_vnni", "fma", "amx_tile")]
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    return {"kind": "cpu", "name": model, "logical_cores": os.cpu_count(), "usable_cores": usable,
            "simd": flags, "machine": platform.machine(), "os": platform.platform()}


def gpu_info() -> list[dict]:
    """Every NVIDIA GPU NVML sees (empty when NVML or a driver is absent)."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else name
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            info = {"kind": "gpu", "index": i, "name": name, "driver": driver,
                    "memory_gib": round(mem.total / 2**30, 2)}
            for key, clock in (("sm_clock_max_mhz", pynvml.NVML_CLOCK_SM), ("mem_clock_max_mhz", pynvml.NVML_CLOCK_MEM)):
                try:
                    info[key] = pynvml.nvmlDeviceGetMaxClockInfo(h, clock)
                except Exception:
                    pass
            try:
                info["sm_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)
            except Exception:
                pass
            out.append(info)
        return out
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _normalize(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def require_gpu(name: str) -> dict:
    """The first GPU whose NVML name contains ``name`` (case/punctuation-insensitive), else BackendUnavailable."""
    gpus = gpu_info()
    want = _normalize(name)
    for gpu in gpus:
        if want and want in _normalize(gpu["name"]):
            return gpu
    found = ", ".join(f"{g['name']} (#{g['index']})" for g in gpus) or "none (NVML reports no NVIDIA GPU)"
    raise BackendUnavailable(f"requested GPU {name!r} is not present; GPUs found: {found}")


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib_metadata.version(lib)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def identity(device: str = "cpu", gpu: str | None = None) -> dict:
    """Identity of the measuring device: the CPU, or the requested (or first) GPU, which must be present."""
    if device == "cpu":
        return cpu_info()
    if gpu:
        return require_gpu(gpu)
    gpus = gpu_info()
    if not gpus:
        raise BackendUnavailable("a GPU device was requested but NVML reports no NVIDIA GPU")
    return gpus[0]


def current_device_name(settings: dict) -> str:
    """The name of the device a profile's ``settings`` would run on here: this CPU, or the visible CUDA GPU (as
    torch names it; "no CUDA GPU" when there is none)."""
    if settings.get("device", "cpu") == "cpu":
        return cpu_info()["name"]
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA GPU"
