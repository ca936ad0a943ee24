"""``hwnas train``: train a network on local data with the standard recipe."""

from __future__ import annotations

from pathlib import Path

import click

from hwnas.cli.options import BoundedFloat, BoundedInt, OutputDir
from hwnas.cli.output import echo_json, echo_table


def _resolve_arch(source: str, space: str | None) -> dict:
    """Space, structure text, SE and default resolution of an architecture argument (the shared resolver)."""
    from hwnas.cli.resolve import resolve_arch

    found = resolve_arch(source, space=space)
    if found.model is not None:
        use_se = found.model.use_se
    else:
        use_se = bool(found.run.config.get("use_se")) if found.run is not None else False
    return {"space": found.space.name, "structure": found.space.format(found.arch), "use_se": use_se,
            "resolution": found.space.resolution}


class _Bar:
    """Turns training progress into a tqdm bar with ETA (steps over the whole run)."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar = enabled, None

    def __call__(self, p) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=p.total, initial=p.step - 1, unit="step", dynamic_ncols=True, desc="training")
        self.bar.update(p.step - self.bar.n)
        postfix = {"epoch": f"{p.epoch}/{p.epochs}", "loss": f"{p.train_loss:.3f}"}
        if p.val_top1 is not None:
            postfix["val_top1"] = f"{p.val_top1:.2f}"
        self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.command("train")
@click.argument("arch", metavar="ARCH|RUN_DIR")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Local data folder (never downloaded).")
@click.option("--dataset", required=True, type=click.Choice(["cifar10", "cifar100", "imagefolder"]),
              help="Layout of --data: CIFAR's python-pickle batches, or train/ and val/ (or test/) class folders.")
@click.option("--epochs", type=BoundedInt(1, 10_000), default=100, show_default=True)
@click.option("--batch-size", type=BoundedInt(1, 65_536), default=128, show_default=True)
@click.option("--resolution", type=BoundedInt(8, 1024), default=None,
              help="Input resolution (default: the run's, the zoo model's or the space's).")
@click.option("--space", default=None, help="Space of a structure string (default: the run's or zoo model's, "
                                            "nb201 for '|...|' cells, else imagenet224).")
@click.option("--lr", type=BoundedFloat(0, 10, min_open=True), default=None,
              help="Peak learning rate (default: 0.1 x batch size / 128).")
@click.option("--weight-decay", type=BoundedFloat(0, 1), default=5e-4, show_default=True,
              help="On conv and linear weights; none on BN and biases.")
@click.option("--label-smoothing", type=BoundedFloat(0, 1, max_open=True), default=0.1, show_default=True)
@click.option("--warmup-epochs", type=BoundedFloat(0, 10_000), default=1.0, show_default=True,
              help="Linear warm-up before the cosine decay (below --epochs).")
@click.option("--no-flip", is_flag=True, help="No horizontal flips (for data whose mirror image means something "
                                              "else, e.g. digits).")
@click.option("--workers", type=BoundedInt(0, 256), default=4, show_default=True, help="Data loader processes.")
@click.option("--seed", type=BoundedInt(0, 2**31 - 1), default=0, show_default=True)
@click.option("--out", default="runs/train", show_default=True, type=OutputDir(),
              help="Output folder: checkpoint.pt, metrics.csv, model.pt, result.json.")
@click.option("--resume", is_flag=True,
              help="Continue the run checkpointed in --out (same settings; starts one if --out has none).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print result.json.")
def train_cmd(arch, data, dataset, epochs, batch_size, resolution, space, lr, weight_decay, label_smoothing,
              warmup_epochs, no_flip, workers, seed, out, resume, no_progress, as_json) -> None:
    """Train ARCH on local data; write metrics.csv per epoch, a checkpoint per epoch, model.pt and result.json.

    ARCH is a zoo model name, a structure string, a file holding one, or a
    search output folder (best.txt and config.json). The classifier gets
    the data's class count. The recipe: SGD with Nesterov momentum, linear
    warm-up into a cosine schedule, label smoothing 0.1, weight decay
    without decay on BN and biases, random crop with padding (32 px and
    below) or random-resized crop, and flips; mixed precision and channels
    last on a GPU. model.pt loads with `hwnas deploy --weights`.

    \b
    Example:
      python scripts/digits_imagefolder.py --out data/digits
      hwnas train runs/search-cifar32 --data data/digits --dataset imagefolder --no-flip \\
          --epochs 30 --batch-size 64 --workers 0 --out runs/train-digits
      hwnas train zennet_cifar10_model_size05M_res32 --data data/cifar-10-batches-py --dataset cifar10 \\
          --epochs 200 --out runs/train-z05
    """
    from hwnas.train import Recipe, TrainConfig, default_lr, read_metrics, train_network

    target = _resolve_arch(arch, space)
    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=lr if lr is not None else default_lr(batch_size),
                    weight_decay=weight_decay, label_smoothing=label_smoothing, warmup_epochs=warmup_epochs)
    config = TrainConfig(space=target["space"], structure=target["structure"], use_se=target["use_se"],
                         data=str(Path(data).resolve()), dataset=dataset,
                         resolution=resolution or target["resolution"], recipe=recipe, workers=workers, seed=seed,
                         flip=not no_flip)
    bar = _Bar(not no_progress)
    try:
        result = train_network(config, out, resume=resume, progress=bar)
    finally:
        bar.close()
    if as_json:
        echo_json(result)
        return
    rows = [{"epoch": r["epoch"], "lr": f"{r['lr']:.4g}", "train_loss": f"{r['train_loss']:.4f}",
             "train_top1": f"{r['train_top1']:.2f}", "val_loss": f"{r['val_loss']:.4f}",
             "val_top1": f"{r['val_top1']:.2f}", "seconds": f"{r['seconds']:.1f}"}
            for r in read_metrics(out)]
    echo_table(rows, list(rows[0]))
    click.echo(f"\ntop-1 {result['top1']:.2f}% on {result['val_images']} {result['val_split']} images after "
               f"{result['epochs']} epochs ({result['seconds']:.0f} s); weights {Path(out) / result['weights']}")


commands = [train_cmd]
