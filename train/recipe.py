"""The training recipe: SGD with Nesterov momentum, a linear warm-up into a cosine decay, label smoothing.

Weight decay applies to convolution and classifier weights only; BatchNorm
scales and shifts and every bias are left undecayed (decaying them only
fights BN's scale invariance). The learning rate is set every step from the
global step alone, so a resumed run follows the same schedule. On CUDA the
forward pass runs in float16 autocast with a gradient scaler and in
channels-last memory format (what tensor cores want); on a CPU both stay off
and training is float32.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from hwnas.errors import HwnasError

BASE_LR, BASE_BATCH = 0.1, 128  # default peak lr: 0.1 per 128 images (linear scaling rule)


def default_lr(batch_size: int) -> float:
    return BASE_LR * batch_size / BASE_BATCH


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int
    lr: float  # peak learning rate, reached at the end of the warm-up
    weight_decay: float = 5e-4
    momentum: float = 0.9
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise HwnasError(f"epochs and batch size must be at least 1, got {self.epochs} and {self.batch_size}")
        if not (self.lr > 0 and self.weight_decay >= 0 and 0 <= self.momentum < 1
                and 0 <= self.label_smoothing < 1):
            raise HwnasError(f"expected lr > 0, weight decay >= 0, momentum and label smoothing in [0, 1); got "
                             f"{self.lr}, {self.weight_decay}, {self.momentum}, {self.label_smoothing}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise HwnasError(f"warm-up epochs must be in [0, {self.epochs}) (below the epochs), "
                             f"got {self.warmup_epochs}")

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based): linear warm-up to ``lr``, then cosine to 0."""
        total = self.epochs * steps_per_epoch
        warmup = round(self.warmup_epochs * steps_per_epoch)
        if step < warmup:
            return self.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * self.lr * (1.0 + math.cos(math.pi * progress))

    def optimizer(self, model: nn.Module) -> torch.optim.SGD:
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]  # BN and biases
        groups = [{"params": decay, "weight_decay": self.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum, nesterov=self.momentum > 0)

    def criterion(self) -> nn.Module:
        return nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)


@dataclass(frozen=True)
class Accelerator:
    """Where training runs, and the precision and memory format that go with it."""

    device: torch.device

    @classmethod
    def auto(cls) -> "Accelerator":
        return cls(torch.device("cuda" if torch.cuda.is_available() else "cpu"))

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def model(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.cuda else model

    def batch(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.to(self.device, non_blocking=True)
        if self.cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(self.device, non_blocking=True)

    def autocast(self):
        if self.cuda:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def scaler(self) -> torch.amp.GradScaler:
        """A float16 gradient scaler on CUDA; elsewhere a disabled one (scale and step pass through)."""
        return torch.amp.GradScaler("cuda", enabled=self.cuda)
