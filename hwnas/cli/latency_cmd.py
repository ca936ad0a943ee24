"""``profile-device``, ``hwnas latency predict|validate|recalibrate`` and ``hwnas profiles list``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hwnas.cli.options import BATCH, SEED, BoundedFloat, BoundedInt, InputFile, NonEmpty, OutputDir, OutputFile
from hwnas.cli.output import echo_json, echo_table


def _load_arch(space, value: str):
    """An architecture of the profile's ``space`` from any architecture argument (the shared resolver); a zoo
    network or search run at another resolution is refused."""
    from hwnas.cli.resolve import resolve_arch
    from hwnas.errors import ProfileError

    found = resolve_arch(value, space=space.name)
    if found.space.resolution != space.resolution:
        raise ProfileError(f"{value} is a {found.space.resolution}x{found.space.resolution} network; the profile is "
                           f"for space {space.name} at {space.resolution}x{space.resolution} (pick a profile of that "
                           "resolution with --profile)")
    return found.arch


def _progress_bar(disabled: bool):
    """An ``on_progress(done, total, what)`` callback drawing one tqdm bar per ``what`` on stderr (None: none)."""
    if disabled:
        return None
    from tqdm import tqdm

    bars: dict = {}

    def on_progress(done: int, total: int, what: str) -> None:
        if what not in bars:
            bars[what] = tqdm(total=total, initial=done, desc=what, unit="item", smoothing=0.05)
        bar = bars[what]
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return on_progress


@click.command("profile-device")
@click.option("--cpu", "use_cpu", is_flag=True, help="Profile the CPU (the default when --gpu is not given).")
@click.option("--gpu", default=None, metavar="NAME",
              help="Profile this NVIDIA GPU (e.g. v100); exits 2 naming the GPUs found if it is not present.")
@click.option("--backend", type=click.Choice(["onnxruntime", "torch", "tensorrt"]), default="onnxruntime",
              show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None,
              help="fp32 on CPU, fp16 on GPU by default.")
@click.option("--batch", type=BATCH, default=None, help="Batch size (1 on CPU, 64 on GPU by default).")
@click.option("--threads", type=BoundedInt(1, 1024), default=1, show_default=True, help="CPU intra-op threads.")
@click.option("--space", default="imagenet224", show_default=True, help="Space whose parts are profiled.")
@click.option("--grid", type=click.Choice(["coarse", "full"]), default="coarse", show_default=True)
@click.option("--networks", type=BoundedInt(0, 100_000), default=None,
              help="Whole networks measured for the calibration [240; 500 where the graph calibration form applies: "
                   "NB201 spaces on onnxruntime CPU].")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the calibration networks.")
@click.option("--cuda-graphs", is_flag=True, help="torch backend on CUDA: replay CUDA graphs.")
@click.option("--max-minutes", type=BoundedFloat(0, 1e7, min_open=True), default=None,
              help="Stop after this many minutes; the same command later resumes where it stopped.")
@click.option("--quick", is_flag=True,
              help="A quick profile (a few minutes): the --quick-from profile's table carried over to this machine "
                   "from a stratified sample of its parts and 60 whole networks timed here (300 for NB201).")
@click.option("--quick-from", type=NonEmpty("a profile name or folder"), default=None, metavar="PROFILE",
              help="Source profile of --quick [the space's shipped default].")
@click.option("--out", type=OutputDir(), default=None,
              help="Profile folder [local-profiles/<backend>-<device>-b<batch>-<space>, -quick for --quick].")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the profile summary as JSON.")
def profile_device_cmd(use_cpu, gpu, backend, precision, batch, threads, space, grid, networks, seed, cuda_graphs,
                       quick, quick_from, max_minutes, out, no_progress, as_json) -> None:
    """Measure a per-part latency table of a space on this machine's CPU or GPU.

    Every part the space can produce on the width grid is timed in isolation
    (warm-up, median over repeats, p10/p90, re-measured when noisy), then
    --networks random whole networks are timed end to end (in rounds interleaved
    across networks, 3 passes; the 10th percentile of their samples in their
    fastest pass) and the predictor's
    calibration is fitted on them; for NB201 on onnxruntime CPU also the
    optimized-graph table of every cell (the graph calibration form). Times are
    batch times; predictions are per image (batch time / batch). Interrupted
    runs resume: rerun the same command.

    \b
    With --quick, only a stratified sample of a source profile's parts is
    timed here; the source's whole table is carried over by a fitted ratio
    model and calibrated on 60 networks timed here (300 small ones for NB201;
    docs/latency.md).

    \b
    Example:
      profile-device --cpu --backend onnxruntime --threads 1 --batch 1 --space imagenet224
      profile-device --cpu --quick --space imagenet224 --out local-profiles/quick224
      profile-device --gpu v100 --backend tensorrt --precision fp16 --batch 64 --space imagenet224
    """
    from hwnas.errors import HwnasError
    from hwnas.latency.device import default_settings, require_gpu
    from hwnas.latency.profile import profile_name
    from hwnas.latency.profiler import profile_device

    if use_cpu and gpu:
        raise HwnasError("give --cpu or --gpu NAME, not both")
    if gpu:
        require_gpu(gpu)  # a profile is never produced for a device that is not present
    device = "cuda" if gpu else "cpu"
    if backend == "tensorrt" and device == "cpu":
        raise HwnasError("the tensorrt backend needs --gpu NAME")
    settings = default_settings(device, backend, precision, batch, threads, cuda_graphs)
    if quick_from and not quick:
        raise HwnasError("--quick-from needs --quick")
    source = None
    if quick:
        from hwnas.latency.profile import Profile, default_profile_name

        source = Profile.load(quick_from or default_profile_name(space))
    name = profile_name(backend, settings, space, gpu) + ("-quick" if quick else "")
    out = Path(out or Path("local-profiles") / name)
    profile = profile_device(space, backend, settings, out, grid=grid, networks=networks, seed=seed,
                             max_minutes=max_minutes, gpu=gpu, on_progress=_progress_bar(no_progress), name=out.name,
                             quick_from=source)
    if profile is None:
        click.echo(f"stopped after {max_minutes} minutes; rerun the same command to continue (journal: "
                   f"{out / 'journal.jsonl'})", err=True)
        sys.exit(3)
    cal = profile.calibration
    summary = {"profile": str(out), "parts": len(profile.table), "device": profile.metadata["device"]["name"],
               "profiling_seconds": profile.metadata["profiling_seconds"], "calibration": cal.get("form"),
               "loo_within_10pct": cal.get("forms", {}).get(cal.get("form"), {}).get("loo_within_10pct"),
               "loo_mape": cal.get("forms", {}).get(cal.get("form"), {}).get("loo_mape"), "hash": profile.hash}
    if as_json:
        echo_json(summary)
    else:
        echo_table([summary], list(summary))


@click.group("latency")
def latency_group() -> None:
    """Predict and validate latency with a measured profile.

    \b
    Example:
      hwnas latency predict zennet_imagenet1k_latency05ms_res224
      hwnas latency validate --samples 50 --seed 1 --plot val.png
    """


def _profile(name):
    from hwnas.latency.profile import Profile

    return Profile.load(name)


PROFILE = NonEmpty("a profile name or folder")
PROFILE_HELP = "Profile name (see `hwnas profiles list`) or folder [the shipped default]."


@latency_group.command("predict")
@click.argument("structure")
@click.option("--profile", "profile_name", type=PROFILE, default=None, help=PROFILE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (key latency_ms).")
def predict_cmd(structure, profile_name, as_json) -> None:
    """Predicted per-image latency of one architecture of the profile's space.

    STRUCTURE is a structure string, a file holding one, a zoo model name
    (structure spaces) or an NB201 cell string (nb201 profiles).

    \b
    Example:
      hwnas latency predict "SuperConvK3BNRELU(3,32,2,1)SuperResK3K3(32,64,2,32,1)SuperConvK1BNRELU(64,512,1,1)"
      hwnas latency predict zennet_imagenet1k_latency05ms_res224 --profile ort-cpu1-b1-imagenet224 --json
    """
    from hwnas.latency.predictor import Predictor
    from hwnas.models.spaces.base import get_space

    profile = _profile(profile_name)
    arch = _load_arch(get_space(profile.space), structure)
    predictor = Predictor(profile)
    features = predictor.features(arch)
    out = {"latency_ms": predictor.predict_ms(arch), "unit": "ms per image (batch time / batch)",
           "batch_ms": predictor.predict_batch_ms(arch), "raw_sum_batch_ms": features.raw_sum_ms,
           "parts": features.parts,
           "profile": profile.name, "backend": profile.backend, "device": profile.metadata["device"]["name"],
           "batch": profile.batch, "precision": profile.precision}
    if as_json:
        echo_json(out)
    else:
        click.echo(f"{out['latency_ms']:.4f} ms per image ({profile.name}: {profile.backend}, "
                   f"{profile.precision}, batch {profile.batch}, {out['device']})")


@latency_group.command("measure")
@click.argument("structures", nargs=-1, required=True, metavar="STRUCTURE...")
@click.option("--profile", "profile_name", type=PROFILE, default=None, help=PROFILE_HELP)
@click.option("--no-progress", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (per network: predicted_ms, measured_ms, error_pct).")
def measure_cmd(structures, profile_name, no_progress, as_json) -> None:
    """Measure architectures end to end on this machine beside their predictions.

    Each STRUCTURE (as for `latency predict`: a structure string, a file, a zoo
    model name or an NB201 cell) is timed whole with the profile's backend and
    settings, as `latency validate` times its networks (interleaved rounds, the
    fastest of 3 passes), on the profiled device only.

    \b
    Example:
      hwnas latency measure flops400M flops600M --profile ort-cpu1-b1-imagenet224-zen5
      hwnas latency measure "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|" --profile ort-cpu1-b1-nb201 --json
    """
    from hwnas.latency.validate import measure_against_predictions
    from hwnas.models.spaces.base import get_space

    profile = _profile(profile_name)
    space = get_space(profile.space)
    archs = [_load_arch(space, s) for s in structures]  # every argument read before anything is measured
    rows = measure_against_predictions(profile, archs, on_progress=_progress_bar(no_progress))
    for name, row in zip(structures, rows):
        row["name"] = name
    if as_json:
        echo_json({"profile": profile.name, "unit": "ms per image (batch time / batch)", "networks": rows})
    else:
        echo_table(rows, ["name", "predicted_ms", "measured_ms", "error_pct"])


@latency_group.command("validate")
@click.option("--profile", "profile_name", type=PROFILE, default=None, help=PROFILE_HELP)
@click.option("--samples", type=BoundedInt(1, 100_000), default=50, show_default=True)
@click.option("--seed", type=SEED, default=1, show_default=True)
@click.option("--plot", type=OutputFile(), default=None, help="Write a predicted-vs-measured scatter plot (PNG) here.")
@click.option("--published", is_flag=True,
              help="Compare with the published ZenNet latencies (V100 FP16 batch-64 profiles only).")
@click.option("--repeatability", is_flag=True,
              help="Measure every network again in a fresh process and report how well the two runs agree (the "
                   "machine's noise floor).")
@click.option("--anchors", type=BoundedInt(1, 100_000), default=10, show_default=True,
              help="Time this many of the profile's own calibration networks again first: how fast the machine runs "
                   "now against when it was profiled (refused beyond 1.5x: another device), and the predictions' "
                   "agreement with that drift taken out.")
@click.option("--no-progress", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (within_10pct, within_5pct, mape, spearman, n, ...).")
def validate_cmd(profile_name, samples, seed, plot, published, repeatability, anchors, no_progress, as_json) -> None:
    """Measure fresh random networks end to end and compare them with the predictions.

    The networks are sampled over the space's size range with a seed stream
    distinct from the calibration's and measured with the profile's own
    backend and settings, on this machine (which must be the profiled device).
    First --anchors of the profile's own calibration networks are timed again:
    their ratio to the times stored when it was profiled is the machine's
    speed now (a second row shows the predictions multiplied by it, which
    tells the machine's drift from the model's error).

    \b
    Example:
      hwnas latency validate --profile ort-cpu1-b1-imagenet224 --samples 50 --seed 1 --plot val.png
      hwnas latency validate --profile local-profiles/quick224 --seed 2 --repeatability
      hwnas latency validate --profile profiles/trt-v100-fp16-b64-imagenet224 --published
    """
    from hwnas.errors import HwnasError
    from hwnas.latency import validate as v

    if published and repeatability:
        raise HwnasError("--repeatability measures networks here; --published compares with published figures")
    profile = _profile(profile_name)
    result = v.published(profile, plot) if published else v.validate(
        profile, samples, seed, plot, on_progress=_progress_bar(no_progress), repeatability=repeatability,
        anchors=anchors)
    if as_json:
        echo_json(result)
        return
    if published:
        echo_table(result["networks"], ["name", "published_ms", "predicted_ms", "ratio", "note"])
        click.echo(result["note"])
    keys = ["profile", "n", "mape", "within_5pct", "within_10pct", "spearman", "kendall", "max_abs_error_pct"]
    rows = [{k: result.get(k) for k in keys}]
    if "speed_adjusted" in result:
        rows.append({**{k: result["speed_adjusted"].get(k) for k in keys},
                     "profile": f"x {result['machine_speed']['ratio']:.3f} (machine speed)"})
    if "repeatability" in result:
        rows.append({**{k: result["repeatability"].get(k) for k in keys}, "profile": "measured again vs first"})
    echo_table(rows, keys)
    if "machine_speed" in result:
        speed = result["machine_speed"]
        click.echo(f"machine speed: {speed['networks']} of the profile's calibration networks take "
                   f"{speed['ratio']:.3f}x their profiled time here (the second row multiplies the predictions by it)")


@latency_group.command("recalibrate")
@click.option("--profile", "profile_name", type=PROFILE, default=None, help=PROFILE_HELP)
@click.option("--remeasure", is_flag=True,
              help="Measure the profile's calibration networks again first (on the profiled device only).")
@click.option("--networks", type=BoundedInt(3, 100_000), default=None,
              help="With --remeasure: sample and measure this many fresh calibration networks instead.")
@click.option("--no-progress", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (form, per-form leave-one-out figures, hash).")
def recalibrate_cmd(profile_name, remeasure, networks, no_progress, as_json) -> None:
    """Refit a profile's calibration in place on its whole networks (the parts are not re-measured).

    Use it after a predictor change (a profile records the predictor version it
    was calibrated for), or with --remeasure to time its calibration networks
    again. The profile's hash changes.

    \b
    Example:
      hwnas latency recalibrate --profile profiles/ort-cpu1-b1-nb201 --remeasure
      hwnas latency recalibrate --profile profiles/ort-cpu1-b1-cifar32 --remeasure --networks 240
    """
    from hwnas.latency.profiler import recalibrate

    profile = recalibrate(_profile(profile_name).path, remeasure=remeasure, on_progress=_progress_bar(no_progress),
                          networks=networks)
    cal = profile.calibration
    out = {"profile": profile.name, "path": str(profile.path), "hash": profile.hash, "form": cal["form"],
           "networks": len(cal["networks"]), "remeasured": remeasure,
           **{f"loo_within_10pct_{k}": v["loo_within_10pct"] for k, v in cal["forms"].items()}}
    if as_json:
        echo_json({**out, "forms": cal["forms"]})
    else:
        echo_table([out], list(out))


@click.group("profiles")
def profiles_group() -> None:
    """Shipped latency profiles.

    \b
    Example:
      hwnas profiles list
    """


@profiles_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def profiles_list_cmd(as_json) -> None:
    """Profiles shipped with hwnas: the device each describes and whether it fits this machine (the default is
    marked *). A profile that does not fit still predicts for its device; only measuring needs that device.

    \b
    Example:
      hwnas profiles list --json
    """
    from hwnas.latency.profile import list_profiles

    rows = list_profiles()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no shipped profiles")
        return
    echo_table([{**r, "default": "*" if r["default"] else "", "isa": " ".join(r["isa"] or ()),
                 "fits_host": "yes" if r["fits_host"] else "no: " + "; ".join(r["host_differences"])} for r in rows],
               ["name", "default", "space", "device", "cores", "isa", "runtime", "threads", "batch", "precision",
                "source", "fits_host"])


@profiles_group.command("import")
@click.argument("source")
@click.argument("path", type=InputFile())
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="tinynas: precision of the published table [fp16].")
@click.option("--batch", type=BATCH, default=None, help="tinynas: batch size to import [64].")
@click.option("--space", default=None, help="tinynas: search space the profile is for [imagenet224].")
@click.option("--convention", type=click.Choice(["tensorrt", "zennas"]), default=None,
              help="tinynas: tensorrt, the published TensorRT times as they are [default]; zennas, calibrated on "
                   "the ZenNet zoo's published V100 latencies (ZenNAS's latency unit).")
@click.option("--device", default=None, help="hw-nas-bench: edgegpu, raspi4, edgetpu, pixel3, eyeriss or fpga.")
@click.option("--dataset", default=None, help="hw-nas-bench: cifar10, cifar100 or imagenet16.")
@click.option("--out", type=OutputDir(), default=None,
              help="Profile folder to write [profiles/<name>]; must not hold a profile yet.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def profiles_import_cmd(source, path, out, as_json, **options) -> None:
    """Import published measurements of a device as a profile (provenance in its metadata).

    SOURCE is tinynas (Alibaba TinyNAS's V100 TensorRT convolution tables) or hw-nas-bench (HW-NAS-Bench's
    NB201 cells on six edge devices). The source's LICENSE (and NOTICE) must lie beside PATH; they are copied
    beside the profile.

    \b
    Example:
      hwnas profiles import tinynas conv_data.out.fp16 --precision fp16 --batch 64 --space imagenet224
      hwnas profiles import tinynas conv_data.out.fp16 --convention zennas --out profiles/zennas-v100
      hwnas profiles import hw-nas-bench latency.csv --device pixel3 --dataset cifar10
    """
    from hwnas.errors import ProfileError
    from hwnas.latency.sources import import_profile, save_imported

    if out is not None and (Path(out) / "metadata.json").exists():
        raise ProfileError(f"{out} already holds a profile; choose another --out")
    profile = import_profile(source, path, **{k: v for k, v in options.items() if v is not None})
    target = save_imported(profile, Path(out) if out else Path("profiles") / profile.name, path)
    src = profile.metadata["source"]
    summary = {"profile": str(target), "name": profile.name, "parts": len(profile.table), "device":
               profile.metadata["device"]["name"], "backend": profile.backend, "precision": profile.precision,
               "batch": profile.batch, "calibration": profile.calibration.get("form") or "none (plain sum)",
               "source": f"{src['repository']}@{src['commit'][:8]} {src['file']} ({src['license']})"}
    hold = src.get("holdout")
    if as_json:
        echo_json({**summary, "holdout": hold})
        return
    echo_table([summary], list(summary))
    if hold:
        columns = ["n", "median_abs_pct", "p90_abs_pct", "within_10pct"]
        echo_table([{"left out": k, **{c: hold[k][c] for c in columns}}
                    for k in ("size", "size_large", "widths", "widths_large")], ["left out", *columns])


commands = [profile_device_cmd, latency_group, profiles_group]
