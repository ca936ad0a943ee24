"""The evolutionary zero-shot search: Zen-NAS Alg. 2 / Incorporated-NAS Alg. 1.

One iteration picks a parent uniformly from the population, mutates it, checks
every budget from the child's structure alone (analytic counts, effectiveness,
the latency table), scores the child with the proxy only if it fits, adds it
and drops the lowest-scored member once the population is larger than N (a
set-relative proxy such as AZ-NAS: the lowest aggregate within the population
plus the child; ``selection.py``).
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

import math
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from hwnas.errors import BudgetError, HwnasError, ProfileError
from hwnas.search.budgets import BudgetChecker, Budgets, Metrics, default_max_layers
from hwnas.search.checkpoint import save_checkpoint, write_json
from hwnas.search.results import config_record, metric_columns, write_results
from hwnas.search.runs import FAILED, hold_for_search, mark_failed
from hwnas.search.selection import selection_for
from hwnas.search.workers import Done, Scorer, Scoring

# Official: while the population holds <= 10 members, mutate the initial structure (here at most N - 1
# members, so that a population of 10 or fewer still evolves).
EARLY_GROWTH = 10
# The seed of the proxy made only to check the proxy options before the search starts (it scores nothing).
OPTIONS_CHECK_SEED = 0
# Called after every iteration with (iterations done, total iterations, statistics or None): the
# statistics (best score, acceptance rate, population size) come when they may have changed, and last.
ProgressCallback = Callable[[int, int, "dict | None"], None]


@dataclass(frozen=True)
class SearchConfig:
    """Everything that decides a search's result (plus how often it checkpoints)."""

    space: str = "imagenet224"
    proxy: str | None = None  # None: the space's default proxy (default_proxy)
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


# --------------------------------------------------------------------------- setup




@dataclass
class Prepared:
    space: Any
    profile: Any
    checker: BudgetChecker
    initial: Any
    config: SearchConfig
    selection: Any = None  # how a scored child is compared with the population (search/selection.py)


def _fastest_that_fits(space, checker: BudgetChecker, predictor):
    """A listable space's network of least predicted latency, if it meets ``checker``'s budgets (the smallest
    network need not be the fastest: on a CPU profile of NB201 the all-``none`` cell is not); else None."""
    from hwnas.models.spaces.base import FiniteSpace

    if predictor is None or not isinstance(space, FiniteSpace):
        return None
    archs = list(space.all_archs())
    latency = predictor.predict_many(archs)
    fastest = archs[int(latency.argmin())]
    return fastest if checker.violation(checker.measure(fastest)) is None else None


