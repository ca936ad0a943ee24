"""``hwnas score`` and ``hwnas proxies``: zero-shot scores of one network, and the NAS-Bench-201 benchmark."""

from __future__ import annotations

import ast

import click

from hwnas.cli.options import BATCH, REPEAT, RESOLUTION, SEED, BoundedFloat, BoundedInt, Device, InputFile, OutputDir
from hwnas.cli.output import echo_json, echo_table, progress_bar
from hwnas.errors import HwnasError

_COMMON = [
    click.option("--resolution", type=RESOLUTION, default=None,
                 help="Input resolution (default: the space's, or the zoo model's)."),
    click.option("--batch-size", type=BATCH, default=None,
                 help="Mini-batch (default: 64 at 32x32 and below, else 16, the Zen-NAS settings)."),
    click.option("--repeat", type=REPEAT, default=1, show_default=True,
                 help="Mean of K independent evaluations (fresh network, fresh BN statistics each)."),
    click.option("--device", type=Device(), default="cpu", show_default=True, help="torch device, e.g. cpu or cuda."),
    click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16", "float64"]), default="float32",
                 show_default=True, help="Precision of the forward passes (synflow always uses float64)."),
    click.option("--bn-term", type=click.Choice(["running", "batch"]), default=None,
                 help="Zen BN term: running variance after both passes (official code, default) or the "
                      "mini-batch std (paper text)."),
    click.option("--se", is_flag=True, default=False, help="Build with SE modules (the official search never does)."),
    click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
                 help="A proxy-specific option, e.g. --set transform=sqrt --set wz=0.8 --set beta=10 "
                      "(repeatable)."),
]


NB201_CELLS = 15625


class SampleSize(BoundedInt):
    """A number of NAS-Bench-201 cells, 3 to all of them; ``all`` is every cell."""

    def __init__(self):
        super().__init__(3, NB201_CELLS)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "all":
            return NB201_CELLS
        return super().convert(value, param, ctx)


# Options every proxy takes, given with their own flags (never with --set).
_COMMON_NAMES = ("resolution", "batch_size", "repeat", "seed", "device", "dtype")


def _common(func):
    for option in reversed(_COMMON):
        func = option(func)
    return func


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _specific(bn_term: str | None, se: bool, settings: tuple[str, ...]) -> dict:
    out = {}
    if bn_term is not None:
        out["bn_term"] = bn_term
    if se:
        out["se"] = True
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HwnasError(f"--set expects KEY=VALUE, got {item!r}")
        if key.strip() in _COMMON_NAMES:
            raise HwnasError(f"--set {key.strip()}=...: use --{key.strip().replace('_', '-')} for it; --set takes "
                             "the proxy's own options (see: hwnas proxies list)")
        out[key.strip()] = _value(value.strip())
    return out


@click.command("score")
@click.argument("structure", required=False, metavar="[STRUCTURE|ZOO_NAME|FILE|RUN_DIR]")
@click.option("--proxy", "proxy", required=True,
              help="A registered proxy (zen, incorporated, synflow, naswot, grad_norm, snip, params, flops) "
                   "or an expression of them, e.g. 'zen+0.5*log(flops)'.")
@click.option("--file", "file", type=click.Path(dir_okay=False), default=None,
              help="Read the architecture from the first line of this file.")
@click.option("--nb201", default=None, metavar="ARCH", help="A NAS-Bench-201 cell string.")
@click.option("--space", default=None,
              help="Space: imagenet224, cifar32, nb201, nb201-cifar100, nb201-imagenet16 "
                   "(default: the zoo model's; nb201 for a cell; else imagenet224).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of weights and inputs.")
