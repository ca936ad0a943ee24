"""Training one network on local data: epochs, evaluation, a checkpoint every epoch, resume, results.

:func:`train_network` writes into its output folder

- ``checkpoint.pt`` after every epoch (weights, optimizer, gradient scaler,
  the metric rows so far, the configuration), atomically;
- ``metrics.csv``, one row per finished epoch: epoch, lr (at the epoch's last
  step), train loss (label-smoothed, on augmented images) and top-1, val loss
  (plain cross-entropy) and top-1, seconds;
- at the end ``model.pt`` (the weights as a plain ``state_dict`` with the
  class count, resolution and architecture beside it: what ``hwnas deploy
  --weights`` loads) and ``result.json`` (final top-1, the architecture, the
  recipe, the normalisation the weights expect).

Every epoch starts from a seed derived from the run's seed and the epoch
(shuffling, augmentation, worker seeds), so a run resumed from the
checkpoint of epoch k repeats exactly what an uninterrupted run does from
there: the same weights and the same metrics, on the same device.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from hwnas.atomic import atomic_write, atomic_write_bytes
from hwnas.errors import HwnasError
from hwnas.models.spaces.base import get_space
from hwnas.train import data as image_data
from hwnas.train.recipe import Accelerator, Recipe

CHECKPOINT, WEIGHTS, METRICS, RESULT = "checkpoint.pt", "model.pt", "metrics.csv", "result.json"
METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "seconds")
CHECKPOINT_VERSION = 1
EPOCH_SEED_STRIDE = 1_000_003  # epoch e of a run with seed s draws from seed s·stride + e


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training result (a resumed run must match it exactly)."""

    space: str
    structure: str
    use_se: bool
    data: str
    dataset: str
    resolution: int
    recipe: Recipe
    workers: int = 0
    seed: int = 0
    flip: bool = True

    def record(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Progress:
    """Where training is: sent after every optimizer step, and once more when an epoch is saved."""

    step: int  # optimizer steps done
    total: int  # optimizer steps of the whole run
    epoch: int  # the epoch running (1-based)
    epochs: int
    train_loss: float  # running mean over the epoch so far
    val_top1: float | None  # of the last finished epoch
    epoch_saved: bool = False


def _space(name: str, num_classes: int, resolution: int):
    """The registered space with the data's class count and the training resolution."""
    return get_space(name).with_input(resolution=resolution, num_classes=num_classes)


def _check_out(out: Path, config: TrainConfig, resume: bool) -> dict | None:
    """The checkpoint to resume from, or None to start; refuses to overwrite a run or resume another."""
    path = out / CHECKPOINT
    if not resume:
        if path.exists() or (out / RESULT).exists():
            raise HwnasError(f"{out} already holds a training run; pass --resume to continue it, "
                             "or choose another --out")
        return None
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise HwnasError(f"cannot read {path}: {type(err).__name__}; expected a checkpoint of hwnas train") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise HwnasError(f"{path} is not a version-{CHECKPOINT_VERSION} checkpoint of hwnas train")
    saved, wanted = _flat(ckpt["config"]), _flat(config.record())
    differ = [f"{k} {saved.get(k)!r} -> {wanted.get(k)!r}" for k in wanted if saved.get(k) != wanted.get(k)]
    if differ:
        raise HwnasError(f"--resume with other settings than the run in {out}: {'; '.join(differ)}; "
                         "resume with the same settings, or choose another --out")
    return ckpt


def _flat(record: dict) -> dict:
    return {**{k: v for k, v in record.items() if k != "recipe"}, **record["recipe"]}


def _loader(dataset, config: TrainConfig, shuffle: bool, epoch: int, cuda: bool) -> DataLoader:
    generator = torch.Generator().manual_seed(config.seed * EPOCH_SEED_STRIDE + epoch)
    return DataLoader(dataset, batch_size=config.recipe.batch_size, shuffle=shuffle, drop_last=shuffle,
                      num_workers=config.workers, generator=generator, pin_memory=cuda)


def _evaluate(model: nn.Module, loader: DataLoader, acc: Accelerator) -> tuple[float, float]:
    """(mean cross-entropy, top-1 %) over a loader."""
    model.eval()
    loss, correct, seen = 0.0, 0, 0
    with torch.no_grad(), acc.autocast():
        for images, labels in loader:
            images, labels = acc.batch(images, labels)
            logits = model(images).float()
            loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
    return loss / seen, 100.0 * correct / seen


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer, scaler, criterion, acc: Accelerator,
                 recipe: Recipe, step: int, steps_per_epoch: int,
                 report: Callable[[int, float], None]) -> tuple[float, float, float]:
    """One pass over the training loader from global step ``step``: (last lr, mean loss, top-1 %)."""
    model.train()
    loss_sum, correct, seen, lr = 0.0, 0, 0, float("nan")
    for images, labels in loader:
        lr = recipe.lr_at(step, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images, labels = acc.batch(images, labels)
        with acc.autocast():
            logits = model(images)
            loss = criterion(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
        step += 1
        report(step, loss_sum / seen)
    return lr, loss_sum / seen, 100.0 * correct / seen


def _save(path: Path, state: dict) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


def _write_metrics(out: Path, rows: list[dict]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out / METRICS, text.getvalue().encode())


def read_metrics(out: str | Path) -> list[dict]:
    """The rows of a run's ``metrics.csv`` as numbers."""
    with open(Path(out) / METRICS, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def _write_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def train_network(config: TrainConfig, out: str | Path, *, resume: bool = False,
                  progress: Callable[[Progress], None] | None = None) -> dict:
    """Train ``config``'s network into ``out`` (or continue it with ``resume``); return ``result.json``.

    Bad input (data folder, architecture, an output folder that holds another
    run) raises HwnasError before the first step.
    """
    out = Path(out)
    recipe = config.recipe
    ckpt = _check_out(out, config, resume)
    data = image_data.load(config.data, config.dataset, config.resolution, flip=config.flip, seed=config.seed)
    steps_per_epoch = len(data.train) // recipe.batch_size
    if steps_per_epoch < 1:
        raise HwnasError(f"--batch-size {recipe.batch_size} exceeds the {len(data.train)} training images; "
                         "expected a batch size of at most the training set")
    space = _space(config.space, len(data.classes), config.resolution)
    arch = space.parse(config.structure)
    torch.manual_seed(config.seed)
    model = space.build(arch, use_se=config.use_se)

    acc = Accelerator.auto()
    rows: list[dict] = []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        rows = list(ckpt["rows"])
    model = acc.model(model)
    optimizer, scaler, criterion = recipe.optimizer(model), acc.scaler(), recipe.criterion()
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
    out.mkdir(parents=True, exist_ok=True)

    total = recipe.epochs * steps_per_epoch
    for epoch in range(len(rows), recipe.epochs):
        start = time.perf_counter()
        torch.manual_seed(config.seed * EPOCH_SEED_STRIDE + epoch)
        last_top1 = rows[-1]["val_top1"] if rows else None

        def report(step: int, loss: float) -> None:  # called within this epoch only
            if progress is not None:
                progress(Progress(step, total, epoch + 1, recipe.epochs, loss, last_top1))

        lr, train_loss, train_top1 = _train_epoch(model, _loader(data.train, config, True, epoch, acc.cuda),
                                                  optimizer, scaler, criterion, acc, recipe,
                                                  epoch * steps_per_epoch, steps_per_epoch, report)
        if not math.isfinite(train_loss):
            raise HwnasError(f"training diverged in epoch {epoch + 1} (non-finite loss); lower --lr")
        val_loss, val_top1 = _evaluate(model, _loader(data.val, config, False, epoch, acc.cuda), acc)
        rows.append({"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_top1": train_top1,
                     "val_loss": val_loss, "val_top1": val_top1, "seconds": round(time.perf_counter() - start, 3)})
        _save(out / CHECKPOINT, {"version": CHECKPOINT_VERSION, "config": config.record(), "model": model.state_dict(),
                                 "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rows": rows,
                                 "num_classes": len(data.classes), "resolution": config.resolution})
        _write_metrics(out, rows)
        if progress is not None:
            progress(Progress((epoch + 1) * steps_per_epoch, total, epoch + 1, recipe.epochs, train_loss, val_top1,
                              epoch_saved=True))

    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _save(out / WEIGHTS, {"state_dict": weights, "num_classes": len(data.classes), "resolution": config.resolution,
                          "space": config.space, "structure": config.structure, "use_se": config.use_se})
    counts = space.counts(arch, use_se=config.use_se)
    result = {
        "top1": rows[-1]["val_top1"],
        "val_loss": rows[-1]["val_loss"],
        "val_split": data.val_name,
        "epochs": recipe.epochs,
        "space": config.space,
        "structure": space.format(arch),
        "use_se": config.use_se,
        "params": counts.params,
        "flops": counts.flops,
        "dataset": config.dataset,
        "data": config.data,
        "num_classes": len(data.classes),
        "classes": data.classes,
        "train_images": len(data.train),
        "val_images": len(data.val),
        "resolution": config.resolution,
        "normalize": {"mean": list(data.mean), "std": list(data.std)},
        "recipe": dataclasses.asdict(recipe),
        "seed": config.seed,
        "workers": config.workers,
        "flip": config.flip,
        "device": str(acc.device),
        "mixed_precision": acc.cuda,
        "channels_last": acc.cuda,
        "seconds": round(sum(r["seconds"] for r in rows), 3),
        "weights": WEIGHTS,
        "torch": torch.__version__,
    }
    _write_json(out / RESULT, result)
    return result
