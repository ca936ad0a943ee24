"""``hwnas train``: data layouts, the recipe, learning, resume, checkpoints ``hwnas deploy`` loads, one-line errors."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import pickle
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hwnas.cli.main import main
from hwnas.errors import HwnasError
from hwnas.models.spaces.base import get_space
from hwnas.train import Progress, Recipe, TrainConfig, read_metrics, train_network
from hwnas.train import data as image_data

ROOT = Path(__file__).resolve().parents[1]
TINY = "SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,2,8,1)SuperConvK1BNRELU(16,32,1,1)"


def run(*args: str) -> tuple[int, str, str]:
    """``hwnas train ARGS``: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with pytest.raises(SystemExit) as info:
            main(["train", *args])
    return info.value.code, out.getvalue(), err.getvalue()


def _toy_images(n: int, rng: np.random.Generator, size: int = 8) -> dict[str, list[np.ndarray]]:
    """A learnable toy problem: dark images with noise are class "dark", bright ones "light"."""
    return {name: [np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8) for _ in range(n)]
            for name, base in (("dark", 70.0), ("light", 185.0))}


def image_folder(root: Path, train: int = 16, val: int = 8, val_name: str = "val") -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", train), (val_name, val)):
        for cls, images in _toy_images(n, rng).items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i, pixels in enumerate(images):
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
    return root


def cifar_layout(root: Path, dataset: str = "cifar10", per_batch: int = 4) -> tuple[Path, np.ndarray, list]:
    """A tiny CIFAR python-pickle layout (bytes keys, as the official files load); returns its training pixels."""
    rng = np.random.default_rng(1)
    classes = 10 if dataset == "cifar10" else 100
    if dataset == "cifar10":
        files, meta, names, key = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "batches.meta", \
            b"label_names", b"labels"
    else:
        files, meta, names, key = ["train", "test"], "meta", b"fine_label_names", b"fine_labels"
    root.mkdir(parents=True, exist_ok=True)
    train_pixels, train_labels = [], []
    for name in files:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, classes, per_batch).tolist()
        # protocol 2 naming numpy.core, as the official files (pickled by Python 2's numpy) do
        batch = pickle.dumps({b"data": data, key: labels, b"batch_label": b"x"}, protocol=2)
        (root / name).write_bytes(batch.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
        if "test" not in name:
            train_pixels.append(data)
            train_labels += labels
    with open(root / meta, "wb") as f:
        pickle.dump({names: [f"class{i}".encode() for i in range(classes)]}, f)
    return root, np.concatenate(train_pixels), train_labels


def config(data: Path, dataset: str = "imagefolder", epochs: int = 3, **recipe) -> TrainConfig:
    recipe = {"batch_size": 8, "lr": 0.05, "warmup_epochs": 0.0, **recipe}
    return TrainConfig(space="cifar32", structure=TINY, use_se=False, data=str(data), dataset=dataset,
                       resolution=8, recipe=Recipe(epochs=epochs, **recipe), seed=3)


# ---------------------------------------------------------------------------------------------- data

def test_image_folder_classes_and_normalisation_from_the_data(tmp_path):
    root = image_folder(tmp_path / "toy", val_name="test")
    loaded = image_data.load(root, "imagefolder", resolution=8)
    assert loaded.classes == ["dark", "light"] and loaded.val_name == "test"
    assert (len(loaded.train), len(loaded.val)) == (32, 16)
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) / 255
                       for p in sorted((root / "train").rglob("*.png"))]).reshape(-1, 3)
    np.testing.assert_allclose(loaded.mean, pixels.mean(0), rtol=1e-9)
    np.testing.assert_allclose(loaded.std, pixels.std(0), rtol=1e-6)
    image, label = loaded.val[0]
    assert image.shape == (3, 8, 8) and label == 0
    expected = (np.asarray(Image.open(root / "test" / "dark" / "0.png"), dtype=np.float64) / 255 - pixels.mean(0)) \
        / pixels.std(0)
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_cifar_pickle_layout(tmp_path, dataset):
    folder = "cifar-10-batches-py" if dataset == "cifar10" else "cifar-100-python"
    _, pixels, labels = cifar_layout(tmp_path / folder, dataset)
    loaded = image_data.load(tmp_path, dataset, resolution=32)  # the folder holding the official one
    per_batch = 4
    assert len(loaded.classes) == (10 if dataset == "cifar10" else 100) and loaded.classes[3] == "class3"
    assert len(loaded.train) == len(pixels) and len(loaded.val) == per_batch
    # row-major (3, 32, 32) per image in the pickle; stored here as (32, 32, 3)
    np.testing.assert_array_equal(loaded.train.images[1], pixels[1].reshape(3, 32, 32).transpose(1, 2, 0))
    assert loaded.train.labels.tolist() == labels
    np.testing.assert_allclose(loaded.mean, (pixels.reshape(-1, 3, 1024) / 255).mean(axis=(0, 2)), rtol=1e-9)


