"""``hwnas sweep`` (one search per proxy, latency budget and seed) and ``hwnas curves`` (accuracy–latency curves)."""

from __future__ import annotations

import click

from hwnas.cli.options import BATCH, REPEAT, BoundedFloat, BoundedInt, NonEmpty, OutputDir, OutputFile
from hwnas.cli.output import echo_json, echo_table, progress_bar
from hwnas.cli.search_cmd import _initial, _proxy_options
from hwnas.errors import HwnasError, one_line


def _numbers(text: str, option: str, kind=float) -> tuple:
    try:
        return tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise HwnasError(f"{option} {text!r}: expected {'numbers' if kind is float else 'integers'} separated by "
                         "commas") from None


@click.command("sweep")
@click.option("--latency-ms", "latency_ms", required=True, metavar="B1,B2,...",
              help="Latency budgets in ms (predicted per image by the profile), e.g. 0.25,0.35,0.45,0.6,0.9.")
@click.option("--seeds", default="0", show_default=True, metavar="S1,S2,...", help="Search seeds.")
@click.option("--proxy", "proxies", metavar="P1,P2,...",
              help="Proxies (names or expressions), separated by commas outside parentheses. Default: the space's, "
                   "as in search: zen on the ZenNAS spaces, hybrid_nb201 on nb201.")
@click.option("--profile", type=NonEmpty("a shipped profile name or a profile folder"),
              help="Latency profile: a shipped name or a path (default: the space's shipped default).")
@click.option("--space", default="imagenet224", show_default=True, help="Search space.")
@click.option("--population", type=BoundedInt(1, 1_000_000), default=64, show_default=True, help="Population size N of every search.")
@click.option("--iterations", type=BoundedInt(1, 10**9), default=2000, show_default=True, help="Iterations T of every search.")
@click.option("--batch-size", type=BATCH, default=64, show_default=True, help="Proxy batch size.")
@click.option("--repeat", type=REPEAT, default=1, show_default=True, help="Proxy repeats per candidate.")
@click.option("--proxy-option", "proxy_option", multiple=True, metavar="KEY=VALUE", help="Proxy option (repeatable).")
@click.option("--flops", type=BoundedFloat(0, 1e15, min_open=True), help="Also a FLOPs budget for every search.")
@click.option("--params", type=BoundedFloat(0, 1e12, min_open=True), help="Also a params budget for every search.")
@click.option("--max-layers", type=BoundedInt(1, 10_000), help="Layer cap (default with a structure space: ZenNAS's per budget).")
@click.option("--rho-max", type=BoundedFloat(0, 1e6, min_open=True), help="Effectiveness bound.")
@click.option("--initial", help="Initial structure (text, @FILE, zoo name or run folder).")
@click.option("--workers", type=BoundedInt(1, 1024), default=1, show_default=True, help="Processes scoring candidates per search.")
@click.option("--checkpoint-every", type=BoundedFloat(0, 1e9, min_open=True), default=60.0, show_default=True,
              help="Seconds between a search's checkpoints.")
@click.option("--measure", type=click.Choice(["auto"]), is_flag=False, flag_value="auto", default=None,
              help="Measure each best network end to end where this machine is the profile's device (else say so).")
@click.option("--out", required=True, type=OutputDir(),
              help="Sweep folder (new, or an earlier sweep's to resume or extend).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def sweep_command(latency_ms, seeds, proxies, profile, space, population, iterations, batch_size, repeat,
                  proxy_option, flops, params, max_layers, rho_max, initial, workers, checkpoint_every, measure, out,
                  no_progress, as_json):
    """Run one search per (proxy, latency budget, seed) into --out and write sweep.csv.

    Resumable: running it again skips finished searches and resumes a killed
    one from its checkpoint; budgets, seeds or proxies may be added. Every
    proxy and the smallest budget are checked before any search starts.

    \b
    Example:
      hwnas sweep --space nb201 --profile ort-cpu1-b1-nb201 --latency-ms 0.25,0.35,0.45,0.6,0.9 \\
          --seeds 0,1,2 --proxy zen,naswot+0.62*log(synflow) --iterations 100 --population 16 --out runs/sweep
      hwnas curves runs/sweep --out curves.png
    """
    from hwnas.search.budgets import Budgets
    from hwnas.search.evolution import SearchConfig
    from hwnas.search.sweep import SweepSpec, proxies_for, sweep

    base = SearchConfig(space=space, proxy_options=_proxy_options(proxy_option), batch_size=batch_size,
                        repeat=repeat, population=population, iterations=iterations, workers=workers,
                        budgets=Budgets(flops=flops, params=params, max_layers=max_layers, rho_max=rho_max),
                        profile=profile, initial=_initial(initial, space), checkpoint_every_s=checkpoint_every)
    spec = SweepSpec(tuple(proxies_for(proxies, space)), _numbers(latency_ms, "--latency-ms"),
                     _numbers(seeds, "--seeds", int), base)
    measurer, not_measured = None, None
    if measure:
        from hwnas.errors import ProfileError
        from hwnas.latency.profile import Profile
        from hwnas.models.spaces.base import get_space
        from hwnas.search.results import measure_best

        try:
            Profile.for_space(get_space(space), profile).check(host=True)
            measurer = measure_best
        except ProfileError as err:
            not_measured = f"not measured on this machine: {one_line(err)}"
    with progress_bar("sweep", "it", enabled=not no_progress) as progress:
        result = sweep(spec, out, progress=progress, measure=measurer)
    if as_json:
        echo_json({**result, "not_measured": not_measured})
        return
    columns = ["proxy", "budget_ms", "seed", "predicted_latency_ms", "measured_latency_ms", "score",
               "accuracy_cifar10", "best_structure"]
    echo_table(result["rows"], [c for c in columns if any(c in r for r in result["rows"])])
    click.echo(f"{result['searches']} searches ({result['ran']} run, {result['resumed']} resumed, "
               f"{result['skipped']} already finished); {result['csv']}")
    if not_measured:
        click.echo(not_measured)


