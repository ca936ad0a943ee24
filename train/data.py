"""Local image data for training: CIFAR in its python-pickle layout, or an ImageFolder. Nothing is downloaded.

CIFAR-10 is a folder with ``data_batch_1`` … ``data_batch_5``, ``test_batch``
and ``batches.meta``; CIFAR-100 one with ``train``, ``test`` and ``meta`` (the
folders ``cifar-10-batches-py`` / ``cifar-100-python`` of the official
archives, or a folder holding one of them). An ImageFolder has ``train/`` and
``val/`` (or ``test/``) with one sub-folder of images per class, the same
classes in both.

Augmentation is the standard one: for images of at most 32 pixels a random
crop with padding (an eighth of the side) and a horizontal flip, as CIFAR
training does; for larger ones ``RandomResizedCrop`` and a flip, evaluated on
a resize to 8/7 and a centre crop, as ImageNet training does. Normalisation is
the per-channel mean and standard deviation of the training images.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from hwnas.errors import HwnasError

DATASETS = ("cifar10", "cifar100", "imagefolder")
SMALL_IMAGE = 32  # at most this many pixels a side: CIFAR-style augmentation
NORM_SAMPLE = 2000  # ImageFolder: normalisation from this many training images at most (seeded choice)
_CIFAR = {
    "cifar10": {"folder": "cifar-10-batches-py", "train": [f"data_batch_{i}" for i in range(1, 6)],
                "test": ["test_batch"], "meta": "batches.meta", "names": "label_names", "labels": "labels"},
    "cifar100": {"folder": "cifar-100-python", "train": ["train"], "test": ["test"], "meta": "meta",
                 "names": "fine_label_names", "labels": "fine_labels"},
}


@dataclass(frozen=True)
class ImageData:
    """A training and a validation set of one dataset, with what the network and the recipe need to know."""

    train: Dataset
    val: Dataset
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    val_name: str  # the folder or file the validation set came from ("val", "test", "test_batch")


def load(root: str | Path, dataset: str, resolution: int, flip: bool = True, seed: int = 0) -> ImageData:
    """The training and validation sets under ``root``; a missing or malformed layout is one HwnasError."""
    root = Path(root)
    if dataset not in DATASETS:
        raise HwnasError(f"unknown dataset {dataset!r}; expected one of: {', '.join(DATASETS)}")
    if not root.is_dir():
        raise HwnasError(f"data folder {root} does not exist; expected {_expected(dataset)}")
    if dataset == "imagefolder":
        return _image_folder(root, resolution, flip, seed)
    return _cifar(root, dataset, resolution, flip)


def _expected(dataset: str) -> str:
    if dataset == "imagefolder":
        return "an ImageFolder: train/ and val/ (or test/) with one sub-folder of images per class"
    spec = _CIFAR[dataset]
    return (f"the {dataset} python-pickle layout ({', '.join(spec['train'] + spec['test'])} and {spec['meta']}, "
            f"or a {spec['folder']}/ folder holding them)")


def transforms(resolution: int, mean, std, flip: bool):
    """(training, evaluation) transforms of PIL images at ``resolution``."""
    from torchvision import transforms as T

    flips = [T.RandomHorizontalFlip()] if flip else []
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    if resolution <= SMALL_IMAGE:
        size = [T.Resize((resolution, resolution))]
        train = T.Compose(size + [T.RandomCrop(resolution, padding=max(1, resolution // 8))] + flips + tail)
        return train, T.Compose(size + tail)
    train = T.Compose([T.RandomResizedCrop(resolution)] + flips + tail)
    return train, T.Compose([T.Resize(round(resolution * 8 / 7)), T.CenterCrop(resolution)] + tail)


# ---------------------------------------------------------------------------------------------- CIFAR

class ArrayImages(Dataset):
    """Images held as one uint8 array (N, H, W, 3) with integer labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


