"""What ``hwnas models list`` and ``hwnas models info`` report, as plain data.

``zoo_table`` counts every ZenNet zoo model the way the published table did
(SE as ``counted_with_se`` says) and sets the count beside the published
figure. ``describe`` reports an architecture's counts in a space at its
resolution and class count (``hwnas.cli.resolve`` reads the argument).
"""

from __future__ import annotations

import dataclasses

from hwnas.models import zoo
from hwnas.models.counts import count, output_resolution, stages
from hwnas.models.spaces.base import StructureSpace
from hwnas.models.spaces.nb201 import CELLS_PER_STAGE


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


def describe(space, arch, *, source: str, use_se: bool = False, model: zoo.ZooModel | None = None) -> dict:
    """Counts, stages and ρ of an architecture in ``space`` (at its resolution and class count).

    ``source`` says where the architecture came from (``string``, ``file``,
    ``run``, ``zoo``); a zoo ``model`` adds its published row.
    """
    c = space.counts(arch, use_se=use_se)
    info = {
        "name": model.name if model else None,
        "source": source,
        "space": space.name,
        "structure": space.format(arch),
        "resolution": space.resolution,
        "num_classes": space.num_classes,
        "use_se": bool(use_se),
        "params": c.params,
        "flops": c.flops,
        "conv_linear_macs": c.conv_linear_macs,
        "layers": c.layers,
    }
    if isinstance(space, StructureSpace):
        info["stages"] = [dataclasses.asdict(s) for s in stages(arch, space.resolution)]
        info["output_resolution"] = output_resolution(arch, space.resolution)
        info["rho"] = space.effectiveness(arch)
    else:
        info["stages"] = [{"index": i, "channels": ch, "cells": CELLS_PER_STAGE, "resolution": h}
                          for i, (ch, h) in enumerate(space.stages())]
        info["output_resolution"] = space.stages()[-1][1]
        info["rho"] = None
    if model is not None:
        info["published"] = {"params_M": model.params_m, "flops_M": model.flops_m, "top1": model.top1,
                             "latency_ms_v100_fp16_b64": model.latency_ms_v100_fp16_b64,
                             "counted_with_se": model.counted_with_se, "use_se": model.use_se,
                             "table_note": model.table_note}
    return info
