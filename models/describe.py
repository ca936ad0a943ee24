"""What ``hwnas models list`` and ``hwnas models info`` report, as plain data.

``zoo_table`` counts every ZenNet zoo model the way the published table did
(SE as ``counted_with_se`` says) and sets the count beside the published
figure. ``describe`` resolves a zoo name, a structure string or a file holding
one, and reports its counts in a space at a resolution and class count.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hwnas.errors import HwnasError
from hwnas.models import zoo
from hwnas.models.counts import count, effectiveness, output_resolution, stages
from hwnas.models.spaces.base import get_space
from hwnas.models.spaces.nb201 import CELLS_PER_STAGE
from hwnas.models.structure import Structure, read_first_line


def _delta_pct(value: float, published: float) -> float:
    return 100.0 * (value - published) / published


def zoo_table() -> list[dict]:
    """One row per zoo model: counted params/FLOPs/layers beside the published table."""
    rows = []
    for m in zoo.models().values():
        c = count(m.structure, m.resolution, m.num_classes, use_se=m.counted_with_se)
        params_m, flops_m = c.params / 1e6, c.flops / 1e6
        rows.append({
            "name": m.name,
            "dataset": m.dataset,
            "resolution": m.resolution,
            "use_se": m.use_se,
            "counted_with_se": m.counted_with_se,
            "params": c.params,
            "flops": c.flops,
            "conv_linear_macs": c.conv_linear_macs,
            "layers": c.layers,
            "params_M": params_m,
            "flops_M": flops_m,
            "published_params_M": m.params_m,
            "published_flops_M": m.flops_m,
            "params_delta_pct": _delta_pct(params_m, m.params_m),
            "flops_delta_pct": _delta_pct(flops_m, m.flops_m),
            "top1": m.top1,
            "latency_ms_v100_fp16_b64": m.latency_ms_v100_fp16_b64,
            "table_note": m.table_note,
            "structure": str(m.structure),
        })
    return rows


def _zoo_space(model: zoo.ZooModel) -> str:
    return "cifar32" if model.resolution == 32 else "imagenet224"


def _looks_like_arch(text: str) -> bool:
    return "(" in text or text.lstrip().startswith("|")


def describe(target: str, space: str | None = None, resolution: int | None = None,
             num_classes: int | None = None, use_se: bool | None = None) -> dict:
    """Counts, stages and ρ of a zoo model, an architecture string, or a file holding one.

    For a zoo model the defaults are its resolution, class count and the SE
    setting its published row was counted with; otherwise those of the space
    (``imagenet224`` unless the text is a NAS-Bench-201 cell) and no SE.
    """
    model = None
    if _looks_like_arch(target):
        source, text = "string", target
    elif Path(target).is_file():
        source, text = "file", read_first_line(Path(target))
    else:
        if not any(target in name for name in zoo.models()):
            raise HwnasError(f"{target!r} is not a zoo model name, an architecture string or a file; "
                             f"expected e.g. zennet_imagenet1k_latency08ms_res224 or "
                             f"'SuperConvK3BNRELU(3,8,1,1)SuperConvK1BNRELU(8,64,1,1)'")
        model = zoo.get(target)
        source, text = "zoo", str(model.structure)

    if space is None:
        space = _zoo_space(model) if model else ("nb201" if text.lstrip().startswith("|") else "imagenet224")
    sp = get_space(space)
    changes = {}
    if model is not None:
        changes = {"resolution": model.resolution, "num_classes": model.num_classes}
        if use_se is None:
            use_se = model.counted_with_se
    if resolution is not None:
        changes["resolution"] = resolution
    if num_classes is not None:
        changes["num_classes"] = num_classes
    if changes:
        if not dataclasses.is_dataclass(sp):
            raise HwnasError(f"space {sp.name} does not support another resolution or class count")
        sp = dataclasses.replace(sp, **changes)
    use_se = bool(use_se)

    arch = sp.parse(text)
    c = sp.counts(arch, use_se=use_se)
    info = {
        "name": model.name if model else None,
        "source": source,
        "space": sp.name,
        "structure": sp.format(arch),
        "resolution": sp.resolution,
        "num_classes": sp.num_classes,
        "use_se": use_se,
        "params": c.params,
        "flops": c.flops,
        "conv_linear_macs": c.conv_linear_macs,
        "layers": c.layers,
    }
    if isinstance(arch, Structure):
        info["stages"] = [dataclasses.asdict(s) for s in stages(arch, sp.resolution)]
        info["output_resolution"] = output_resolution(arch, sp.resolution)
        info["rho"] = effectiveness(arch)
    else:
        info["stages"] = [{"index": i, "channels": ch, "cells": CELLS_PER_STAGE, "resolution": h}
                          for i, (ch, h) in enumerate(sp.stages())]
        info["output_resolution"] = sp.stages()[-1][1]
        info["rho"] = None
    if model is not None:
        info["published"] = {"params_M": model.params_m, "flops_M": model.flops_m, "top1": model.top1,
                             "latency_ms_v100_fp16_b64": model.latency_ms_v100_fp16_b64,
                             "counted_with_se": model.counted_with_se, "use_se": model.use_se,
                             "table_note": model.table_note}
    return info
