"""Tuning the search's own hyperparameters with Optuna against real regret under a latency budget.

A trial proposes hyperparameters (proxy and its parameters, population size,
iterations, proxy batch size), runs complete searches with them (the same
engine as ``search``) over ``seeds`` fixed search seeds and scores the mean
regret (``hwnas.search.regret``): accuracy of the best NAS-Bench-201 cell
whose predicted latency meets the budget minus the trained accuracy of the
cell each search returned. ``objectives=("regret", "cost")`` adds the search
cost in proxy evaluations and uses NSGA-II. A returned cell over the budget
is reported to Optuna as a constraint violation, never as a penalty.

Every input (storage URL, sampler, fixed parameters, budget, data set) is
checked before the first trial. The study lives in an Optuna storage
(default ``sqlite:///OUT/tune.db``); a heartbeat marks a killed trial FAILED
when the study is resumed, and only COMPLETE trials count towards ``trials``.
One worker with a seed gives the same study every time. Proxy scores go
through an on-disk cache (``OUT/score-cache.db``) shared by every trial.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hwnas.errors import HwnasError
from hwnas.search.regret import Regret
from hwnas.search.tune_storage import check_url, open_storage

SAMPLERS = ("tpe", "nsga2", "cmaes", "random")
OBJECTIVES = (("regret",), ("regret", "cost"))
# What a trial may choose on NAS-Bench-201 (a cell mutates one edge: the space has no mutation settings).
# az_nas is set-relative: the search ranks a child within its population (selection.py), in a trial as anywhere.
DEFAULT_PROXIES = ("zen", "naswot", "synflow", "meco_opt", "az_nas", "hybrid")
HYBRID = "zen+{c:.4g}*log(flops)"  # the hybrid a trial may choose: Zen-score plus c · log FLOPs, c tuned
TUNED = ("proxy", "hybrid_c", "population", "iterations", "batch_size")
# Proxy options a run_searches setting may carry beside TUNED (named as search's options, so best.json-like).
PROXY_OPTIONS = ("wz", "wd", "transform", "beta")


@dataclass(frozen=True)
class TuneConfig:
    latency_ms: float
    space: str = "nb201"
    dataset: str = "cifar10"
    profile: str | None = None
    trials: int = 50
    seeds: int = 3
    sampler: str | None = None  # default: tpe for regret, nsga2 for regret,cost
    objectives: tuple[str, ...] = ("regret",)
    storage: str | None = None
    study: str = "hwnas-tune"
    seed: int = 0
    proxies: tuple[str, ...] = DEFAULT_PROXIES
    population: tuple[int, int] = (4, 64)
    iterations: tuple[int, int] = (20, 200)
    batch_sizes: tuple[int, ...] = (4, 8, 16)
    fixed: dict = field(default_factory=dict)  # parameters not tuned: name -> value
    heartbeat_s: int = 30

    def identity(self) -> dict:
        """What a resumed study must share with the study it continues (JSON types)."""
        d = asdict(self)
        for key in ("trials", "storage", "study", "heartbeat_s"):
            d.pop(key)
        d["sampler"] = self.sampler_name
        return json.loads(json.dumps(d))

    @property
    def sampler_name(self) -> str:
        return self.sampler or ("tpe" if len(self.objectives) == 1 else "nsga2")

    def check(self) -> None:
        if self.sampler_name not in SAMPLERS:
            raise HwnasError(f"unknown sampler {self.sampler_name!r}; expected one of: {', '.join(SAMPLERS)}")
        if tuple(self.objectives) not in OBJECTIVES:
            raise HwnasError(f"unknown objective {','.join(self.objectives)!r}; expected 'regret' or 'regret,cost'")
        if len(self.objectives) > 1 and self.sampler_name in ("tpe", "cmaes"):
            raise HwnasError(f"--objective regret,cost is multi-objective: it uses NSGA-II (--sampler nsga2) "
                             f"or random, not {self.sampler}")
        if not 1 <= self.trials <= 100_000 or not 1 <= self.seeds <= 100:
            raise HwnasError("--trials must be in 1..100000 and --seeds in 1..100")
        if not (isinstance(self.latency_ms, (int, float)) and math.isfinite(self.latency_ms) and self.latency_ms > 0):
            raise HwnasError(f"--latency-ms must be a positive number, got {self.latency_ms!r}")
        from hwnas.search.regret import DATASETS, GROUND_TRUTH_SPACES

        if self.space not in GROUND_TRUTH_SPACES:
            raise HwnasError(f"regret needs every architecture's trained accuracy; space {self.space!r} has none "
                             f"(expected one of: {', '.join(GROUND_TRUTH_SPACES)})")
        if self.dataset not in DATASETS:
            raise HwnasError(f"no NAS-Bench-201 accuracy for {self.dataset!r}; expected one of: {', '.join(DATASETS)}")
        unknown = sorted(set(self.fixed) - set(TUNED))
        if unknown:
            raise HwnasError(f"unknown tuned parameter {', '.join(unknown)}; expected some of: {', '.join(TUNED)}")
        for name, value in self.fixed.items():
            ok = (value in self.proxies if name == "proxy" else
                  isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                  and 0 <= value <= 100 if name == "hybrid_c" else
                  isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1_000_000)
            if not ok:
                expected = (f"one of --proxies ({', '.join(self.proxies)})" if name == "proxy" else
                            "a number in 0..100" if name == "hybrid_c" else "an integer in 1..1000000")
                raise HwnasError(f"--fix {name}={value!r}: expected {expected}")
        if not isinstance(self.study, str) or not self.study.strip() or len(self.study) > 256:
            raise HwnasError(f"--study {self.study!r}: expected a name of 1 to 256 characters")
        from hwnas.search.proxies import proxy_names

        names = set(proxy_names()) | {"hybrid"}
        for p in self.proxies:
            if p not in names:
                raise HwnasError(f"unknown proxy {p!r}; expected some of: hybrid, {', '.join(sorted(proxy_names()))}")
            if p == "incorporated":
                raise HwnasError("proxy 'incorporated' is not tuned: its w_z, w_d and transform are not among the "
                                 "tuned parameters (expected zen, naswot, synflow, meco_opt, az_nas, hybrid, ...; "
                                 "benchmarks/eval_tuned.py runs the papers' settings)")
        lo, hi = self.population
        ilo, ihi = self.iterations
        if not (1 <= lo <= hi <= 4096 and 1 <= ilo <= ihi <= 1_000_000 and self.batch_sizes
                and all(1 <= b <= 1024 for b in self.batch_sizes)):
            raise HwnasError("population range must be within 1..4096, iterations within 1..1000000 and batch "
                             "sizes within 1..1024 (low <= high)")


def suggest(trial, c: TuneConfig) -> dict:
    """The hyperparameters of one trial (fixed ones are recorded, not suggested)."""
    def pick(name, fn):
        if name in c.fixed:
            trial.set_user_attr(f"fixed_{name}", c.fixed[name])
            return c.fixed[name]
        return fn()

    proxy = pick("proxy", lambda: trial.suggest_categorical("proxy", list(c.proxies)))
    if proxy == "hybrid":
        coef = float(pick("hybrid_c", lambda: trial.suggest_float("hybrid_c", 0.0, 4.0)))
        proxy = HYBRID.format(c=coef)
    return {"proxy": proxy,
            "population": int(pick("population", lambda: trial.suggest_int("population", *c.population, log=True))),
            "iterations": int(pick("iterations", lambda: trial.suggest_int("iterations", *c.iterations, log=True))),
            "batch_size": int(pick("batch_size", lambda: trial.suggest_categorical("batch_size",
                                                                                   list(c.batch_sizes))))}


def search_options(c: TuneConfig, hp: dict) -> dict:
    """The ``search`` options of these hyperparameters (what best.json holds for ``search --config``)."""
    return {"space": c.space, "latency_ms": c.latency_ms, "profile": c.profile, **hp}


def run_searches(c: TuneConfig, hp: dict, seeds: list[int], out: Path, regret: Regret) -> dict:
    """Searches with these hyperparameters at each seed; mean regret, cost and the worst budget excess."""
    import pandas as pd

    from hwnas.search.budgets import Budgets
    from hwnas.search.evolution import SearchConfig, search

    rows = []
    for s in seeds:
        config = SearchConfig(space=c.space, proxy=hp["proxy"], batch_size=hp["batch_size"],
                              proxy_options={k: hp[k] for k in PROXY_OPTIONS if hp.get(k) is not None},
                              population=hp["population"], iterations=hp["iterations"], seed=s,
                              budgets=Budgets(latency_ms=c.latency_ms), profile=c.profile, checkpoint_every_s=1e9)
        folder = out / f"seed-{s}"
        summary = search(config, folder)
        history = pd.read_parquet(folder / "history.parquet", columns=["accepted", "reject_reason"])
        scored = history["accepted"] | history["reject_reason"].fillna("").str.startswith("proxy")
        arch = summary["best_structure"]
        rows.append({"seed": s, "arch": arch, "accuracy": regret.accuracy(arch), "regret": regret.of(arch),
                     "latency_ms": regret.latency(arch), "evaluations": int(scored.sum()),
                     "elapsed_s": float(summary.get("elapsed_s") or 0.0)})
    return {"regret": sum(r["regret"] for r in rows) / len(rows),
            "cost": sum(r["evaluations"] for r in rows) / len(rows),
            "excess_ms": max(r["latency_ms"] for r in rows) - c.latency_ms, "runs": rows}


def _sampler(c: TuneConfig):
    import optuna

    # Budget violations reach TPE / NSGA-II as constraints (trial.set_constraint), never as a penalty.
    if c.sampler_name == "tpe":
        return optuna.samplers.TPESampler(seed=c.seed)
    if c.sampler_name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=c.seed)
    if c.sampler_name == "random":
        return optuna.samplers.RandomSampler(seed=c.seed)
    try:
        import cmaes  # noqa: F401
    except ImportError:
        raise HwnasError("--sampler cmaes needs the cmaes package: pip install cmaes") from None
    return optuna.samplers.CmaEsSampler(seed=c.seed, independent_sampler=optuna.samplers.RandomSampler(seed=c.seed),
                                        warn_independent_sampling=False)


def prepare(c: TuneConfig, out: Path):
    """Check everything, open the storage and the study; nothing runs yet."""
    import optuna

    c.check()
    sampler = _sampler(c)
    if c.storage is not None:
        check_url(c.storage)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK):
            raise PermissionError("not writable")
    except OSError as err:
        raise HwnasError(f"--out {out}: cannot write there ({err.strerror or err}); expected a writable folder") \
            from None
    storage = open_storage(c.storage or f"sqlite:///{out.resolve() / 'tune.db'}", c.heartbeat_s)
    regret = Regret.under(c.space, c.dataset, c.latency_ms, c.profile)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["minimize"] * len(c.objectives)
    try:
        study = optuna.create_study(study_name=c.study, storage=storage, sampler=sampler, directions=directions,
                                    load_if_exists=True)
    except ValueError as err:  # an existing study with other directions
        raise HwnasError(f"--study {c.study}: {err}; expected a new study name or the same --objective") from None
    identity = c.identity()
    known = study.user_attrs.get("tune_config")
    if known is None:
        study.set_user_attr("tune_config", identity)
    elif known != identity:
        changed = sorted(k for k in identity if known.get(k) != identity[k])
        raise HwnasError(f"--study {c.study} was tuned with other settings ({', '.join(changed)} differ); "
                         "expected the same settings to continue it, or a new --study")
    return regret, study


def tune(c: TuneConfig, out: str | Path) -> dict:
    """Run trials until the study holds ``c.trials`` COMPLETE ones; write the outputs; return the summary."""
    import optuna

    from hwnas.search import score_cache
    from hwnas.search.tune_outputs import write_outputs

    if not str(out).strip():
        raise HwnasError("--out is empty; expected a folder for the study's outputs")
    out = Path(out)
    regret, study = prepare(c, out)
    seeds = [c.seed * 1000 + i for i in range(c.seeds)]
    cache = score_cache.ScoreCache(out / "score-cache.db")

    def objective(trial):
        hp = suggest(trial, c)
        trial.set_user_attr("search", search_options(c, hp))
        result = run_searches(c, hp, seeds, out / "trials" / f"{trial.number:05d}", regret)
        trial.set_user_attr("excess_ms", result["excess_ms"])
        trial.set_constraint("latency_excess_ms", result["excess_ms"])
        trial.set_user_attr("runs", result["runs"])
        return result["regret"] if len(c.objectives) == 1 else (result["regret"], result["cost"])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # a trial whose worker was killed: FAILED, never counted
    complete = (optuna.trial.TrialState.COMPLETE,)
    done = len(study.get_trials(deepcopy=False, states=complete))
    with score_cache.use(cache):
        if done < c.trials:
            study.optimize(objective, n_trials=None if c.storage else c.trials - done,
                           callbacks=[optuna.study.MaxTrialsCallback(c.trials, states=complete)],
                           catch=(), gc_after_trial=False)
    summary = write_outputs(study, c, regret, out,
                            {"entries": len(cache), "hits": cache.hits, "misses": cache.misses})
    cache.close()
    return summary
