"""Training a network of a search space on local data (``hwnas train``): data, recipe, loop."""

from hwnas.train.loop import Progress, TrainConfig, read_metrics, train_network
from hwnas.train.recipe import Recipe, default_lr

__all__ = ["Progress", "Recipe", "TrainConfig", "default_lr", "read_metrics", "train_network"]
