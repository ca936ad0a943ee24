"""Scoring the search's candidates: in this process, in worker processes, or as Ray tasks.

A proxy evaluation is seeded from the run seed and the candidate's canonical
text only (:func:`candidate_seed`), so a score is a pure function of the
structure wherever it is computed.
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import TYPE_CHECKING

from hwnas.errors import HwnasError, ProxyError, one_line

if TYPE_CHECKING:
    from hwnas.search.evolution import SearchConfig


def candidate_seed(run_seed: int, text: str) -> int:
    """The proxy seed of one structure: depends on the run seed and the structure only."""
    digest = hashlib.sha256(f"{run_seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class Scorer:
    """Scores structures by their canonical text; the same text always gets the same score."""

    def __init__(self, space_name: str, proxy_name: str, proxy_options: dict, batch_size: int,
                 repeat: int, run_seed: int, *, early_batch: int | None = None, early_margin: float = 0.0,
                 threads: int | None = None):
        import torch

        from hwnas.models.spaces.base import get_space

        if threads:
            torch.set_num_threads(threads)
        self.space = get_space(space_name)
        self.proxy_name = proxy_name
        self.proxy_options = dict(proxy_options)
        self.batch_size = batch_size
        self.repeat = repeat
        self.run_seed = run_seed
        self.early_batch = early_batch
        self.early_margin = early_margin
        self._resolution: int | None = None

    @classmethod
    def for_config(cls, c: SearchConfig, threads: int | None = None) -> "Scorer":
        return cls(**scorer_args(c, threads))

    def proxy(self, seed: int, batch_size: int | None = None):
        from hwnas.search.proxies import get_proxy

        # --proxy-option resolution=R scores at another input size (a cheaper evaluation); default: the proxy's own
        # for this space (the space's, or MeCo's 64 pixels at least), written into the settings (the cache key).
        # A hybrid's terms each keep their own (MeCo's 64 beside synflow's 32), as the benchmark scores them.
        if self._resolution is None:
            from hwnas.search.proxies.hybrid import Hybrid

            proxy = get_proxy(self.proxy_name, **self.proxy_options)
            self._resolution = self.proxy_options.get("resolution") or (
                0 if isinstance(proxy, Hybrid) else proxy.resolution_for(self.space))
        options = {**self.proxy_options, **({"resolution": self._resolution} if self._resolution else {})}
        return get_proxy(self.proxy_name, batch_size=batch_size or self.batch_size, repeat=self.repeat, seed=seed,
                         device="cpu", **options)

    def __call__(self, text: str, threshold: float | None = None) -> tuple[float | None, dict, str | None]:
        """(score, parts, None), or (None, {}, reason) when the proxy cannot score it; for a set-relative proxy
        (None, components, None).

        With early rejection on and a ``threshold`` (the population's lowest score
        when the child was made), a cheap estimate at ``early_batch`` comes first;
        a child whose estimate plus the margin stays below the threshold could not
        enter the population and is rejected without the full evaluation.
        """
        arch = self.space.parse(text)
        seed = candidate_seed(self.run_seed, text)
        if threshold is not None and self.early_batch:
            try:
                estimate = float(self.proxy(seed, self.early_batch).score(self.space, arch).value)
            except ProxyError:
                estimate = math.inf  # let the full evaluation decide
            if estimate + self.early_margin < threshold:
                return None, {"estimate": estimate}, (f"early: estimate {estimate:.4g} + margin {self.early_margin:g}"
                                                      f" < population minimum {threshold:.4g}")
        from hwnas.search.proxies.base import SetRelativeProxy

        proxy = self.proxy(seed)
        try:
            if isinstance(proxy, SetRelativeProxy):  # set-relative: the components; the search aggregates them (selection.py)
                return None, proxy.components(self.space, arch), None
            result = proxy.score(self.space, arch)
        except ProxyError as err:
            return None, {}, f"proxy: {one_line(err)}"
        except RuntimeError as err:  # torch could not run this network (e.g. out of memory): reject it, go on
            return None, {}, f"proxy: {type(err).__name__}: {one_line(err, 200)}"
        value = float(result.value)
        if not math.isfinite(value):
            return None, {}, f"proxy: non-finite score {value}"
        parts = {k: float(v) for k, v in (getattr(result, "parts", None) or {}).items()
                 if isinstance(v, (int, float))}
        return value, parts, None


_WORKER_SCORER: Scorer | None = None


def scorer_args(c: SearchConfig, threads: int | None = None) -> dict:
    return dict(space_name=c.space, proxy_name=c.proxy, proxy_options=c.proxy_options, batch_size=c.batch_size,
                repeat=c.repeat, run_seed=c.seed, early_batch=c.early_batch, early_margin=c.early_margin,
                threads=threads)


def _die_with_parent() -> None:
    """Linux: have the kernel end this worker when the search process dies (a kill -9 of the search must not
    leave its workers scoring); elsewhere the workers end when their task queue closes."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
        if os.getppid() == 1:  # the parent died before the signal was set
            os._exit(1)


