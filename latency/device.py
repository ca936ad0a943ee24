"""Device identity: what a profile was measured on, whether this machine is that device, per-device defaults.

GPUs are identified through NVML (``pynvml`` from nvidia-ml-py): name, driver,
memory and clocks. CPUs through /proc/cpuinfo (model, logical cores, the
instruction-set extensions that change kernel speed) and the affinity mask.
A profile is never produced for a device that is not present.

A CPU device is its model string, its CPUID family and model numbers, core
count and ISA extensions, run by a runtime of some version with some threads:
two CPUs whose model strings agree but whose ISA or family differs are
different devices (a virtual machine often shows only "AMD EPYC": an EPYC
without AVX-512, a Zen 4 and a Zen 5 with it all read so). A GPU device is its
name.
"""

from __future__ import annotations

import os
import platform
import re
from importlib import metadata as importlib_metadata

from hwnas.errors import BackendUnavailable

LIBRARIES = ("torch", "onnx", "onnxruntime", "numpy", "tensorrt", "nvidia-ml-py")
# The instruction-set extensions that change how fast a runtime's CPU kernels run, recorded as "simd" (those
# present) with "isa_checked" (those looked for).
ISA_FLAGS = ("fma", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8",
             "amx_bf16")
# What profiles recorded before "isa_checked" existed looked for these only; the rest is unknown for them.
LEGACY_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "fma", "amx_tile")
# The library whose version is part of a device's identity, per backend.
RUNTIME_LIBRARY = {"onnxruntime": "onnxruntime", "torch": "torch", "tensorrt": "tensorrt"}


# CPUID numbers recorded beside the model string (x86 /proc/cpuinfo fields): the family and model name a
# microarchitecture (AMD family 25 is Zen 3/4, 26 Zen 5; Intel family 6 models name each generation).
CPUID_FIELDS = {"cpu family": "cpu_family", "model": "cpu_model"}


def cpu_info() -> dict:
    model = platform.processor() or platform.machine()
    flags: list[str] = []
    cpuid: dict[str, int] = {}
    try:
        text = open("/proc/cpuinfo").read()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if m:
            model = m.group(1).strip()
        f = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
        if f:
            flags = [x for x in f.group(1).split() if x in ISA_FLAGS]
        for field, key in CPUID_FIELDS.items():
            n = re.search(rf"^{field}\s*:\s*(\d+)\s*$", text, re.M)
            if n:
                cpuid[key] = int(n.group(1))
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    return {"kind": "cpu", "name": model, "logical_cores": os.cpu_count(), "usable_cores": usable,
            "simd": flags, "isa_checked": list(ISA_FLAGS), **cpuid, "machine": platform.machine(),
            "os": platform.platform()}


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


def default_settings(device: str, backend: str, precision: str | None = None, batch: int | None = None,
                     threads: int = 1, cuda_graphs: bool = False) -> dict:
    """A backend's settings on ``device`` ("cpu" or "cuda"): fp32 and batch 1 on a CPU, fp16 and batch 64 on a GPU
    unless given; threads on a CPU only; CUDA graphs for the torch backend only."""
    settings = {"device": device, "precision": precision or ("fp16" if device == "cuda" else "fp32"),
                "batch": batch or (64 if device == "cuda" else 1)}
    if device == "cpu":
        settings["threads"] = threads
    if backend == "torch":
        settings["cuda_graphs"] = cuda_graphs
    return settings


def _host_gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA GPU"


def describe(device: dict) -> str:
    """A device as a profile records it, in words: "AMD EPYC (2 cores, fma avx2 avx512f avx512_vnni)"."""
    details = []
    if device.get("kind", "cpu") == "cpu":
        if cpuid_text(device):
            details.append(cpuid_text(device))
        if device.get("logical_cores"):
            details.append(f"{device['logical_cores']} cores")
        if "simd" in device:
            details.append(" ".join(device["simd"]) or "no AVX2")
    name = str(device.get("name") or "an unnamed device")
    return f"{name} ({', '.join(details)})" if details else name


def _isa_differences(there: dict, here: dict) -> list[str]:
    checked = [f for f in ISA_FLAGS
               if f in there.get("isa_checked", LEGACY_ISA_FLAGS) and f in here.get("isa_checked", ISA_FLAGS)]
    had = set(there.get("simd", ()))
    has = set(here.get("simd", ()))
    lacks = [f for f in checked if f in had and f not in has]
    extra = [f for f in checked if f in has and f not in had]
    out = []
    if lacks:
        out.append(f"this machine lacks {', '.join(lacks)}")
    if extra:
        out.append(f"this machine has {', '.join(extra)}, the profiled CPU did not")
    return out


def cpuid_text(device: dict) -> str:
    """"family 26 model 2", or "" where a device does not record them (profiles made before they were)."""
    if "cpu_family" not in device:
        return ""
    return f"family {device['cpu_family']} model {device.get('cpu_model', '?')}"


def host_differences(metadata: dict) -> list[str]:
    """How this machine differs from the device a profile's ``metadata`` was measured on ([] when it is that
    device): CPU model string, CPUID family and model, core count and ISA, or GPU name; the runtime's version;
    threads beyond the usable cores.

    Only what the metadata records is compared, so older profiles (no ISA list, no core count) still work."""
    there = metadata.get("device", {})
    settings = metadata.get("settings", {})
    out = []
    if settings.get("device", "cpu") == "cpu":
        here = cpu_info()
        if there.get("name") != here["name"]:
            out.append(f"this machine has {here['name']}")
        if cpuid_text(there) and cpuid_text(here) and cpuid_text(there) != cpuid_text(here):
            out.append(f"this machine's CPU is {cpuid_text(here)}, the profiled CPU's {cpuid_text(there)}")
        if there.get("logical_cores") and there["logical_cores"] != here["logical_cores"]:
            out.append(f"this machine has {here['logical_cores']} cores, not {there['logical_cores']}")
        if "simd" in there:
            out += _isa_differences(there, here)
        threads = settings.get("threads")
        if threads and threads > here["usable_cores"]:
            out.append(f"the profile runs {threads} threads, this machine may use {here['usable_cores']} cores")
    else:
        name = _host_gpu_name()
        if there.get("name") != name:
            out.append(f"this machine has {name}")
    library = RUNTIME_LIBRARY.get(metadata.get("backend", ""))
    recorded = metadata.get("versions", {}).get(library)
    if library and recorded:
        version = library_versions().get(library)
        if version != recorded:
            here_runs = f"{library} {version}" if version else f"no {library}"
            out.append(f"it ran {library} {recorded}, this machine has {here_runs}")
    return out
