"""Write scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes) as an ImageFolder.

    python scripts/digits_imagefolder.py --out data/digits [--size 32] [--val-fraction 0.2] [--seed 0]

gives ``OUT/train/<digit>/<index>.png`` and ``OUT/val/<digit>/<index>.png``:
a stratified, seeded split, so every digit has the same share in both. The
images are upscaled from 8×8 to ``--size`` (32 by default) with bicubic
interpolation: the folder is then a CIFAR-sized dataset that networks of the
cifar32 space train on as they are, their CIFAR-style augmentation (a crop
with 4 pixels of padding at 32) shifts a digit by half an original pixel
rather than by a whole one, and strokes are smooth rather than 4×4 blocks.
``--size 8`` writes the original pixels. Greyscale values 0..16 become
0..255. The data ships inside scikit-learn: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def write(out: Path, size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> dict[str, int]:
    """Write the ImageFolder; return the image count of each split."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    index = np.arange(len(pixels))
    train, val = train_test_split(index, test_size=val_fraction, random_state=seed, stratify=digits.target)
    for split, chosen in (("train", train), ("val", val)):
        for i in chosen:
            folder = out / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(pixels[i])  # 2-D uint8: greyscale ("L")
            if size != image.width:
                image = image.resize((size, size), Image.BICUBIC)
            image.save(folder / f"{i:04d}.png")
    return {"train": len(train), "val": len(val)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="Folder to write train/ and val/ into.")
    parser.add_argument("--size", type=int, default=32, help="Side of the written PNGs in pixels (8: original).")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="Share of each digit held out for val/.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the split.")
    args = parser.parse_args(argv)
    if not 8 <= args.size <= 512:
        parser.error(f"--size must be in [8, 512], got {args.size}")
    if not 0 < args.val_fraction < 1:
        parser.error(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    if (args.out / "train").exists() or (args.out / "val").exists():
        parser.error(f"{args.out} already holds train/ or val/; choose an empty --out")
    counts = write(args.out, args.size, args.val_fraction, args.seed)
    print(f"wrote {counts['train']} train and {counts['val']} val images ({args.size}x{args.size} PNG) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
