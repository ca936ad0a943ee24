"""``hwnas search`` (also the ``search`` console script): the latency-constrained evolutionary search."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hwnas.cli.options import (BATCH, REPEAT, SEED, BoundedFloat, BoundedInt, InputFile, NonEmpty, OutputDir,
                               OutputFile, RayAddress)
from hwnas.cli.output import echo_json, echo_table, progress_bar
from hwnas.errors import HwnasError


# Proxy settings the search gives every evaluation itself, so no --proxy-option may.
_SEARCH_SETS = {"batch_size": "--batch-size", "repeat": "--repeat", "seed": "from --seed and the structure",
                "device": "cpu"}


def _proxy_options(items: tuple[str, ...], **named) -> dict:
    options = {k: v for k, v in named.items() if v is not None}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HwnasError(f"--proxy-option {item!r}: expected KEY=VALUE")
        if key in _SEARCH_SETS:
            raise HwnasError(f"--proxy-option {key}: the search sets it ({_SEARCH_SETS[key]}); expected one of the "
                             "proxy's own options or resolution / dtype")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _initial(value: str | None, space: str) -> str | None:
    """The text of --initial: a structure, @FILE (or FILE), a zoo name or a run folder, read in ``space``."""
    if value is None:
        return None
    from hwnas.cli.resolve import resolve_arch, resolve_text
    from hwnas.models.structure import read_first_line

    if value.startswith("@"):
        found = resolve_text(read_first_line(value[1:]), source="file", space=space)
    else:
        found = resolve_arch(value, space=space)
    return found.space.format(found.arch)


def _load_config(ctx: click.Context, param, value: str | None):
    """--config FILE: a JSON object of search options (e.g. hwnas tune's best.json); the command line wins."""
    if value is None:
        return None
    path = Path(value)
    if not path.is_file() or path.stat().st_size > 1_000_000:
        raise HwnasError(f"--config {value}: not a readable file under 1 MB; expected a JSON object of search options")
    try:
        options = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HwnasError(f"--config {value}: not JSON ({err}); expected a JSON object of search options") from None
    names = {p.name for p in ctx.command.params} - {"config", "resume", "out"}
    if not isinstance(options, dict) or set(options) - names:
        unknown = ", ".join(sorted(set(options) - names)) if isinstance(options, dict) else "not an object"
        raise HwnasError(f"--config {value}: unknown search option(s) {unknown}; expected a JSON object with "
                         f"keys among: {', '.join(sorted(names))}")
    ctx.default_map = {**(ctx.default_map or {}), **{k: v for k, v in options.items() if v is not None}}
    return value


@click.command("search")
@click.option("--config", type=InputFile(), is_eager=True, expose_value=False, callback=_load_config,
              help="JSON object of these options (e.g. hwnas tune's best.json); options given here win.")
@click.option("--latency-ms", type=BoundedFloat(0, 1e6, min_open=True),
              help="Budget: predicted per-image latency in ms (from the profile, at its batch).")
@click.option("--flops", type=BoundedFloat(0, 1e15, min_open=True),
              help="Budget: FLOPs (multiply-accumulates, table rule), e.g. 4e8.")
@click.option("--params", type=BoundedFloat(0, 1e12, min_open=True), help="Budget: parameters, e.g. 1e6.")
@click.option("--max-layers", type=BoundedInt(1, 10_000), help="Budget: sum of sub-layers L. Default with "
              "--latency-ms: ZenNAS's 10/13/16/20/25/30 for 0.1/0.2/0.3/0.5/0.8/1.2 ms.")
@click.option("--rho-max", type=BoundedFloat(0, 1e6, min_open=True),
              help="Budget: effectiveness rho (default 0.5 with --proxy incorporated).")
@click.option("--profile", type=NonEmpty("a shipped profile name or a profile folder"),
              help="Latency profile: a shipped name or a path (default: the shipped default profile).")
@click.option("--space", default="imagenet224", show_default=True,
              help="Search space (list them with: hwnas models spaces).")
@click.option("--population", type=BoundedInt(1, 1_000_000), default=512, show_default=True, help="Population size N.")
@click.option("--iterations", type=BoundedInt(1, 10**9), default=480_000, show_default=True, help="Iterations T.")
@click.option("--proxy", help="Zero-shot proxy (zen, incorporated, meco_opt, az_nas, ...; hwnas proxies list). "
              "Default: the space's: zen on the ZenNAS spaces, hybrid_nb201 on nb201 (MeCo_opt, synflow and AZ-NAS's "
              "components weighted as fitted on NB201: the lowest search regret, README).")
@click.option("--batch-size", type=BATCH, default=64, show_default=True, help="Proxy batch size.")
@click.option("--repeat", type=REPEAT, default=1, show_default=True, help="Proxy repeats per candidate.")
@click.option("--wz", type=BoundedFloat(-1e6, 1e6), help="Incorporated proxy: weight of the Zen-score.")
@click.option("--wd", type=BoundedFloat(-1e6, 1e6), help="Incorporated proxy: weight of the entropy term.")
@click.option("--transform", type=click.Choice(["log", "sqrt"]), help="Incorporated proxy: F of the entropy term.")
@click.option("--beta", type=BoundedFloat(-1e6, 1e6), help="Incorporated proxy: depth-variance penalty.")
@click.option("--proxy-option", "proxy_option", multiple=True, metavar="KEY=VALUE",
              help="Any other proxy option (repeatable).")
@click.option("--initial", help="Initial structure (text, @FILE, a zoo name or a search --out folder); default: "
              "the space's.")
@click.option("--early-batch", type=BATCH, help="Early rejection: score a cheap estimate at this batch first "
              "(off by default; see docs/search.md).")
@click.option("--early-margin", type=BoundedFloat(0, 1e12), default=1.0, show_default=True,
              help="Early rejection: error bound of the estimate.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--workers", type=BoundedInt(1, 1024), default=1, show_default=True,
              help="Processes scoring candidates (asynchronous steady state; reproducible for a given seed and K).")
@click.option("--ray", "ray_address", type=RayAddress(), metavar="ADDRESS",
              help="Score candidates as tasks on this running Ray cluster ('auto', or host:port), --workers at a "
              "time (needs the [ray] extra).")
@click.option("--latency-batch", type=BATCH, help="Refuse a profile measured at another batch.")
@click.option("--out", default="runs/search", show_default=True, type=OutputDir(),
              help="Output folder.")
@click.option("--resume", is_flag=True, help="Continue the search checkpointed in --out.")
@click.option("--checkpoint-every", type=BoundedFloat(0, 1e9, min_open=True), default=60.0, show_default=True,
              help="Seconds between checkpoints.")
@click.option("--measure", type=click.Choice(["yes", "auto"]), is_flag=False, flag_value="yes", default=None,
              help="Measure the best network end to end with the profile's backend; refused before the search "
              "unless this machine is the profile's device. '--measure auto': measure where it is, else say so.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def search_command(latency_ms, flops, params, max_layers, rho_max, profile, space, population, iterations, proxy,
                   batch_size, repeat, wz, wd, transform, beta, proxy_option, initial, early_batch, early_margin, seed, workers,
                   ray_address, latency_batch, out, resume, checkpoint_every, measure, no_progress, as_json):
    """Evolutionary zero-shot search (Zen-NAS Alg. 2) under latency/FLOPs/params/depth budgets.

    Every budget is checked from the structure alone (analytic counts and the
    profile's latency table) before a child is scored. Writes best.txt,
    population.parquet, history.parquet, config.json and summary.json into --out,
    and checkpoints so that --resume continues to the same result.

    \b
    Example:
      search --latency-ms 8 --space imagenet224 --iterations 2000 --population 64 --out runs/cpu8ms
      search --space cifar32 --params 1e6 --max-layers 18 --iterations 300 --out runs/c1m --json
      search --resume --out runs/cpu8ms --latency-ms 8 --iterations 2000 --population 64
      search --config runs/tune/best.json --seed 7 --out runs/tuned
    """
    from hwnas.search.budgets import Budgets
    from hwnas.search.evolution import SearchConfig, search
    from hwnas.search.results import measure_best

    config = SearchConfig(
        space=space, proxy=proxy,
        proxy_options=_proxy_options(proxy_option, wz=wz, wd=wd, transform=transform, beta=beta),
        batch_size=batch_size, repeat=repeat, population=population, iterations=iterations, seed=seed,
        workers=workers, budgets=Budgets(latency_ms=latency_ms, flops=flops, params=params,
                                         max_layers=max_layers, rho_max=rho_max),
        profile=profile, initial=_initial(initial, space), early_batch=early_batch, early_margin=early_margin,
        checkpoint_every_s=checkpoint_every)
    not_measured = None
    if measure:
        from hwnas.errors import ProfileError
        from hwnas.latency.profile import Profile
        from hwnas.models.spaces.base import get_space

        try:  # before the search: it is the profile's device or no measurement can follow
            Profile.for_space(get_space(space), profile).check(host=True)
        except ProfileError as err:
            if measure == "yes":
                raise
            not_measured = f"searched with the profile's predictions; not measured on this machine: {err}"
    with progress_bar("search", "it", enabled=not no_progress) as progress:
        summary = search(config, out, resume=resume, progress=progress, latency_batch=latency_batch,
                         ray_address=ray_address)
    if measure and not not_measured:
        summary = measure_best(out, profile)
    if as_json:
        echo_json({**summary, "not_measured": not_measured} if not_measured else summary)
        return
    click.echo(f"best: {summary['best_structure']}")
    rows = [{"field": k, "value": summary.get(k)} for k in
            ("score", "latency_ms", "flops", "params", "layers", "rho", "iterations",
             "acceptance_rate", "iterations_per_s", "elapsed_s", "profile_hash")]
    if "measured_ms" in summary:
        rows += [{"field": k, "value": summary[k]} for k in ("predicted_ms", "measured_ms", "prediction_error_pct")]
    echo_table(rows, ["field", "value"])
    click.echo(f"results in {out}")
    if not_measured:
        click.echo(not_measured)


def _csv(text: str, cast, option: str) -> tuple:
    try:
        return tuple(cast(v.strip()) for v in text.split(",") if v.strip())
    except ValueError:
        raise HwnasError(f"{option} {text!r}: expected values separated by commas") from None


@click.command("tune")
@click.option("--latency-ms", type=float, required=True, help="Latency budget of every search (predicted, profile).")
@click.option("--space", default="nb201", show_default=True, help="A space with every cell's trained accuracy.")
@click.option("--dataset", default="cifar10", show_default=True, help="cifar10, cifar100 or imagenet16.")
@click.option("--profile", help="Latency profile (default: the space's shipped default).")
@click.option("--trials", type=int, default=50, show_default=True, help="COMPLETE trials the study should hold.")
@click.option("--seeds", type=int, default=3, show_default=True, help="Searches per trial (seeds), mean regret.")
@click.option("--sampler", help="tpe, nsga2, cmaes or random (default: tpe; nsga2 with --objective regret,cost).")
@click.option("--objective", default="regret", show_default=True, help="regret, or regret,cost (NSGA-II).")
@click.option("--storage", help="Optuna storage URL (default sqlite:///OUT/tune.db); postgresql://... for many "
              "workers sharing one --study.")
@click.option("--study", default="hwnas-tune", show_default=True, help="Study name in the storage.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampler seed; search seeds 1000*seed+i.")
@click.option("--proxies", default="zen,naswot,synflow,meco_opt,az_nas,hybrid", show_default=True,
              help="Proxies a trial may choose (hybrid: zen+c*log(flops), c tuned).")
@click.option("--population", "population_range", default="4,64", show_default=True, help="LOW,HIGH.")
@click.option("--iterations", "iterations_range", default="20,200", show_default=True, help="LOW,HIGH.")
@click.option("--batch-sizes", default="4,8,16", show_default=True, help="Proxy batch sizes a trial may choose.")
@click.option("--fix", multiple=True, metavar="NAME=VALUE", help="Do not tune NAME (proxy, hybrid_c, population, "
              "iterations, batch_size): use VALUE (repeatable).")
@click.option("--out", default="runs/tune", show_default=True, type=click.Path(file_okay=False),
              help="best.json, trials.csv, summary.json, PNGs, every trial's searches.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def tune_command(latency_ms, space, dataset, profile, trials, seeds, sampler, objective, storage, study, seed, proxies,
                 population_range, iterations_range, batch_sizes, fix, out, as_json):
    """Tune the search's hyperparameters with Optuna against real regret under a latency budget.

    Each trial runs --seeds complete searches with the proposed proxy, population,
    iterations and batch size; its value is the mean regret: accuracy of the best
    NAS-Bench-201 cell the profile predicts within the budget minus the trained
    accuracy of the cell each search returns. Re-running continues the study.

    \b
    Example:
      hwnas tune --latency-ms 1 --profile ort-cpu1-b1-nb201 --trials 50 --out runs/tune1ms
      hwnas tune --latency-ms 1 --trials 30 --objective regret,cost --sampler nsga2 --out runs/tune-mo
      search --config runs/tune1ms/best.json --seed 7 --out runs/tuned
    """
    from hwnas.search.tune import TuneConfig, tune

    fixed = {}
    for item in fix:
        key, sep, value = item.partition("=")
        if not sep:
            raise HwnasError(f"--fix {item!r}: expected NAME=VALUE")
        try:
            fixed[key] = json.loads(value)
        except json.JSONDecodeError:
            fixed[key] = value
    pop, its = _csv(population_range, int, "--population"), _csv(iterations_range, int, "--iterations")
    if len(pop) != 2 or len(its) != 2:
        raise HwnasError("--population and --iterations take LOW,HIGH")
    config = TuneConfig(latency_ms=latency_ms, space=space, dataset=dataset, profile=profile, trials=trials,
                        seeds=seeds, sampler=sampler, objectives=_csv(objective, str, "--objective"), storage=storage,
                        study=study, seed=seed, proxies=_csv(proxies, str, "--proxies"), population=pop,
                        iterations=its, batch_sizes=_csv(batch_sizes, int, "--batch-sizes"), fixed=fixed)
    result = tune(config, out)
    if as_json:
        echo_json(result)
        return
    best = result["best"]
    click.echo(f"trials: {result['trials']}; best feasible cell under {latency_ms:g} ms: "
               f"{result['reference']['best_accuracy']:.2f}% ({dataset})")
    if best:
        click.echo(f"best trial {best['trial']}: mean regret {best['regret']:.3f} points; "
                   f"{json.dumps(best['search'])}")
    click.echo(f"results in {out} (best.json, trials.csv, summary.json, PNGs)")


commands = [search_command, tune_command]
