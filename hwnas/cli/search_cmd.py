"""``hwnas search`` (also the ``search`` console script): the latency-constrained evolutionary search."""

from __future__ import annotations

import json

import click

from hwnas.cli.output import echo_json, echo_table
from hwnas.errors import HwnasError


def _number(text: str) -> float:
    return float(text)


def _proxy_options(items: tuple[str, ...], **named) -> dict:
    options = {k: v for k, v in named.items() if v is not None}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HwnasError(f"--proxy-option {item!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _initial(value: str | None) -> str | None:
    if value is None:
        return None
    if value.startswith("@"):
        try:
            return open(value[1:]).read().strip()
        except OSError as err:
            raise HwnasError(f"--initial {value}: cannot read the file ({err.strerror})") from None
    return value


@click.command("search")
@click.option("--latency-ms", type=float, help="Budget: predicted per-image latency in ms (from the profile, at its batch).")
@click.option("--flops", type=_number, help="Budget: FLOPs (multiply-accumulates, table rule), e.g. 4e8.")
@click.option("--params", type=_number, help="Budget: parameters, e.g. 1e6.")
@click.option("--max-layers", type=int, help="Budget: sum of sub-layers L. Default with --latency-ms: ZenNAS's "
              "10/13/16/20/25/30 for 0.1/0.2/0.3/0.5/0.8/1.2 ms.")
@click.option("--rho-max", type=float, help="Budget: effectiveness rho (default 0.5 with --proxy incorporated).")
@click.option("--profile", help="Latency profile: a shipped name or a path (default: the shipped default profile).")
@click.option("--space", default="imagenet224", show_default=True, help="Search space (hwnas models spaces).")
@click.option("--population", type=int, default=512, show_default=True, help="Population size N.")
@click.option("--iterations", type=int, default=480_000, show_default=True, help="Iterations T.")
@click.option("--proxy", default="zen", show_default=True, help="Zero-shot proxy (zen, incorporated, ...).")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Proxy batch size.")
@click.option("--repeat", type=int, default=1, show_default=True, help="Proxy repeats per candidate.")
@click.option("--wz", type=float, help="Incorporated proxy: weight of the Zen-score.")
@click.option("--wd", type=float, help="Incorporated proxy: weight of the entropy term.")
@click.option("--transform", type=click.Choice(["log", "sqrt"]), help="Incorporated proxy: F of the entropy term.")
@click.option("--beta", type=float, help="Incorporated proxy: depth-variance penalty.")
@click.option("--proxy-option", "proxy_option", multiple=True, metavar="KEY=VALUE",
              help="Any other proxy option (repeatable).")
@click.option("--initial", help="Initial structure (text, or @FILE); default: the space's.")
@click.option("--early-batch", type=int, help="Early rejection: score a cheap estimate at this batch first "
              "(off by default; see docs/search.md).")
@click.option("--early-margin", type=float, default=1.0, show_default=True,
              help="Early rejection: error bound of the estimate.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True,
              help="Processes scoring candidates (asynchronous steady state; reproducible for a given seed and K).")
@click.option("--ray", "ray_address", metavar="ADDRESS",
              help="Score candidates as tasks on this running Ray cluster ('auto', or host:port), --workers at a "
              "time (needs the [ray] extra).")
@click.option("--latency-batch", type=int, help="Refuse a profile measured at another batch.")
@click.option("--out", default="runs/search", show_default=True, type=click.Path(file_okay=False),
              help="Output folder.")
@click.option("--resume", is_flag=True, help="Continue the search checkpointed in --out.")
@click.option("--checkpoint-every", type=float, default=60.0, show_default=True, help="Seconds between checkpoints.")
@click.option("--measure", is_flag=True, help="Measure the best network end to end with the profile's backend.")
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
    """
    from hwnas.search.budgets import Budgets
    from hwnas.search.evolution import SearchConfig, measure_best, search

    config = SearchConfig(
        space=space, proxy=proxy,
        proxy_options=_proxy_options(proxy_option, wz=wz, wd=wd, transform=transform, beta=beta),
        batch_size=batch_size, repeat=repeat, population=population, iterations=iterations, seed=seed,
        workers=workers, budgets=Budgets(latency_ms=latency_ms, flops=flops, params=params,
                                         max_layers=max_layers, rho_max=rho_max),
        profile=profile, initial=_initial(initial), early_batch=early_batch, early_margin=early_margin,
        checkpoint_every_s=checkpoint_every)
    summary = search(config, out, resume=resume, progress=not no_progress, latency_batch=latency_batch,
                     ray_address=ray_address)
    if measure:
        summary = measure_best(out, profile)
    if as_json:
        echo_json(summary)
        return
    click.echo(f"best: {summary['best_structure']}")
    rows = [{"field": k, "value": summary.get(k)} for k in
            ("score", "latency_ms", "flops", "params", "layers", "rho", "iterations",
             "acceptance_rate", "iterations_per_s", "elapsed_s", "profile_hash")]
    if "measured_ms" in summary:
        rows += [{"field": k, "value": summary[k]} for k in ("predicted_ms", "measured_ms", "prediction_error_pct")]
    echo_table(rows, ["field", "value"])
    click.echo(f"results in {out}")


commands = [search_command]
