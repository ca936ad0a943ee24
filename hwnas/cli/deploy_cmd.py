"""``hwnas deploy``: export a network to ONNX or TensorRT and check the artifact's latency."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hwnas.cli.options import (BATCH, RESOLUTION, BoundedFloat, BoundedInt, InputDir, InputFile, NonEmpty,
                                OutputFile)
from hwnas.cli.output import echo_json, echo_table


def _resolve(source: str, space: str | None, num_classes: int | None, resolution: int | None,
             use_se: bool | None) -> tuple:
    """``(space, architecture, use_se, source info)`` of an architecture argument (the shared resolver: a
    structure string, a file, a zoo name or a search run folder); SE from the zoo model or the run unless given."""
    from hwnas.cli.resolve import resolve_arch

    found = resolve_arch(source, space=space, resolution=resolution, num_classes=num_classes)
    info: dict = {"kind": found.source}
    if found.run is not None:
        info.update(run_dir=str(found.run.folder.resolve()), profile=found.run.profile)
        default_se = found.run.config.get("use_se")
    elif found.model is not None:
        info["name"] = found.model.name
        default_se = found.model.use_se
    else:
        if found.source == "file":
            info["path"] = str(Path(source).resolve())
        default_se = False
    return found.space, found.arch, bool(use_se if use_se is not None else default_se), info


class _DeployGroup(click.Group):
    """``hwnas deploy STRUCTURE ...`` means ``hwnas deploy export STRUCTURE ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["export", *args]
        return super().parse_args(ctx, args)


@click.group("deploy", cls=_DeployGroup)
def deploy_group() -> None:
    """Export a network to ONNX / TensorRT, verify it, and check its latency against a profile.

    `hwnas deploy STRUCTURE|RUN_DIR ...` is short for `hwnas deploy export ...`.

    \b
    Example:
      hwnas deploy runs/demo-real --format onnx --batch 1 --out runs/deploy-cpu
      hwnas deploy check runs/deploy-cpu --profile ort-cpu1-b1-imagenet224
    """


@deploy_group.command("export")
@click.argument("source", metavar="STRUCTURE|RUN_DIR")
@click.option("--format", "fmt", type=click.Choice(["onnx", "tensorrt"]), default="onnx", show_default=True,
              help="Artifact: an ONNX graph, or a TensorRT engine (plus the ONNX graph it was built from).")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="fp16 writes an FP16 ONNX graph (FP16 input and output) and an FP16 engine.")
@click.option("--batch", type=BATCH, default=64, show_default=True,
              help="Batch size of the artifact (the largest batch with --dynamic-batch).")
@click.option("--dynamic-batch", is_flag=True,
              help="Dynamic batch axis; a TensorRT engine gets an optimization profile 1..BATCH (opt BATCH).")
@click.option("--weights", type=InputFile(), default=None,
              help="Checkpoint: a state_dict, or a dict with 'state_dict' or 'model' (default: untrained weights).")
@click.option("--num-classes", type=BoundedInt(1, 1_000_000), default=None,
              help="Classifier outputs (default: the run's, the zoo model's or the space's).")
@click.option("--resolution", type=RESOLUTION, default=None,
              help="Input resolution (default: the run's, the zoo model's or the space's).")
@click.option("--space", default=None, help="Search space of the structure (default: the run's, else imagenet224).")
@click.option("--se/--no-se", "use_se", default=None, help="Build with SE modules (default: the zoo model's; else no).")
@click.option("--simplify/--no-simplify", default=False, show_default=True,
              help="Simplify the graph with onnxslim (off: the graph stays the one the latency profiles were "
                   "calibrated on, the profiling exporter's).")
@click.option("--tolerance", type=BoundedFloat(0, 1e6, min_open=True), default=None,
              help="Largest accepted max|runtime - torch| / max|torch| (default: 1e-3 fp32, 1e-2 fp16).")
@click.option("--timing-cache", type=OutputFile(), default=None,
              help="TensorRT timing cache file reused across builds "
                   "(default: ~/.cache/hwnas/tensorrt/<gpu>-trt<version>.timing-cache).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (created atomically).")
