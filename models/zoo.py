"""The ZenNet model zoo published with Zen-NAS, shipped inside the package as data.

``data/zennet/`` is a copy of ``../shared/reference/zennet`` (a test checks the
copy is equal): one structure string per model and ``published.csv``, the
README tables with the columns ``counted_with_se`` and ``table_note``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from hwnas.errors import HwnasError
from hwnas.models.structure import Structure, parse

_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet1k": 1000}


@dataclass(frozen=True)
class ZooModel:
    name: str
    dataset: str
    resolution: int
    use_se: bool
    counted_with_se: bool
    num_classes: int
    structure: Structure
    params_m: float
    flops_m: float
    top1: float
    latency_ms_v100_fp16_b64: float | None
    table_note: str


def data_dir():
    return resources.files("hwnas.models") / "data" / "zennet"


def _bool(text: str) -> bool:
    return text.strip().lower() == "true"


@lru_cache(maxsize=1)
def models() -> dict[str, ZooModel]:
    """Every zoo model by name, in the order of the published table."""
    root = data_dir()
    out: dict[str, ZooModel] = {}
    with (root / "published.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            name = row["name"]
            text = (root / f"{name}.txt").read_text().strip()
            latency = row["latency_ms_v100_fp16_b64"].strip()
            out[name] = ZooModel(
                name=name,
                dataset=row["dataset"],
                resolution=int(row["resolution"]),
                use_se=_bool(row["use_se"]),
                counted_with_se=_bool(row["counted_with_se"]),
                num_classes=_CLASSES[row["dataset"]],
                structure=parse(text),
                params_m=float(row["params_M"]),
                flops_m=float(row["flops_M"]),
                top1=float(row["top1"]),
                latency_ms_v100_fp16_b64=float(latency) if latency else None,
                table_note=row["table_note"].strip(),
            )
    return out


def get(name: str) -> ZooModel:
    """A zoo model by its full name or an unambiguous part of it (e.g. ``latency08ms``)."""
    zoo = models()
    if name in zoo:
        return zoo[name]
    matches = [n for n in zoo if name in n]
    if len(matches) == 1:
        return zoo[matches[0]]
    if not matches:
        raise HwnasError(f"unknown zoo model {name!r}; expected one of: {', '.join(zoo)}")
    raise HwnasError(f"zoo model {name!r} is ambiguous: {', '.join(matches)}")