@_common
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def score(structure, proxy, file, nb201, space, seed, resolution, batch_size, repeat, device, dtype, bn_term,
          se, settings, as_json) -> None:
    """Zero-shot score of one architecture (larger is better).

    Prints the score and its parts (zen, e_score, rho, ... for incorporated).
    A score that would be NaN/inf, or an undefined transform, is an error
    (exit 2), never a number. Same seed, same score.

    \b
    Example:
      hwnas score --proxy zen zennet_cifar10_model_size1M_res32 --repeat 5 --json
      hwnas score --proxy incorporated --set transform=sqrt 'SuperConvK3BNRELU(3,32,2,1)SuperResK1K3K1(32,64,2,16,2)SuperConvK1BNRELU(64,512,1,1)'
      hwnas score --proxy 'synflow' --nb201 '|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|'
    """
    from hwnas.cli.resolve import resolve_arch, resolve_text
    from hwnas.models.structure import read_first_line
    from hwnas.search.proxies.scoring import score_arch

    given = [x for x in (structure, file, nb201) if x]
    if len(given) != 1:
        raise HwnasError("give exactly one of STRUCTURE (or a zoo model name), --file F or --nb201 ARCH")
    # --resolution is the proxy's option (the size of its inputs), not the space's.
    if nb201:
        found = resolve_text(nb201, space=space or "nb201")
    elif file:
        found = resolve_text(read_first_line(file), source="file", space=space)
    else:
        found = resolve_arch(structure, space=space)
    info = score_arch(proxy, found.space, found.arch, model=found.model.name if found.model else None, seed=seed,
                      resolution=resolution, batch_size=batch_size, repeat=repeat, device=device, dtype=dtype,
                      **_specific(bn_term, se, settings))
    if as_json:
        echo_json(info)
        return
    for key, value in info.items():
        if value is None:
            continue
        click.echo(f"{key:>12}  {value:.6g}" if isinstance(value, float) else f"{key:>12}  {value}")


@click.group("proxies")
def proxies() -> None:
    """Zero-shot proxies: list them, benchmark them on NAS-Bench-201, fit a hybrid.

    \b
    Example:
      hwnas proxies list
      hwnas proxies bench --dataset cifar10 --proxies zen,synflow,naswot,flops --sample 1000 --out runs/nb201-c10
    """


@proxies.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def list_cmd(as_json: bool) -> None:
    """Registered proxies and their specific options.

    \b
    Example:
      hwnas proxies list --json
    """
    from hwnas.search.proxies.base import proxy_class, proxy_names

    rows = []
    for name in proxy_names():
        cls = proxy_class(name)
        rows.append({"proxy": name, "options": ", ".join(f"{k}={v}" for k, v in cls.options.items()) or "-",
                     "needs_network": "no" if cls.deterministic else "yes"})
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["proxy", "needs_network", "options"])


@proxies.command("bench")
@click.option("--space", default="nb201", show_default=True, help="Only nb201 has trained accuracies.")
@click.option("--dataset", type=click.Choice(["cifar10", "cifar100", "imagenet16"]), required=True,
              help="Which NAS-Bench-201 accuracy is the ground truth (and the classifier size / resolution).")
@click.option("--proxies", "proxy_list", required=True,
              help="Comma-separated proxies or hybrid expressions, e.g. zen,synflow,naswot,'synflow*flops'. "
                   "Use ';' as separator when an expression contains a comma.")
@click.option("--networks", type=click.Choice(["cifar10", "cifar100", "imagenet16"]), default=None,
              help="Score the networks built for this data set (the same cells) against --dataset's accuracies "
                   "(default: --dataset's own networks), e.g. to reuse the CIFAR-10 scores.")
@click.option("--sample", type=SampleSize(), default="1000", show_default=True,
              help="Number of architectures, or 'all' (15625): the first N of a seeded permutation, so samples "
                   "are nested.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the sample (and of mBR's subsets).")
@click.option("--proxy-seed", type=SEED, default=0, show_default=True, help="Seed of the proxies.")
@click.option("--out", type=OutputDir(), default=None, help="Write scores.csv and summary.csv here.")
@click.option("--cache", type=OutputDir(), default=None,
              help="Score cache folder (default: $HWNAS_CACHE_DIR/proxy-scores or ~/.cache/hwnas/proxy-scores).")
