"""The evolutionary zero-shot search: Zen-NAS Alg. 2 / Incorporated-NAS Alg. 1.

One iteration picks a parent uniformly from the population, mutates it, checks
every budget from the child's structure alone (analytic counts, effectiveness,
the latency table), scores the child with the proxy only if it fits, adds it
and drops the lowest-scored member once the population is larger than N.
As in the official code, while the population holds at most 10 members the
child is a single-block mutant of the initial structure; afterwards a
two-block mutant of the parent.

Reproducibility. All random choices of the search come from one
``random.Random(seed)`` in the driver; a proxy evaluation is seeded from the
run seed and the child's canonical text only, so a score is a pure function of
the structure. With ``workers`` K > 1 the scores are computed in K processes
(asynchronous steady-state evolution): child ``i`` is generated once fewer than
K evaluations are outstanding, and results are applied strictly in iteration
order, so the run is a function of (seed, K) and not of timing. The checkpoint
holds the population, the score cache, the history, the random state and the
children still being scored; ``--resume`` re-scores those children and continues
to the same final result as an uninterrupted run.

Design choices that differ from the official code (documented in docs/search.md):
a structure is scored at most once (a child equal to a scored or pending one is
rejected as a duplicate instead of entering the population a second time);
FLOPs and params are exact counts, not the official undercounts; latency comes
from the profile's table instead of live timing.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hwnas.errors import BudgetError, HwnasError, ProfileError, ProxyError
from hwnas.search.budgets import BudgetChecker, Budgets, Metrics, default_max_layers
from hwnas.search.checkpoint import (
    CHECKPOINT, load_checkpoint, save_checkpoint, write_json, write_parquet, write_text,
)

# Official: while the population holds <= 10 members, mutate the initial structure (here at most N - 1
# members, so that a population of 10 or fewer still evolves).
EARLY_GROWTH = 10
HISTORY_COLUMNS = ["iteration", "structure", "score", "latency_ms", "flops", "params", "layers", "rho", "accepted",
                   "reject_reason", "time_s"]
RESULT_FILES = ("best.txt", "population.parquet", "history.parquet", "config.json", "summary.json")


@dataclass(frozen=True)
class SearchConfig:
    """Everything that decides a search's result (plus how often it checkpoints)."""

    space: str = "imagenet224"
    proxy: str = "zen"
    proxy_options: dict = field(default_factory=dict)
    batch_size: int = 64
    repeat: int = 1
    population: int = 512
    iterations: int = 480_000
    seed: int = 0
    workers: int = 1
    budgets: Budgets = Budgets()
    profile: str | None = None
    initial: str | None = None
    early_batch: int | None = None  # early rejection: batch of the cheap first estimate (off when None)
    early_margin: float = 1.0  # ... and the error bound it is trusted to
    checkpoint_every_s: float = 60.0

    def identity(self) -> dict:
        """The fields a resumed run must share with the run it continues."""
        d = asdict(self)
        for key in ("iterations", "checkpoint_every_s", "profile"):
            d.pop(key)
        return d