def prepare(config: SearchConfig, latency_batch: int | None = None) -> Prepared:
    """Check every input before any work: space, profile, budgets, proxy options.

    Raises a HwnasError subclass (one line, exit 2 in the CLI) for bad input.
    """
    from hwnas.models.spaces.base import get_space

    if config.population < 1 or config.iterations < 0 or config.workers < 1 or config.batch_size < 1:
        raise HwnasError("population, batch size and workers must be >= 1 and iterations >= 0")
    space = get_space(config.space)
    if config.proxy is None:
        config = replace(config, proxy=space.default_proxy)
    budgets = config.budgets
    budgets.validate()
    from hwnas.models.spaces.base import StructureSpace

    if config.proxy == "incorporated" and isinstance(space, StructureSpace):
        # Incorporated-NAS constrains effectiveness (rho <= rho0 = 0.5); the search enforces it
        # from the structure, and the proxy reports against the same bound. rho is defined for
        # ZenNAS structures only: on NAS-Bench-201 there is no rho constraint (an explicit
        # --rho-max is refused there by the budget checker).
        rho_max = budgets.rho_max if budgets.rho_max is not None else config.proxy_options.get("rho_max", 0.5)
        budgets = replace(budgets, rho_max=rho_max)
        config = replace(config, budgets=budgets, proxy_options={**config.proxy_options, "rho_max": rho_max})

    if budgets.latency_ms is not None and budgets.max_layers is None and isinstance(space, StructureSpace):
        budgets = replace(budgets, max_layers=default_max_layers(budgets.latency_ms))
        config = replace(config, budgets=budgets)

    profile = predictor = None
    if budgets.latency_ms is not None or config.profile is not None:
        from hwnas.latency.predictor import Predictor
        from hwnas.latency.profile import Profile

        profile = Profile.for_space(space, config.profile, batch=latency_batch)
        predictor = Predictor(profile)
    checker = BudgetChecker(space, budgets, predictor)

    smallest = space.smallest()
    # rho is not monotone in size (the narrowest network has the largest), so it is left out here.
    size_only = BudgetChecker(space, replace(budgets, rho_max=None), predictor)
    start = size_only.measure(smallest)
    # A device may have no figure for the smallest network (an imported profile marks it not deployable:
    # infinite latency); then it proves nothing about the others, and the search starts from the initial one.
    deployable = start.latency_ms is None or math.isfinite(start.latency_ms)
    reason = size_only.violation(start)
    if reason is not None and deployable:
        fastest = _fastest_that_fits(space, size_only, predictor)
        if fastest is None:
            raise BudgetError(f"no network of space {space.name!r} meets the budgets: even its smallest "
                              f"network has {reason}")
        smallest = fastest

    if config.initial:
        initial = space.parse(config.initial)
    else:
        initial = space.initial()
        # The space's starting network is sized for ZenNAS's budgets; under a tighter budget
        # the search grows from its narrowest form instead (as space.sample does).
        if size_only.violation(size_only.measure(initial)) is not None:
            if not deployable:
                raise BudgetError(f"neither the initial nor the smallest network of space {space.name!r} meets "
                                  f"the budgets on this profile (the smallest has {reason}); pass --initial with "
                                  "one that does")
            initial = smallest
    config = replace(config, initial=space.format(initial))

    # Fail on unknown proxies or options now, not in a worker after minutes.
    if config.early_batch is not None and config.early_batch < 1:
        raise HwnasError(f"--early-batch must be >= 1, got {config.early_batch}")
    selection = selection_for(Scorer.for_config(config).proxy(OPTIONS_CHECK_SEED))
    if selection.set_relative and config.early_batch is not None:
        raise HwnasError(f"--early-batch: proxy {config.proxy!r} scores within a set, so no estimate can be compared "
                         "with a population minimum; expected no --early-batch with it")
    return Prepared(space, profile, checker, initial, config, selection)


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
    def __init__(self, prepared: Prepared, out: Path, progress: ProgressCallback | None = None,
                 ray_address: str | None = None):
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
        self.scoring: Scoring | None = None  # open while the search runs
        self.threads: int | None = None  # the scoring's thread count (see Scoring)
        self._session_start = time.perf_counter()
        self._base_elapsed = 0.0
        self._accepted = 0  # accepted rows of the history, for the progress statistics

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
        """Take the checkpointed state; its children still being scored are submitted again by :meth:`run`."""
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
        self.queue = deque(_Ticket(*fields) for fields in state["queue"])

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
        if t.future is not None and not wait and not isinstance(t.future, Done):
            return False
        self.queue.popleft()
        result = t.future.result() if t.future is not None else None
        row = {"iteration": t.iteration, "structure": t.text, "score": None, **metric_columns(t.metrics),
               "accepted": False, "reject_reason": t.reason, "time_s": self._clock()}
        if result is not None:
            score, parts, reason = result
            # What is known of a structure: its score, a set-relative proxy's components, or why it failed.
            self.cache[t.text] = reason if reason is not None else dict(parts) if score is None else score
            if reason is not None:
                row["reject_reason"] = reason
            else:
                row["accepted"] = True
                self._accepted += 1
                member = {"structure": t.text, "score": score, **metric_columns(t.metrics),
                          "iteration": t.iteration, **{f"proxy_{k}": v for k, v in parts.items()}}
                row["score"] = self.p.selection.admit(self.population, member, self.config.population)
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
                ticket.score = known if isinstance(known, float) else None  # a set-relative one has no own score
                if isinstance(known, str):
                    ticket.reason = f"duplicate ({known})"
            else:
                if self.config.early_batch and len(self.population) >= self.config.population:
                    ticket.threshold = min(m["score"] for m in self.population)
                ticket.future = self.scoring.submit(text, ticket.threshold)
        self.queue.append(ticket)
        self.iteration += 1
        while self._apply_front(wait=False):
            pass

    def run(self, state: dict | None = None) -> dict:
        """Search from ``state`` (a checkpoint's), else from the start, checkpointing at once."""
        if state is not None:
            self.restore(state)
            (self.out / FAILED).unlink(missing_ok=True)  # resumed: it ends as this run ends
        else:  # the first checkpoint before any work: a kill from here on resumes to the same result
            save_checkpoint(self.out, self.state())
        try:
            write_json(self.out / "config.json", config_record(self))
            self.scoring = Scoring(self.config, self.ray_address)
            self.threads = self.scoring.threads
            try:
                for t in self.queue:
                    if t.reason is None and t.score is None:  # was being scored when checkpointed
                        t.future = self.scoring.submit(t.text, t.threshold)
                self._loop()
            finally:
                self.scoring.close()
            return write_results(self)
        except Exception as err:  # not a kill or Ctrl-C: those leave the folder to --resume only
            mark_failed(self.out, err)
            raise

    def _loop(self) -> None:
        total = self.config.iterations
        if self.progress:
            self.progress(self.iteration, total, None)
        self._session_start = last_ckpt = time.perf_counter()
        self._base_elapsed = self.elapsed_s
        try:
            while self.iteration < total:
                done_before = len(self.history)
                self._step()
                now = time.perf_counter()
                self.elapsed_s = self._clock()
                if self.progress:
                    changed = len(self.history) != done_before or self.iteration % 10 == 0
                    self.progress(self.iteration, total, self._statistics() if changed else None)
                if now - last_ckpt >= self.config.checkpoint_every_s:
                    save_checkpoint(self.out, self.state())
                    last_ckpt = now
            while self.queue:
                self._apply_front(wait=True)
            self.elapsed_s = self._clock()
            save_checkpoint(self.out, self.state())
        finally:
            if self.progress:
                self.progress(self.iteration, total, self._statistics())

    def _clock(self) -> float:
        """Seconds of search so far, over every session of a resumed run."""
        return self._base_elapsed + (time.perf_counter() - self._session_start)

    def _statistics(self) -> dict:
        best = max((m["score"] for m in self.population), default=float("nan"))
        return {"best": f"{best:.4g}", "accept": f"{self._accepted / max(1, len(self.history)):.0%}",
                "pop": len(self.population)}

# --------------------------------------------------------------------------- entry points


def search(config: SearchConfig, out: str | Path, *, resume: bool = False, progress: ProgressCallback | None = None,
           latency_batch: int | None = None, ray_address: str | None = None) -> dict:
    """Run (or resume) a search into ``out`` and return its summary; ``progress`` is called after every iteration.

    Every input is checked before any work; then ``out`` is locked for this
    process (a second writer is refused) and a checkpoint is written at once.
    An ``out`` holding a search's progress is refused unless ``resume`` is set,
    so nothing written is lost; one without progress (see
    :func:`hwnas.search.runs.hold_for_search`) is started from the start.
    With ``ray_address`` the candidates are scored as tasks on that Ray cluster,
    ``config.workers`` at a time; the result equals a local run with the same workers.
    """
    prepared = prepare(config, latency_batch=latency_batch)
    with hold_for_search(out, resume) as state:
        return Evolution(prepared, Path(out), progress=progress, ray_address=ray_address).run(state)