@click.option("--json", "as_json", is_flag=True, help="Print deploy.json.")
def export_cmd(source, fmt, precision, batch, dynamic_batch, weights, num_classes, resolution, space, use_se,
               simplify, tolerance, timing_cache, out, as_json) -> None:
    """Export a network to ONNX or TensorRT, verify it against PyTorch, write OUT.

    STRUCTURE is a structure string, a file holding one, or a zoo model
    name; RUN_DIR is a search output folder (best.txt and config.json give
    the structure, the space and the profile).

    OUT gets model.onnx (and model.plan for tensorrt) and deploy.json
    (shapes, precision, versions, sha256 of every artifact, verification
    errors). A numerical mismatch, bad input, or a missing runtime is a
    one-line error with exit status 2, and OUT is left untouched.

    \b
    Example:
      hwnas deploy zennet_cifar10_model_size05M_res32 --format onnx --batch 1 --dynamic-batch --out runs/deploy-z05
      hwnas deploy runs/gpu-search --format tensorrt --precision fp16 --batch 64 --out runs/deploy-trt
    """
    from hwnas.deploy import export

    space, arch, use_se, info = _resolve(source, space, num_classes, resolution, use_se)
    manifest = export(space, arch, out, use_se=use_se, fmt=fmt, precision=precision, batch=batch,
                      dynamic_batch=dynamic_batch, weights=weights, simplify=simplify, tolerance=tolerance,
                      timing_cache=timing_cache, source=info,
                      log=lambda message: click.echo(f"deploy: {message}", err=True))
    if as_json:
        echo_json(manifest)
        return
    rows = []
    for name, v in manifest["verification"].items():
        rows.append({"artifact": name, "runtime": v["runtime"], "batches": ",".join(map(str, v["batch_sizes"])),
                     "max_abs_error": v["max_abs_error"], "max_rel_error": v["max_rel_error"],
                     "tolerance": v["tolerance"]})
    click.echo(f"wrote {out}: {', '.join(manifest['artifacts'])} ({manifest['format']}, {manifest['precision']}, "
               f"batch {manifest['batch']}{' dynamic' if manifest['dynamic_batch'] else ''}, "
               f"opset {manifest['opset']})")
    echo_table(rows, list(rows[0]))


@deploy_group.command("check")
@click.argument("directory", metavar="DIR", type=InputDir())
@click.option("--profile", "profile", type=NonEmpty("a profile name or folder"), default=None,
              help="Latency profile (shipped name or folder) whose prediction and settings (backend, precision, "
                   "batch, threads) apply (default: the profile of the search run DIR was deployed from).")
@click.option("--tolerance", type=BoundedFloat(0, 1e6, min_open=True), default=0.10, show_default=True,
              help="Largest accepted |measured / predicted - 1|; exit status 1 above it.")
@click.option("--repeats", type=BoundedInt(1, 100_000), default=None, help="Timed samples (default: the backend's).")
@click.option("--json", "as_json", is_flag=True, help="Print predicted_ms, measured_ms, rel_error, ... as JSON.")
def check_cmd(directory, profile, tolerance, repeats, as_json) -> None:
    """Measure the artifact in DIR and compare with the profile's prediction.

    The artifact is timed with its own runtime (ONNX Runtime session or
    TensorRT engine) under the profile's settings (threads, batch).

    The artifact's hashes are re-checked first; its runtime, precision,
    batch, space, resolution, classes and the device must match the
    profile's, else the check refuses (exit 2) naming the differences.
    Latencies are per image (batch time / batch); rel_error = measured /
    predicted - 1. Exit status 0 when |rel_error| <= tolerance, 1 above it,
    2 on bad input.

    \b
    Example:
      hwnas deploy check runs/deploy-cpu
      hwnas deploy check runs/deploy-cpu --profile ort-cpu1-b1-imagenet224 --tolerance 0.15 --json
    """
    from hwnas.deploy import check, read_manifest
    from hwnas.errors import DeployError
    from hwnas.latency.profile import Profile

    if profile is None:
        profile = read_manifest(directory, verify_hashes=False).get("source", {}).get("profile")
        if not profile:
            raise DeployError(f"{directory} was not deployed from a search run with a profile; pass --profile")
    result = check(directory, Profile.load(profile), tolerance=tolerance, repeats=repeats)
    if as_json:
        echo_json(result)
    else:
        m = result["measured_batch_ms"]
        echo_table([{"predicted_ms": result["predicted_ms"], "measured_ms": result["measured_ms"],
                     "rel_error": f"{result['rel_error']:+.1%}", "tolerance": f"{tolerance:.0%}",
                     "batch": result["batch"], "batch_p10_p90_ms": f"{m['p10_ms']:.4g}..{m['p90_ms']:.4g}",
                     "runtime": result["runtime"]}],
                   ["predicted_ms", "measured_ms", "rel_error", "tolerance", "batch", "batch_p10_p90_ms", "runtime"])
        verdict = "within" if result["within_tolerance"] else "OUTSIDE"
        click.echo(f"{verdict} tolerance (per-image ms; {result['format']} {result['precision']})")
    if not result["within_tolerance"]:
        sys.exit(1)


commands = [deploy_group]
