"""Score one architecture given as text: what ``hwnas score`` calls."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from hwnas.errors import HwnasError
from hwnas.models import zoo
from hwnas.models.spaces.base import get_space
from hwnas.models.structure import read_first_line
from hwnas.search.proxies.base import get_proxy


def resolve(target: str | None = None, file: str | None = None, nb201: str | None = None,
            space: str | None = None, num_classes: int | None = None):
    """(space, architecture, zoo name or None) from a structure string, a zoo name, a file or an NB201 cell.

    A zoo model brings its space (cifar32 / imagenet224) and class count.
    Otherwise the space is nb201 for a cell, else imagenet224, unless given.
    """
    given = [x for x in (target, file, nb201) if x]
    if len(given) != 1:
        raise HwnasError("give exactly one of STRUCTURE (or a zoo model name), --file F or --nb201 ARCH")
    model = None
    if nb201:
        text, default_space = nb201, "nb201"
    elif file:
        text = read_first_line(Path(file))
        default_space = "nb201" if text.startswith("|") else "imagenet224"
    elif "(" in target or target.lstrip().startswith("|"):
        text = target
        default_space = "nb201" if target.lstrip().startswith("|") else "imagenet224"
    else:
        model = zoo.get(target)
        text = str(model.structure)
        default_space = "cifar32" if model.resolution == 32 else "imagenet224"
    sp = get_space(space or default_space)
    classes = num_classes or (model.num_classes if model else None)
    if classes and dataclasses.is_dataclass(sp) and classes != sp.num_classes:
        sp = dataclasses.replace(sp, num_classes=classes)
    return sp, sp.parse(text), (model.name if model else None)


def score_text(proxy: str, target: str | None = None, *, file: str | None = None, nb201: str | None = None,
               space: str | None = None, num_classes: int | None = None, **options) -> dict:
    """The score of one architecture with its parts and settings, as ``hwnas score --json`` prints it."""
    sp, arch, name = resolve(target, file, nb201, space, num_classes)
    scorer = get_proxy(proxy, **options)
    start = time.perf_counter()
    result = scorer.score(sp, arch)
    seconds = time.perf_counter() - start
    return {"proxy": proxy, "score": result.value, **result.parts, "model": name, "space": sp.name,
            "structure": sp.format(arch), "resolution": scorer.resolution_for(sp),
            "batch_size": scorer.batch_for(sp), "repeat": scorer.repeat, "seed": scorer.seed,
            "seconds": seconds}
