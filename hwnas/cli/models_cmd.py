"""``hwnas models``: the ZenNet zoo table and the counts of one architecture."""

from __future__ import annotations

import click

from hwnas.cli.options import BoundedInt
from hwnas.cli.output import echo_json, echo_table


@click.group("models")
def models_group() -> None:
    """Model zoo, architecture strings and their exact counts.

    \b
    Example:
      hwnas models list
      hwnas models info zennet_imagenet1k_latency08ms_res224 --json
      hwnas models spaces
    """


@models_group.command("spaces")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def spaces_cmd(as_json: bool) -> None:
    """The registered search spaces: input resolution, classes, and whether every network can be listed.

    \b
    Example:
      hwnas models spaces
    """
    from hwnas.models.spaces.base import FiniteSpace, get_space, space_names

    rows = []
    for name in space_names():
        space = get_space(name)
        rows.append({"space": name, "resolution": space.resolution, "num_classes": space.num_classes,
                     "finite": isinstance(space, FiniteSpace)})
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["space", "resolution", "num_classes", "finite"])


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def list_cmd(as_json: bool) -> None:
    """The ZenNet zoo: counted params/FLOPs beside the published table.

    Params are every trainable parameter of the built network; FLOPs are
    multiply-accumulates under the rule of the published table (convs, conv
    biases, BN, classifier, SE). SE is counted as the published row was
    (column se_counted). The note column marks the three rows whose
    published figure is itself off (the reason is table_note in --json).

    \b
    Example:
      hwnas models list
      hwnas models list --json
    """
    from hwnas.models.describe import zoo_table

    rows = zoo_table()
    if as_json:
        echo_json(rows)
        return
    table = []
    for r in rows:
        note = r["table_note"]
        table.append({
            "name": r["name"].removeprefix("zennet_"),
            "res": r["resolution"],
            "se_counted": "yes" if r["counted_with_se"] else "no",
            "params_M": f"{r['params_M']:.4f}",
            "pub_params_M": f"{r['published_params_M']:g}",
            "d_params_%": f"{r['params_delta_pct']:+.2f}",
            "flops_M": f"{r['flops_M']:.2f}",
            "pub_flops_M": f"{r['published_flops_M']:g}",
            "d_flops_%": f"{r['flops_delta_pct']:+.2f}",
            "layers": r["layers"],
            "top1": f"{r['top1']:.1f}",
            "v100_ms": "" if r["latency_ms_v100_fp16_b64"] is None else f"{r['latency_ms_v100_fp16_b64']:g}",
            "note": "" if not note else ("published params off" if note.startswith("params") else
                                         "published FLOPs off"),
        })
    echo_table(table, list(table[0]))


@models_group.command("info")
@click.argument("target", metavar="NAME|STRUCTURE|FILE|RUN_DIR")
@click.option("--space", default=None,
              help="Space to read the architecture in: imagenet224, cifar32, nb201, ... "
                   "(default: the zoo model's or the run's, else nb201 for '|...|' cells, else imagenet224).")
@click.option("--resolution", type=BoundedInt(1, 65536), default=None,
              help="Input resolution (default: the zoo model's, the run's or the space's).")
@click.option("--num-classes", type=BoundedInt(1, 1_000_000), default=None,
              help="Classifier outputs (default: the zoo model's, the run's or the space's).")
@click.option("--se/--no-se", "use_se", default=None,
              help="Count with SE modules (default: as the zoo row was counted; else no).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def info_cmd(target: str, space: str | None, resolution: int | None, num_classes: int | None,
             use_se: bool | None, as_json: bool) -> None:
    """Params, FLOPs, conv+linear MACs, layers, stages and rho of one architecture.

    The argument is a zoo model name (or an unambiguous part of one), a
    structure string, a NAS-Bench-201 cell string, a file whose first
    line is one, or a search --out folder (its best network). A malformed or unchained string is an error naming the
    character position (exit status 2).

    \b
    Example:
      hwnas models info latency08ms
      hwnas models info 'SuperConvK3BNRELU(3,32,2,1)SuperResK1K3K1(32,64,2,16,2)SuperConvK1BNRELU(64,512,1,1)' --json
      hwnas models info '|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|'
    """
    from hwnas.cli.resolve import resolve_arch
    from hwnas.models.describe import describe

    found = resolve_arch(target, space=space, resolution=resolution, num_classes=num_classes)
    if use_se is None:  # a zoo model is counted as its published row was
        use_se = found.model is not None and found.model.counted_with_se
    info = describe(found.space, found.arch, source=found.source, use_se=use_se, model=found.model)
    if as_json:
        echo_json(info)
        return
    rows = [
        ("name", info["name"] or "-"),
        ("space", info["space"]),
        ("structure", info["structure"]),
        ("resolution", info["resolution"]),
        ("num_classes", info["num_classes"]),
        ("use_se", info["use_se"]),
        ("params", f"{info['params']:,} ({info['params'] / 1e6:.4f} M)"),
        ("flops", f"{info['flops']:,} ({info['flops'] / 1e6:.2f} M MACs, table rule)"),
        ("conv_linear_macs", f"{info['conv_linear_macs']:,}"),
        ("layers", info["layers"]),
        ("output_resolution", info["output_resolution"]),
        ("rho", "-" if info["rho"] is None else f"{info['rho']:.4g}"),
    ]
    if "published" in info:
        p = info["published"]
        rows.append(("published", f"{p['params_M']:g} M params, {p['flops_M']:g} M FLOPs, top-1 {p['top1']:g}%"
                     + (f" ({p['table_note']})" if p["table_note"] else "")))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")
    click.echo("")
    stage_rows = [{k: "-" if v is None else v for k, v in row.items()} for row in info["stages"]]
    echo_table(stage_rows, list(stage_rows[0]))


commands = [models_group]