def worker_init(kwargs: dict) -> None:
    global _WORKER_SCORER
    _die_with_parent()
    _WORKER_SCORER = Scorer(**kwargs)


def worker_score(text: str, threshold: float | None):
    return _WORKER_SCORER(text, threshold)


_RAY_SCORERS: dict[str, Scorer] = {}


def _ray_score(kwargs: dict, text: str, threshold: float | None):
    """A Ray task: score on whichever node runs it (one Scorer per worker process and setting)."""
    key = repr(sorted(kwargs.items()))
    if key not in _RAY_SCORERS:
        _RAY_SCORERS[key] = Scorer(**kwargs)
    return _RAY_SCORERS[key](text, threshold)


def _check_reachable(address: str) -> None:
    """Refuse, in one line and at once, a host:port where nothing listens (Ray itself retries for half a minute
    and prints pages of warnings first)."""
    import socket

    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as err:
        raise HwnasError(f"--ray {address}: nothing answers there ({err.strerror or err}); expected the address of "
                         f"a running Ray cluster (ray start --head)") from None


class RayPool:
    """Candidate scoring as Ray tasks on an existing cluster; results come back as futures."""

    def __init__(self, address: str, kwargs: dict):
        try:
            import ray
        except ImportError:
            raise HwnasError("--ray needs Ray: pip install 'hwnas[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            _check_reachable(address)
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR", configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as err:
                raise HwnasError(f"--ray {address}: cannot connect to a Ray cluster ({err}); expected the "
                                 f"address of a running cluster (ray start --head)") from None
        self.task = ray.remote(num_cpus=1)(_ray_score)
        self.kwargs = ray.put(kwargs)

    def submit(self, fn, text: str, threshold: float | None):
        return _RayFuture(self.ray, self.task.remote(self.kwargs, text, threshold))

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass  # the cluster belongs to the user; tasks still running finish there


class _RayFuture:
    def __init__(self, ray, ref):
        self.ray, self.ref = ray, ref

    def result(self):
        return self.ray.get(self.ref)


class Done:
    """A result computed in this process, shaped like a future."""

    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


class Scoring:
    """Where a search's candidates are scored: here (one worker), in K spawned processes, or as Ray tasks.

    ``submit`` returns a future (``result()``); a score computed here comes as a :class:`Done`.
    """

    def __init__(self, c: SearchConfig, ray_address: str | None = None):
        import torch

        self._pool = self._scorer = None
        # The thread count scoring runs with is kept: a channels-last convolution's float sums depend on it
        # (up to ~1e-4 relative), so the summary re-scores the best structure with the same count.
        if ray_address:
            self.threads = 1
            self._pool = RayPool(ray_address, scorer_args(c, threads=1))
            return
        if c.workers == 1:
            self.threads = torch.get_num_threads()
            self._scorer = Scorer.for_config(c)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.threads = max(1, (os.cpu_count() or 1) // c.workers)
        self._pool = ProcessPoolExecutor(max_workers=c.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=worker_init, initargs=(scorer_args(c, self.threads),))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def submit(self, text: str, threshold: float | None = None):
        if self._pool is not None:
            return self._pool.submit(worker_score, text, threshold)
        return Done(self._scorer(text, threshold))