def test_digits_script_writes_a_stratified_image_folder(tmp_path):
    script = runpy.run_path(str(ROOT / "scripts" / "digits_imagefolder.py"))
    counts = script["write"](tmp_path, size=8, val_fraction=0.2, seed=0)
    from sklearn.datasets import load_digits

    target = load_digits().target
    assert counts == {"train": 1437, "val": 360} and counts["train"] + counts["val"] == len(target)
    for digit in range(10):
        n_val = len(list((tmp_path / "val" / str(digit)).glob("*.png")))
        n_train = len(list((tmp_path / "train" / str(digit)).glob("*.png")))
        assert n_train + n_val == (target == digit).sum()
        assert abs(n_val - 0.2 * (target == digit).sum()) <= 1
    first = sorted((tmp_path / "train" / "0").glob("*.png"))[0]
    index = int(first.stem)
    original = load_digits().images[index]
    np.testing.assert_array_equal(np.asarray(Image.open(first)), np.rint(original * 255 / 16).astype(np.uint8))


# ---------------------------------------------------------------------------------------------- recipe

def test_schedule_warms_up_linearly_then_follows_a_cosine():
    recipe = Recipe(epochs=2, batch_size=8, lr=0.4, warmup_epochs=1.0)
    lrs = [recipe.lr_at(step, steps_per_epoch=10) for step in range(20)]
    assert lrs[:10] == pytest.approx([0.04 * (i + 1) for i in range(10)])  # 0.4 / 10 per step
    assert lrs[10] == pytest.approx(0.4)
    assert lrs[15] == pytest.approx(0.2)  # half-way through the cosine: cos(pi/2) = 0
    assert lrs[19] == pytest.approx(0.2 * (1 + math.cos(math.pi * 9 / 10)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_optimizer_decays_weights_only_and_uses_nesterov():
    from hwnas.models.builder import build

    model = build(TINY, num_classes=2)
    optimizer = Recipe(epochs=1, batch_size=8, lr=0.1, weight_decay=1e-3, warmup_epochs=0).optimizer(model)
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        is_weight = name.endswith("weight") and p.ndim > 1  # conv and linear weights, not BN scales
        assert (id(p) in decayed) == is_weight, name
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in optimizer.param_groups)


@pytest.mark.parametrize("changes, words", [
    ({"warmup_epochs": 3.0}, "warm-up epochs must be in [0, 3)"),
    ({"lr": 0.0}, "lr > 0"),
])
def test_recipe_refuses_bad_settings(changes, words):
    with pytest.raises(HwnasError, match=words.replace("[", r"\[").replace(")", r"\)")):
        Recipe(**{"epochs": 3, "batch_size": 8, "lr": 0.1, **changes})


# ---------------------------------------------------------------------------------------------- training

def test_loss_goes_down_and_the_toy_problem_is_learned(tmp_path):
    data = image_folder(tmp_path / "toy")
    result = train_network(config(data, epochs=4), tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert result["top1"] == rows[-1]["val_top1"] == 100.0
    assert result["structure"] == TINY and result["num_classes"] == 2 and result["resolution"] == 8
    assert json.loads((tmp_path / "run" / "result.json").read_text()) == result


class _Stop(Exception):
    pass


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_equals_an_uninterrupted_run(tmp_path, workers):
    data = image_folder(tmp_path / "toy")
    cfg = dataclasses.replace(config(data, epochs=3), workers=workers)  # loader processes draw seeded too
    train_network(cfg, tmp_path / "whole")

    def stop_in_epoch_two(p: Progress) -> None:
        if p.epoch == 2 and p.step == 5:  # 4 steps an epoch: the first step of epoch 2 is done
            raise _Stop

    with pytest.raises(_Stop):
        train_network(cfg, tmp_path / "cut", progress=stop_in_epoch_two)
    assert [r["epoch"] for r in read_metrics(tmp_path / "cut")] == [1]
    assert not (tmp_path / "cut" / "model.pt").exists()
    seen: list[Progress] = []
    train_network(cfg, tmp_path / "cut", resume=True, progress=seen.append)
    assert seen[0].step == 5 and seen[0].epoch == 2 and seen[-1].step == seen[-1].total == 12

    whole, cut = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "cut")
    for row in whole + cut:
        row.pop("seconds")
    assert cut == whole
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_load_with_deploy_and_into_the_built_network(tmp_path):
    from hwnas.deploy import build_module, load_weights
    from hwnas.models.builder import build

    data = image_folder(tmp_path / "toy")
    train_network(config(data, epochs=1), tmp_path / "run")
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    space = get_space("cifar32").with_input(resolution=8, num_classes=2)
    for name in ("model.pt", "checkpoint.pt"):
        module = build_module(space, space.parse(TINY))
        load_weights(module, tmp_path / "run" / name, num_classes=2, resolution=8)
        state = module.state_dict()
        assert all(torch.equal(state[k], saved["state_dict"][k]) for k in state)
    module = build(TINY, num_classes=2)
    module.load_state_dict(saved["state_dict"], strict=True)
    # the class count and resolution travel with the weights: deploy refuses another one by name
    ten = get_space("cifar32").with_input(resolution=8, num_classes=10)
    with pytest.raises(HwnasError, match="num_classes=2"):
        load_weights(build_module(ten, ten.parse(TINY)), tmp_path / "run" / "model.pt", num_classes=10, resolution=8)


def test_cli_trains_a_cifar_layout_and_prints_json_and_a_table(tmp_path):
    cifar_layout(tmp_path / "cifar", per_batch=4)
    args = [TINY, "--space", "cifar32", "--data", str(tmp_path / "cifar"), "--dataset", "cifar10", "--epochs", "2",
            "--batch-size", "8", "--resolution", "8", "--warmup-epochs", "0.5", "--workers", "0", "--no-progress"]
    code, out, err = run(*args, "--out", str(tmp_path / "a"), "--json")
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert result["num_classes"] == 10 and result["space"] == "cifar32" and result["epochs"] == 2
    assert result["train_images"] == 20 and result["val_images"] == 4 and result["val_split"] == "test_batch"
    code, out, _ = run(*args, "--out", str(tmp_path / "a"), "--resume")  # finished: nothing left to train
    assert code == 0 and "top-1" in out and out.splitlines()[0].split()[:2] == ["epoch", "lr"]


def test_cli_reads_a_search_run_folder_and_a_zoo_name(tmp_path):
    from hwnas.cli.train_cmd import _resolve_arch

    run_dir = tmp_path / "search"
    run_dir.mkdir()
    (run_dir / "best.txt").write_text(TINY + "\n")
    (run_dir / "config.json").write_text(json.dumps({"space": "cifar32", "resolution": 16, "use_se": False}))
    assert _resolve_arch(str(run_dir), None) == {"space": "cifar32", "structure": TINY, "use_se": False,
                                                 "resolution": 16}
    zoo = _resolve_arch("cifar10_model_size05M", None)
    assert zoo["space"] == "cifar32" and zoo["resolution"] == 32
    (tmp_path / "arch.txt").write_text(TINY)
    assert _resolve_arch(str(tmp_path / "arch.txt"), "cifar32")["resolution"] == 32


# ---------------------------------------------------------------------------------------------- bad input

def _corrupt(folder: Path, name: str, payload: bytes) -> None:
    (folder / name).write_bytes(payload)


class Evil:
    def __reduce__(self):
        return (print, ("pickles build any object",))


@pytest.mark.parametrize("case, words", [
    ("missing", "does not exist; expected an ImageFolder"),
    ("no-val", "lacks val/ (or test/)"),
    ("other-classes", "different classes"),
    ("empty-class", "expected one sub-folder of images"),
    ("cifar-missing", "lacks test_batch"),
    ("cifar-garbage", "not a cifar10 python-pickle batch"),
    ("cifar-object", "unexpected object builtins.print"),
    ("cifar-shape", "expected 'data' of shape (N, 3072)"),
])
def test_bad_data_folders_are_one_line_before_any_work(tmp_path, case, words):
    data, dataset = tmp_path / "data", "imagefolder"
    if case == "no-val":
        image_folder(data)
        (data / "val").rename(data / "other")
    elif case == "other-classes":
        image_folder(data)
        (data / "val" / "light").rename(data / "val" / "bright")
    elif case == "empty-class":
        image_folder(data)
        for png in (data / "train" / "light").glob("*.png"):
            png.unlink()
    elif case.startswith("cifar"):
        dataset = "cifar10"
        cifar_layout(data)
        if case == "cifar-missing":
            (data / "test_batch").unlink()
        elif case == "cifar-garbage":
            _corrupt(data, "data_batch_2", b"not a pickle")
        elif case == "cifar-object":
            _corrupt(data, "data_batch_2", pickle.dumps(Evil()))
        else:
            _corrupt(data, "data_batch_2", pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    code, out, err = run(TINY, "--space", "cifar32", "--data", str(data), "--dataset", dataset,
                         "--out", str(tmp_path / "run"), "--no-progress")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("hwnas: error: ") and words in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option, value, words", [
    ("--epochs", "0", "0 is not in the range 1<=x<=10000"),
    ("--resolution", "4", "4 is not in the range 8<=x<=1024"),
    ("--lr", "0", "0 is not in the range 0<x<=10"),
    ("--warmup-epochs", "100", "warm-up epochs must be in [0, 100)"),
])
def test_bad_numbers_are_one_line_with_the_range(tmp_path, option, value, words):
    image_folder(tmp_path / "toy")
    args = [TINY, "--space", "cifar32", "--data", str(tmp_path / "toy"), "--dataset", "imagefolder",
            "--out", str(tmp_path / "run"), "--no-progress"]
    code, out, err = run(*args, option, value)
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err
    assert not (tmp_path / "run").exists()


def test_an_existing_run_is_never_overwritten_or_resumed_with_other_settings(tmp_path):
    image_folder(tmp_path / "toy")
    args = [TINY, "--space", "cifar32", "--data", str(tmp_path / "toy"), "--dataset", "imagefolder", "--epochs", "1",
            "--batch-size", "8", "--resolution", "8", "--warmup-epochs", "0", "--workers", "0", "--no-progress",
            "--out", str(tmp_path / "run")]
    assert run(*args)[0] == 0
    before = (tmp_path / "run" / "model.pt").read_bytes()
    code, _, err = run(*args)
    assert code == 2 and "already holds a training run; pass --resume" in err
    code, _, err = run(*args, "--resume", "--seed", "1")
    assert code == 2 and "seed 0 -> 1" in err and len(err.strip().splitlines()) == 1
    code, _, err = run("nowhere/arch.txt", "--data", str(tmp_path / "toy"), "--dataset", "imagefolder")
    assert code == 2 and "is not a zoo model name, an architecture string, a file or a search run folder" in err
    assert (tmp_path / "run" / "model.pt").read_bytes() == before