# --------------------------------------------------------------------------- scoring


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

    @classmethod
    def for_config(cls, c: SearchConfig, threads: int | None = None) -> "Scorer":
        return cls(**scorer_args(c, threads))

    def proxy(self, seed: int, batch_size: int | None = None):
        from hwnas.search.proxies import get_proxy

        return get_proxy(self.proxy_name, resolution=self.space.resolution, batch_size=batch_size or self.batch_size,
                         repeat=self.repeat, seed=seed, device="cpu", **self.proxy_options)

    def __call__(self, text: str, threshold: float | None = None) -> tuple[float | None, dict, str | None]:
        """(score, parts, None), or (None, {}, reason) when the proxy cannot score it.

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
        try:
            result = self.proxy(seed).score(self.space, arch)
        except ProxyError as err:
            return None, {}, f"proxy: {' '.join(str(err).split())}"
        except RuntimeError as err:  # torch could not run this network (e.g. out of memory): reject it, go on
            return None, {}, f"proxy: {type(err).__name__}: {' '.join(str(err).split())[:200]}"
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


def _worker_init(kwargs: dict) -> None:
    global _WORKER_SCORER
    _WORKER_SCORER = Scorer(**kwargs)


def _worker_score(text: str, threshold: float | None):
    return _WORKER_SCORER(text, threshold)


_RAY_SCORERS: dict[str, Scorer] = {}


def _ray_score(kwargs: dict, text: str, threshold: float | None):
    """A Ray task: score on whichever node runs it (one Scorer per worker process and setting)."""
    key = repr(sorted(kwargs.items()))
    if key not in _RAY_SCORERS:
        _RAY_SCORERS[key] = Scorer(**kwargs)
    return _RAY_SCORERS[key](text, threshold)


class _RayPool:
    """Candidate scoring as Ray tasks on an existing cluster; results come back as futures."""

    def __init__(self, address: str, kwargs: dict):
        try:
            import ray
        except ImportError:
            raise HwnasError("--ray needs Ray: pip install 'hwnas[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
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


class _Done:
    """A result computed in this process, shaped like a future."""

    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


# --------------------------------------------------------------------------- setup


def load_profile(name: str | None, space) -> Any:
    """The latency profile for a search on ``space``; ProfileError when it does not fit."""
    from hwnas.latency.profile import Profile, default_profile_name

    prof = Profile.load(name if name else default_profile_name(space.name))
    if prof.space != space.name:
        raise ProfileError(f"profile {prof.name!r} was measured on space "
                           f"{prof.space!r}; the search runs on {space.name!r} (pass --space {prof.space} "
                           f"or a profile of {space.name})")
    if int(prof.resolution) != int(space.resolution):
        raise ProfileError(f"profile {prof.name!r} resolution {prof.resolution} does not match the space's "
                           f"{space.resolution}; expected a profile measured at {space.resolution}x{space.resolution}")
    return prof


@dataclass
class Prepared:
    space: Any
    profile: Any
    checker: BudgetChecker
    initial: Any
    config: SearchConfig


def prepare(config: SearchConfig, latency_batch: int | None = None) -> Prepared:
    """Check every input before any work: space, profile, budgets, proxy options.

    Raises a HwnasError subclass (one line, exit 2 in the CLI) for bad input.
    """
    from hwnas.models.spaces.base import get_space

    if config.population < 1 or config.iterations < 0 or config.workers < 1 or config.batch_size < 1:
        raise HwnasError("population, batch size and workers must be >= 1 and iterations >= 0")
    space = get_space(config.space)
    budgets = config.budgets
    budgets.validate()
    if config.proxy == "incorporated":
        # Incorporated-NAS constrains effectiveness (rho <= rho0 = 0.5); the search enforces it
        # from the structure, and the proxy reports against the same bound.
        rho_max = budgets.rho_max if budgets.rho_max is not None else config.proxy_options.get("rho_max", 0.5)
        budgets = replace(budgets, rho_max=rho_max)
        config = replace(config, budgets=budgets, proxy_options={**config.proxy_options, "rho_max": rho_max})
    from hwnas.models.spaces.base import StructureSpace

    if budgets.latency_ms is not None and budgets.max_layers is None and isinstance(space, StructureSpace):
        budgets = replace(budgets, max_layers=default_max_layers(budgets.latency_ms))
        config = replace(config, budgets=budgets)

    profile = predictor = None
    if budgets.latency_ms is not None or config.profile is not None:
        from hwnas.latency.predictor import Predictor

        profile = load_profile(config.profile, space)
        if latency_batch is not None and int(latency_batch) != int(profile.batch):
            raise ProfileError(f"profile was measured at batch {profile.batch}, the search asks for latency at "
                               f"batch {latency_batch}; expected a profile measured at batch {latency_batch}")
        predictor = Predictor(profile)
    checker = BudgetChecker(space, budgets, predictor)

    smallest = space.smallest()
    # rho is not monotone in size (the narrowest network has the largest), so it is left out here.
    size_only = BudgetChecker(space, replace(budgets, rho_max=None), predictor)
    reason = size_only.violation(size_only.measure(smallest))
    if reason is not None:
        raise BudgetError(f"no network of space {space.name!r} meets the budgets: even its smallest "
                          f"network has {reason}")

    if config.initial:
        initial = space.parse(config.initial)
    else:
        initial = space.initial()
        # The space's starting network is sized for ZenNAS's budgets; under a tighter budget
        # the search grows from its narrowest form instead (as space.sample does).
        if size_only.violation(size_only.measure(initial)) is not None:
            initial = smallest
    config = replace(config, initial=space.format(initial))

    # Fail on unknown proxies or options now, not in a worker after minutes.
    if config.early_batch is not None and config.early_batch < 1:
        raise HwnasError(f"--early-batch must be >= 1, got {config.early_batch}")
    Scorer.for_config(config).proxy(0)
    return Prepared(space, profile, checker, initial, config)


# --------------------------------------------------------------------------- the search


@dataclass
class _Ticket:
    """One iteration on its way into the history, applied strictly in iteration order."""

    iteration: int
    text: str
    metrics: Metrics | None
    reason: str | None = None  # set for a child rejected before scoring
    score: float | None = None  # set for a duplicate of an already scored structure
    threshold: float | None = None  # the population minimum early rejection compares with
    future: Any = None  # set while the child is being scored


class Evolution:
    def __init__(self, prepared: Prepared, out: Path, progress: bool = True, ray_address: str | None = None):
        self.p = prepared
        self.config = prepared.config
        self.space = prepared.space
        self.checker = prepared.checker
        self.out = Path(out)
        self.progress = progress
        self.ray_address = ray_address
        self.rng = random.Random(self.config.seed)
        self.iteration = 0
        self.population: list[dict] = []
        self.cache: dict[str, float | str] = {}  # text -> score, or the reason it could not be scored
        self.history: list[dict] = []
        self.queue: deque[_Ticket] = deque()
        self.elapsed_s = 0.0
        self._pool = None
        self._scorer = None
        self._threads: int | None = None  # set by _open
        self._session_start = time.perf_counter()
        self._base_elapsed = 0.0
        self._accepted = 0  # accepted rows of the history, for the progress bar

    # ---- state

    def state(self) -> dict:
        return {
            "config": self.config.identity(),
            "profile_hash": None if self.p.profile is None else self.p.profile.hash,
            "iteration": self.iteration,
            "rng": self.rng.getstate(),
            "population": self.population,
            "cache": self.cache,
            "history": self.history,
            "queue": [(t.iteration, t.text, t.metrics, t.reason, t.score, t.threshold) for t in self.queue],
            "elapsed_s": self.elapsed_s,
        }

    def restore(self, state: dict) -> None:
        if state["config"] != self.config.identity():
            changed = sorted(k for k in state["config"] if state["config"][k] != self.config.identity().get(k))
            raise HwnasError(f"--resume: the settings differ from the checkpointed run in {', '.join(changed)}; "
                             f"expected the same settings (only --iterations may change)")
        profile_hash = None if self.p.profile is None else self.p.profile.hash
        if state.get("profile_hash") != profile_hash:
            raise ProfileError(f"--resume: the latency profile differs from the checkpointed run's (hash "
                               f"{state.get('profile_hash')} there, {profile_hash} now); expected the same profile")
        self.iteration = state["iteration"]
        self.rng.setstate(state["rng"])
        self.population = state["population"]
        self.cache = state["cache"]
        self.history = state["history"]
        self.elapsed_s = state["elapsed_s"]
        self._accepted = sum(1 for r in self.history if r["accepted"])
        self.queue = deque()
        for iteration, text, metrics, reason, score, threshold in state["queue"]:
            ticket = _Ticket(iteration, text, metrics, reason, score, threshold)
            if reason is None and score is None:
                ticket.future = self._submit(text, threshold)
            self.queue.append(ticket)

    # ---- scoring back ends

    def _open(self) -> None:
        import torch

        c = self.config
        # The thread count scoring runs with is kept: a channels-last convolution's float sums depend on it
        # (up to ~1e-4 relative), so the summary re-scores the best structure with the same count.
        if self.ray_address:
            self._threads = 1
            self._pool = _RayPool(self.ray_address, scorer_args(c, threads=1))
            return
        if c.workers == 1:
            self._threads = torch.get_num_threads()
            self._scorer = Scorer.for_config(c)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._threads = max(1, (os.cpu_count() or 1) // c.workers)
        self._pool = ProcessPoolExecutor(max_workers=c.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_worker_init, initargs=(scorer_args(c, self._threads),))

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _submit(self, text: str, threshold: float | None = None):
        if self._pool is not None:
            return self._pool.submit(_worker_score, text, threshold)
        return _Done(self._scorer(text, threshold))

    # ---- the loop

    def _propose(self) -> tuple[str, Any]:
        """A child: a mutant of the initial structure while the population is small, else of a random parent."""
        if len(self.population) <= min(EARLY_GROWTH, self.config.population - 1):
            parent, replaces = self.p.initial, 1
        else:
            parent = self.space.parse(self.population[self.rng.randint(0, len(self.population) - 1)]["structure"])
            replaces = 2
        child = self.space.mutate(parent, self.rng, num_blocks=replaces)
        return self.space.format(child), child

    def _outstanding(self) -> int:
        return sum(1 for t in self.queue if t.future is not None)

    def _apply_front(self, wait: bool) -> bool:
        """Apply the oldest ticket if it needs no waiting (or ``wait``); True if one was applied."""
        if not self.queue:
            return False
        t = self.queue[0]
        if t.future is not None and not wait and not isinstance(t.future, _Done):
            return False
        self.queue.popleft()
        result = t.future.result() if t.future is not None else None
        row = {"iteration": t.iteration, "structure": t.text, "score": None, **_metric_cols(t.metrics),
               "accepted": False, "reject_reason": t.reason, "time_s": self._clock()}
        if result is not None:
            score, parts, reason = result
            self.cache[t.text] = score if reason is None else reason
            if reason is not None:
                row["reject_reason"] = reason
            else:
                row["score"] = score
                row["accepted"] = True
                self._accepted += 1
                self.population.append({"structure": t.text, "score": score, **_metric_cols(t.metrics),
                                        "iteration": t.iteration, **{f"proxy_{k}": v for k, v in parts.items()}})
                while len(self.population) > self.config.population:
                    low = min(range(len(self.population)), key=lambda j: self.population[j]["score"])
                    self.population.pop(low)
        elif t.score is not None:
            row["score"] = t.score
        self.history.append(row)
        return True

    def _step(self) -> None:
        # At most K children are scored at once; which results the next child sees
        # depends only on the order of events, never on timing.
        while self._outstanding() >= self.config.workers:
            self._apply_front(wait=True)
        while self._apply_front(wait=False):
            pass
        i = self.iteration
        text, child = self._propose()
        metrics = self.checker.measure(child)
        reason = self.checker.violation(metrics)
        ticket = _Ticket(i, text, metrics, reason)
        if reason is None:
            pending = {t.text for t in self.queue if t.future is not None}
            if text in self.cache or text in pending:
                known = self.cache.get(text)
                ticket.reason = "duplicate (already scored)" if text in self.cache else "duplicate (being scored)"
                ticket.score = known if isinstance(known, float) else None
                if ticket.score is None and text in self.cache:
                    ticket.reason = f"duplicate ({known})"
            else:
                if self.config.early_batch and len(self.population) >= self.config.population:
                    ticket.threshold = min(m["score"] for m in self.population)
                ticket.future = self._submit(text, ticket.threshold)
        self.queue.append(ticket)
        self.iteration += 1
        while self._apply_front(wait=False):
            pass

    def run(self, resume: bool = False) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        self._open()
        try:
            state = load_checkpoint(self.out) if resume else None
            if state is not None:
                self.restore(state)
            write_json(self.out / "config.json", self._config_record())
            self._loop()
        finally:
            self._close()
        return self._finish()

    def _loop(self) -> None:
        total = self.config.iterations
        bar = _progress(total, self.iteration, self.progress)
        self._session_start = last_ckpt = time.perf_counter()
        self._base_elapsed = self.elapsed_s
        try:
            while self.iteration < total:
                done_before = len(self.history)
                self._step()
                now = time.perf_counter()
                self.elapsed_s = self._clock()
                if bar is not None:
                    bar.update(1)
                    if len(self.history) != done_before or self.iteration % 10 == 0:
                        bar.set_postfix(self._postfix(), refresh=False)
                if now - last_ckpt >= self.config.checkpoint_every_s:
                    save_checkpoint(self.out, self.state())
                    last_ckpt = now
            while self.queue:
                self._apply_front(wait=True)
            self.elapsed_s = self._clock()
            save_checkpoint(self.out, self.state())
        finally:
            if bar is not None:
                bar.set_postfix(self._postfix(), refresh=False)
                bar.close()

    def _clock(self) -> float:
        """Seconds of search so far, over every session of a resumed run."""
        return self._base_elapsed + (time.perf_counter() - self._session_start)

    def _postfix(self) -> dict:
        best = max((m["score"] for m in self.population), default=float("nan"))
        return {"best": f"{best:.4g}", "accept": f"{self._accepted / max(1, len(self.history)):.0%}",
                "pop": len(self.population)}

    # ---- results

    def _config_record(self) -> dict:
        c = self.config
        prof = self.p.profile
        record = asdict(c)
        record["resolution"] = self.space.resolution
        record["num_classes"] = self.space.num_classes
        record["profile_info"] = None if prof is None else {
            "name": getattr(prof, "name", None), "path": str(getattr(prof, "path", "") or "") or None,
            "hash": prof.hash, "backend": prof.backend, "batch": prof.batch, "resolution": prof.resolution,
            "space": prof.space}
        from hwnas import __version__

        record["hwnas_version"] = __version__
        record["python"] = sys.version.split()[0]
        return record

    def _finish(self) -> dict:
        import pandas as pd

        hist = pd.DataFrame(self.history, columns=HISTORY_COLUMNS)
        write_parquet(self.out / "history.parquet", hist)
        if not self.population:
            raise BudgetError(f"no candidate met the budgets in {self.iteration} iterations "
                              f"(see {self.out / 'history.parquet'}); loosen a budget or raise --iterations")
        pop = pd.DataFrame(self.population).sort_values("score", ascending=False, kind="stable")
        write_parquet(self.out / "population.parquet", pop)

        best = max(self.population, key=lambda m: m["score"])  # first of equal scores, as the official code
        arch = self.space.parse(best["structure"])
        metrics = self.checker.measure(arch)  # recomputed from the structure, not carried
        import torch

        threads = torch.get_num_threads()
        try:  # the thread count the search scored with (see _open)
            score, parts, reason = Scorer.for_config(self.config, threads=self._threads)(best["structure"])
        finally:
            torch.set_num_threads(threads)
        accepted = int(hist["accepted"].sum())
        summary = {
            "best_structure": best["structure"],
            "score": score,
            "score_parts": parts,
            "score_in_search": best["score"],
            **{k: v for k, v in metrics.as_dict().items()},
            "budgets": self.config.budgets.as_dict(),
            "meets_budgets": self.checker.violation(metrics) is None,
            "iterations": self.iteration,
            "accepted": accepted,
            "acceptance_rate": accepted / max(1, len(hist)),
            "scored": sum(1 for v in self.cache.values() if isinstance(v, float)),
            "elapsed_s": self.elapsed_s,
            "iterations_per_s": self.iteration / self.elapsed_s if self.elapsed_s > 0 else None,
            "profile_hash": None if self.p.profile is None else self.p.profile.hash,
            "space": self.config.space,
            "proxy": self.config.proxy,
            "workers": self.config.workers,
            "seed": self.config.seed,
        }
        if reason is not None:
            summary["score_error"] = reason
        write_text(self.out / "best.txt", best["structure"] + "\n")
        write_json(self.out / "summary.json", summary)
        return summary


def _metric_cols(m: Metrics | None) -> dict:
    if m is None:
        return {"latency_ms": None, "flops": None, "params": None, "layers": None, "rho": None}
    return m.as_dict()


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, desc="search", file=sys.stderr)


# --------------------------------------------------------------------------- entry points


def search(config: SearchConfig, out: str | Path, *, resume: bool = False, progress: bool = True,
           latency_batch: int | None = None, ray_address: str | None = None) -> dict:
    """Run (or resume) a search into ``out`` and return its summary.

    Every input is checked before any work; an ``out`` that already holds a
    search is refused unless ``resume`` is set, so nothing written is lost.
    With ``ray_address`` the candidates are scored as tasks on that Ray cluster,
    ``config.workers`` at a time; the result equals a local run with the same workers.
    """
    out = Path(out)
    if not resume and out.exists() and any((out / name).exists() for name in (CHECKPOINT, *RESULT_FILES)):
        raise HwnasError(f"{out} already holds a search; pass --resume to continue it or choose another --out")
    if resume and not (out / CHECKPOINT).is_file():
        raise HwnasError(f"--resume: {out} holds no checkpoint ({CHECKPOINT}); expected the --out of a started search")
    prepared = prepare(config, latency_batch=latency_batch)
    return Evolution(prepared, out, progress=progress, ray_address=ray_address).run(resume=resume)


def measure_best(out: str | Path, profile: str | None = None) -> dict:
    """Measure the best structure of a finished search end to end with its profile's backend.

    Adds ``measured_ms`` and the prediction's error next to ``latency_ms`` in summary.json.
    """
    from hwnas.latency.predictor import Predictor
    from hwnas.latency.validate import measure_end_to_end
    from hwnas.models.spaces.base import get_space
    from hwnas.search.runs import read_json, read_run

    run = read_run(out)
    summary = read_json(run.summary_path)
    space = get_space(run.space)
    prof = load_profile(profile or run.profile, space)
    arch = space.parse(summary["best_structure"])
    predicted = float(Predictor(prof).predict_ms(arch))
    measured = float(measure_end_to_end(prof, arch))
    summary.update({"predicted_ms": predicted, "measured_ms": measured,
                    "prediction_error_pct": 100.0 * (predicted / measured - 1.0),
                    "measured_with": {"profile": prof.name, "backend": prof.backend, "batch": prof.batch,
                                      "hash": prof.hash}})
    write_json(run.summary_path, summary)
    return summary