class _ArraysOnly(pickle.Unpickler):
    """CIFAR batches hold dicts of numpy arrays and lists; refuse any other object a pickle could build."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # protocol-2 pickles wrap bytes

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path, dataset: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = _ArraysOnly(f, encoding="bytes").load()
    except (OSError, EOFError, ValueError, TypeError, AttributeError, pickle.UnpicklingError) as err:
        raise HwnasError(f"{path}: not a {dataset} python-pickle batch ({type(err).__name__}: {err}); "
                         f"expected {_expected(dataset)}") from None
    if not isinstance(data, dict):
        raise HwnasError(f"{path}: expected a pickled dict, as in {_expected(dataset)}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _cifar_split(folder: Path, files: list[str], dataset: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    key = _CIFAR[dataset]["labels"]
    for name in files:
        batch = _unpickle(folder / name, dataset)
        data, y = batch.get("data"), batch.get(key)
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or y is None:
            raise HwnasError(f"{folder / name}: expected 'data' of shape (N, 3072) and '{key}'; "
                             f"got {None if data is None else getattr(data, 'shape', type(data).__name__)}")
        y = np.asarray(y, dtype=np.int64)
        if len(y) != len(data) or (len(y) and (y.min() < 0 or y.max() >= num_classes)):
            raise HwnasError(f"{folder / name}: expected {len(data)} labels in 0..{num_classes - 1}")
        images.append(data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def _cifar(root: Path, dataset: str, resolution: int, flip: bool) -> ImageData:
    spec = _CIFAR[dataset]
    folder = root / spec["folder"] if (root / spec["folder"]).is_dir() else root
    missing = [n for n in spec["train"] + spec["test"] + [spec["meta"]] if not (folder / n).is_file()]
    if missing:
        raise HwnasError(f"{folder} lacks {', '.join(missing)}; expected {_expected(dataset)}")
    names = _unpickle(folder / spec["meta"], dataset).get(spec["names"])
    if not isinstance(names, list) or not names:
        raise HwnasError(f"{folder / spec['meta']}: expected the class names under '{spec['names']}'")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    train_x, train_y = _cifar_split(folder, spec["train"], dataset, len(classes))
    val_x, val_y = _cifar_split(folder, spec["test"], dataset, len(classes))
    pixels = train_x.reshape(-1, 3).astype(np.float64) / 255.0
    mean, std = tuple(pixels.mean(0).tolist()), tuple(np.maximum(pixels.std(0), 1e-6).tolist())
    train_t, val_t = transforms(resolution, mean, std, flip)
    return ImageData(ArrayImages(train_x, train_y, train_t), ArrayImages(val_x, val_y, val_t), classes,
                     mean, std, spec["test"][0])


# ---------------------------------------------------------------------------------------------- ImageFolder

def _folder_split(path: Path):
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(path))
    except (FileNotFoundError, OSError) as err:
        raise HwnasError(f"{path}: {err}; expected one sub-folder of images (.png, .jpg, ...) per class") from None


def _image_folder(root: Path, resolution: int, flip: bool, seed: int) -> ImageData:
    val_name = next((n for n in ("val", "test") if (root / n).is_dir()), None)
    if not (root / "train").is_dir() or val_name is None:
        raise HwnasError(f"{root} lacks {'train/' if not (root / 'train').is_dir() else 'val/ (or test/)'}; "
                         f"expected {_expected('imagefolder')}")
    train, val = _folder_split(root / "train"), _folder_split(root / val_name)
    if train.classes != val.classes:
        only = sorted(set(train.classes) ^ set(val.classes))
        raise HwnasError(f"{root}: train/ and {val_name}/ have different classes (e.g. {only[0]!r}); "
                         "expected the same class sub-folders in both")
    mean, std = _image_stats([p for p, _ in train.samples], resolution, seed)
    train.transform, val.transform = transforms(resolution, mean, std, flip)
    return ImageData(train, val, list(train.classes), mean, std, val_name)


def _image_stats(paths: list[str], resolution: int, seed: int) -> tuple[tuple, tuple]:
    """Per-channel mean and std of (a seeded sample of) the training images, resized to the resolution."""
    rng = np.random.default_rng(seed)
    chosen = paths if len(paths) <= NORM_SAMPLE else [paths[i] for i in rng.choice(len(paths), NORM_SAMPLE,
                                                                                      replace=False)]
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for path in chosen:
        with Image.open(path) as img:
            rgb = img.convert("RGB").resize((resolution, resolution), Image.BILINEAR)
        pixels = np.asarray(rgb, dtype=np.float64).reshape(-1, 3) / 255.0
        total += pixels.sum(0)
        total_sq += (pixels ** 2).sum(0)
        count += len(pixels)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    return tuple(mean.tolist()), tuple(np.maximum(std, 1e-6).tolist())

