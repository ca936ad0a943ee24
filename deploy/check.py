"""``hwnas deploy check``: time a deployed artifact under a latency profile's settings, compare with its prediction.

The artifact is timed with the profile's own backend exactly as the
profile's calibration networks were (:func:`hwnas.latency.timing.measure_interleaved`:
samples in rounds spread over a second or more, the fastest of passes), the
ONNX graph through ``prepare_onnx``, the TensorRT engine through
``prepare_engine``.
"""

from __future__ import annotations

from pathlib import Path

from hwnas.deploy.artifact import ENGINE_FILE, ONNX_FILE, read_manifest
from hwnas.errors import DeployError

# The runtime a profile's backend must match for each artifact format.
_RUNTIME = {"onnx": "onnxruntime", "tensorrt": "tensorrt"}


def _refusals(manifest: dict, profile, space) -> list[str]:
    """Every way the deployment's settings differ from the profile's: each makes the comparison meaningless
    (the device is checked before, by ``Profile.check``)."""
    out = []
    runtime = _RUNTIME[manifest["format"]]
    if profile.backend != runtime:
        out.append(f"the profile was measured with {profile.backend}, the artifact runs on {runtime}")
    if profile.precision != manifest["precision"]:
        out.append(f"the profile is {profile.precision}, the artifact {manifest['precision']}")
    if manifest["dynamic_batch"]:
        if manifest["format"] == "tensorrt" and profile.batch > manifest["batch"]:
            out.append(f"the profile's batch {profile.batch} exceeds the engine's largest batch {manifest['batch']}")
    elif profile.batch != manifest["batch"]:
        out.append(f"the profile's batch is {profile.batch}, the artifact's static batch {manifest['batch']} "
                   f"(deploy with --batch {profile.batch} or --dynamic-batch)")
    if profile.space != manifest["space"]:
        out.append(f"the profile is for space {profile.space}, the artifact's space is {manifest['space']}")
    for key in ("resolution", "num_classes"):
        if getattr(space, key) != manifest[key]:
            out.append(f"the profile predicts {key} {getattr(space, key)}, the artifact has {manifest[key]}")
    if manifest.get("use_se"):
        out.append("the artifact has SE modules, the profile predicts networks without them")
    return out


def check(directory: str | Path, profile, *, tolerance: float = 0.10, warmup: int | None = None,
          repeats: int | None = None) -> dict:
    """Measure the artifact deployed in ``directory`` under ``profile``'s settings and compare with its prediction.

    Returns ``predicted_ms`` and ``measured_ms`` (per image: the batch time,
    :func:`hwnas.latency.timing.network_ms` of the samples as for whole
    networks everywhere, / batch), ``rel_error = measured / predicted - 1`` and
    ``within_tolerance``. Settings that differ (runtime, precision, batch,
    space, resolution, classes, SE) raise DeployError naming them; another device, a ProfileError.
    """
    from hwnas.latency.backends import get_backend
    from hwnas.latency.predictor import Predictor
    from hwnas.latency.timing import measure_interleaved, network_ms
    from hwnas.models.spaces.base import get_space

    if tolerance <= 0:
        raise DeployError(f"tolerance {tolerance}; expected a positive fraction such as 0.10")
    profile.check(host=True, doing="checked")  # this machine must be the profile's device, before any work
    directory = Path(directory)
    manifest = read_manifest(directory)
    space = get_space(profile.space)
    refusals = _refusals(manifest, profile, space)
    if refusals:
        raise DeployError(f"{directory} cannot be checked against profile {profile.name}: {'; '.join(refusals)}")

    batch = profile.batch
    predicted = float(Predictor(profile).predict_ms(space.parse(manifest["structure"])))
    backend = get_backend(profile.backend, **profile.settings)
    if manifest["format"] == "onnx":
        artifact, prepare = directory / ONNX_FILE, backend.prepare_onnx
        threads = profile.settings.get("threads")
        runtime = (f"onnxruntime {backend.versions().get('onnxruntime')} {profile.settings.get('device', 'cpu')}"
                   + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""))
    else:
        artifact, prepare = directory / ENGINE_FILE, backend.prepare_engine
        runtime = f"tensorrt {manifest['tensorrt']['version']} engine on {manifest['tensorrt']['device']}"
    measurement = measure_interleaved(backend, [artifact], lambda path: prepare(path, batch=batch, warmup=warmup),
                                      repeats=repeats)[0]
    measured = network_ms(measurement) / batch
    rel_error = measured / predicted - 1.0 if predicted > 0 else float("inf")
    return {
        "directory": str(directory),
        "profile": profile.name,
        "profile_hash": profile.hash,
        "device": profile.metadata.get("device", {}).get("name"),
        "structure": manifest["structure"],
        "format": manifest["format"],
        "precision": manifest["precision"],
        "batch": batch,
        "runtime": runtime,
        "predicted_ms": predicted,
        "measured_ms": measured,
        "measured_batch_ms": measurement.as_dict(),
        "rel_error": rel_error,
        "tolerance": tolerance,
        "within_tolerance": bool(abs(rel_error) <= tolerance),
    }