@click.command("curves")
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False))
@click.option("--profile", type=NonEmpty("a shipped profile name or a profile folder"),
              help="Latency profile (default: the one the searches used; without FOLDERS, the space's).")
@click.option("--out", default="curves.png", show_default=True, type=OutputFile(),
              help="PNG to write (the plotted points go to the .csv beside it).")
@click.option("--csv", "csv_path", type=OutputFile(),
              help="Also write this CSV: the regret table (nb201; default <out>-regret.csv) or the points.")
@click.option("--dataset", type=click.Choice(["cifar10", "cifar100", "imagenet16"]), default="cifar10",
              show_default=True, help="NAS-Bench-201 accuracy column.")
@click.option("--max-gflops", type=BoundedFloat(0, 1e6, min_open=True), help="Leave out torchvision models above this many GFLOPs (meta _ops).")
@click.option("--no-torchvision", is_flag=True, help="Do not measure torchvision's models.")
@click.option("--cache-dir", type=OutputDir(),
              help="Where measured torchvision latencies are cached (default ~/.cache/hwnas/reference-latency).")
@click.option("--trained", multiple=True, type=click.Path(file_okay=False),
              help="hwnas train --out folders: their top-1 replaces the proxy score of the network they trained.")
@click.option("--space", default="imagenet224", show_default=True,
              help="Without FOLDERS: the space whose known accuracies to draw.")
@click.option("--x", "x_axis", type=click.Choice(["latency", "flops", "params"]), default="latency",
              show_default=True, help="Without FOLDERS: the x axis.")
@click.option("--runs", multiple=True, type=click.Path(file_okay=False),
              help="Without FOLDERS: search --out folders to mark.")
@click.option("--no-progress", is_flag=True, help="No progress bar while torchvision models are measured.")
@click.option("--json", "as_json", is_flag=True, help="Print what was drawn (and the regret table) as JSON.")
def curves_command(folders, profile, out, csv_path, dataset, max_gflops, no_torchvision, cache_dir, trained, space,
                   x_axis, runs, no_progress, as_json):
    """Accuracy–latency curves of sweeps (or searches) against the best known networks, as a PNG and CSV.

    FOLDERS are hwnas sweep (or search) --out folders of one space. On nb201 the
    found cells are drawn against the true Pareto front of all 15,625 cells under
    the profile, and the regret table (accuracy points below the best cell that
    meets each budget, mean and spread over seeds, per proxy) is printed and
    written. On imagenet224 the ZenNet zoo is drawn at predicted latency and
    torchvision's models at their published top-1, measured here only when this
    machine is the profile's device (cached). Without FOLDERS: the known
    accuracies of --space with their Pareto front.

    \b
    Example:
      hwnas curves runs/nb201-sweep --out docs/img/nb201-sweep.png
      hwnas curves runs/in224-sweep --profile local-profiles/ort-cpu1-b1-imagenet224 --max-gflops 8
      hwnas curves --space nb201 --x flops --dataset cifar100 --out nb201.png
    """
    if not folders:
        from hwnas.search.curves import curves

        result = curves(space, out, profile=profile, dataset=dataset, x=x_axis, runs=list(runs))
        if as_json:
            echo_json(result)
            return
        click.echo(f"wrote {result['png']} ({result['points']} points, {result['pareto_points']} on the Pareto "
                   f"front) and {result['csv']}")
        return
    from hwnas.search.curves import sweep_curves

    with progress_bar("measuring torchvision", "net", enabled=not no_progress) as progress:
        result = sweep_curves(list(folders), out, csv=csv_path, profile=profile, dataset=dataset,
                              torchvision=not no_torchvision, max_gflops=max_gflops, cache_dir=cache_dir,
                              trained=list(trained), on_progress=progress)
    if as_json:
        echo_json(result)
        return
    if "regret" in result:
        echo_table(result["regret"], ["proxy", "budget_ms", "best_possible", "found_mean", "regret_mean",
                                      "regret_std", "regret_min", "regret_max", "seeds"])
    for note in result["notes"]:
        click.echo(note)
    written = [result["png"], result["points_csv"]] + [result[k] for k in ("regret_csv", "csv") if k in result]
    click.echo(f"wrote {', '.join(written)} (latency on {result['device']})")


commands = [sweep_command, curves_command]