@click.option("--no-cache", is_flag=True, help="Do not read or write the score cache.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_common
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def bench(space, dataset, networks, proxy_list, sample, seed, proxy_seed, out, cache, no_cache, no_progress, resolution,
          batch_size, repeat, device, dtype, bn_term, se, settings, as_json) -> None:
    """Rank correlation of proxies with NAS-Bench-201 trained accuracies.

    Reports Spearman, Kendall tau, top-10% precision, NAS-Bench-Zero's mBR
    and the median CPU seconds per evaluation per proxy. The proxies see
    Gaussian inputs, not the data set's images. Scores are cached, so a
    re-run or a larger sample only scores what is new. A set-relative proxy
    (az_nas) ranks each cell within the benchmarked sample, as its authors do.

    \b
    Example:
      hwnas proxies bench --dataset cifar10 --proxies zen,synflow,naswot,grad_norm,snip,flops,params --sample 1000 --out runs/nb201-c10
      hwnas proxies bench --dataset imagenet16 --proxies 'naswot+0.1*log(synflow)' --sample 1000
      hwnas proxies bench --dataset cifar100 --networks cifar10 --proxies meco_opt,az_nas --sample 3000
      hwnas proxies bench --dataset cifar10 --proxies flops,params --sample all
    """
    from hwnas.search.proxy_bench import INPUT_NOTE, default_cache_dir, run_bench

    if space != "nb201":
        raise HwnasError(f"only the nb201 space has trained accuracies to benchmark against, not {space!r}")
    sep = ";" if ";" in proxy_list else ","
    names = [p.strip() for p in proxy_list.split(sep) if p.strip()]
    options = dict(resolution=resolution, batch_size=batch_size, repeat=repeat, device=device, dtype=dtype)
    specific = _specific(bn_term, se, settings)
    if specific:
        raise HwnasError("the benchmark runs every proxy with its defaults; proxy-specific options "
                         f"({', '.join(specific)}) are not accepted here")
    with progress_bar(f"scoring {dataset}", "score", enabled=not no_progress) as progress:
        result = run_bench(dataset, names, sample, seed, proxy_seed=proxy_seed, out=out,
                           cache_dir=None if no_cache else (cache or default_cache_dir()), progress=progress,
                           networks=networks, **options)
    if as_json:
        echo_json({"dataset": dataset, "networks": result.networks, "sample": sample, "seed": seed,
                   "note": INPUT_NOTE, "summary": result.summary.to_dict(orient="records")})
        return
    built = "" if result.networks == dataset else f" (scores of the {result.networks} networks)"
    click.echo(f"NAS-Bench-201 {dataset}{built}, {sample} architectures (seed {seed}); {INPUT_NOTE}")
    echo_table(result.summary.to_dict(orient="records"), list(result.summary.columns))
    if out:
        click.echo(f"wrote {out}/scores.csv and {out}/summary.csv")


@proxies.command("fit")
@click.argument("scores_csv", type=InputFile())
@click.option("--terms", required=True,
              help="';'-separated terms over the score columns, e.g. 'naswot;log(synflow);log(flops)'.")
@click.option("--holdout", type=BoundedFloat(0.0, 1.0, max_open=True), default=0.0, show_default=True,
              help="Leave the last fraction of the rows out of the fit and report on them (the rows are a seeded "
                   "random sample in sample order, so this is a random split).")
@click.option("--report", "reports", type=InputFile(), multiple=True,
              help="Another scores.csv (e.g. CIFAR-100's accuracies of the same cells) to report the fitted "
                   "expression on, on all its rows and on the held-out cells (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def fit(scores_csv, terms, holdout, reports, as_json) -> None:
    """Fit the weights of a hybrid on a benchmark's scores.csv (maximising Spearman).

    With --holdout the expression is reported on cells it was not fitted
    on; with --report on other data sets' accuracies.

    \b
    Example:
      hwnas proxies fit runs/nb201-c10/scores.csv --terms 'naswot;log(synflow);log(flops)'
      hwnas proxies fit runs/c10/scores.csv --terms 'log(meco_opt);log(synflow)' --holdout 0.5 \\
          --report runs/c100/scores.csv --report runs/in16/scores.csv
    """
    from hwnas.search.proxy_fit import fit_hybrid, read_scores, report

    result = fit_hybrid(read_scores(scores_csv), [t.strip() for t in terms.split(";") if t.strip()], holdout=holdout)
    held = result.pop("held_out_archs", None)
    rows = [{"scores": str(scores_csv), "cells": "fitted", **_brief(result, "spearman")}]
    if "held_out" in result:
        rows.append({"scores": str(scores_csv), "cells": "held out", **_brief(result["held_out"])})
    for path in reports:
        other = read_scores(path)
        rows.append({"scores": str(path), "cells": "all", **_brief(report(other, result["expression"]))})
        if held:
            rows.append({"scores": str(path), "cells": "held out",
                         **_brief(report(other, result["expression"], archs=held))})
    if as_json:
        echo_json({**result, "reports": rows})
        return
    click.echo(f"expression  {result['expression']}")
    echo_table(rows, ["scores", "cells", "n", "spearman", "kendall", "top10_precision", "mbr"])


def _brief(m: dict, only: str | None = None) -> dict:
    if only:
        return {"n": m["n"], only: m[only]}
    return {k: m[k] for k in ("n", "spearman", "kendall", "top10_precision", "mbr")}


commands = [score, proxies]
