"""Score one architecture: what ``hwnas score`` calls."""

from __future__ import annotations

import time

from hwnas.search.proxies.base import get_proxy


def score_arch(proxy: str, space, arch, *, model: str | None = None, **options) -> dict:
    """The score of one architecture with its parts and settings, as ``hwnas score --json`` prints it.

    ``model`` is the zoo name the architecture came from, if any (reported as is).
    """
    scorer = get_proxy(proxy, **options)
    start = time.perf_counter()
    result = scorer.score(space, arch)
    seconds = time.perf_counter() - start
    return {"proxy": proxy, "score": result.value, **result.parts, "model": model, "space": space.name,
            "structure": space.format(arch), "resolution": scorer.resolution_for(space),
            "batch_size": scorer.batch_for(space), "repeat": scorer.repeat, "seed": scorer.seed,
            "seconds": seconds}
