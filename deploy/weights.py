"""Trained weights for a deployment: a checkpoint loaded strictly into the network, with its sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hwnas.errors import DeployError, one_line


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_weights(module, path: Path, *, num_classes: int, resolution: int) -> str:
    """Load a checkpoint into ``module`` strictly; return its sha256. Mismatches raise DeployError."""
    import torch

    if not path.is_file():
        raise DeployError(f"weights file {path} does not exist; expected a checkpoint saved with torch.save")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged or foreign file
        if "weights_only" in str(err):  # a pickle with more than tensors (trainer objects, namespaces)
            raise DeployError(f"weights file {path} holds Python objects besides tensors, which are not loaded "
                              "for safety; save model.state_dict() alone with torch.save") from None
        reason = one_line(err, 200)
        raise DeployError(f"cannot read weights file {path}: {type(err).__name__}: {reason}") from None
    if isinstance(ckpt, dict):
        for key, value in (("num_classes", num_classes), ("resolution", resolution)):
            if key in ckpt and isinstance(ckpt[key], int) and ckpt[key] != value:
                raise DeployError(f"weights file {path} was saved with {key}={ckpt[key]}, but the deployment "
                                  f"uses {key}={value}; pass --{key.replace('_', '-')} {ckpt[key]}")
        for key in ("state_dict", "model"):
            if isinstance(ckpt.get(key), dict):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise DeployError(f"weights file {path} holds no state_dict; expected a dict of tensors or a dict with "
                          "'state_dict' or 'model'")
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in ckpt.items()}
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise DeployError(f"weights file {path} does not fit this structure: {', '.join(parts)} keys; "
                          "expected a checkpoint of the same structure")
    for key, tensor in own.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            hint = ""
            fc = [k for k in own if k.endswith("weight") and own[k].ndim == 2]
            if fc and key == fc[-1] and state[key].shape[1:] == tensor.shape[1:]:
                hint = f"; the checkpoint has {state[key].shape[0]} classes, pass --num-classes {state[key].shape[0]}"
            raise DeployError(f"weights file {path}: {key} has shape {tuple(state[key].shape)}, expected "
                              f"{tuple(tensor.shape)}{hint}")
    module.load_state_dict(state, strict=True)
    return sha256(path)
