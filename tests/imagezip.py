"""Small real image data made by tests: a zip in the layout of the project's CIFAR-10 JPEG zip (for tests that
must run without ../shared) and a two-class image folder."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_cifar10_jpg_zip(path: Path, train: int, test: int, top: str = "cifar10-jpg") -> Path:
    """`top/{train,test}/<class>/NNNN.jpg`, real 32x32 JPEGs, `train`/`test` images per class."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for split, n in (("train", train), ("test", test)):
            for c, name in enumerate(CIFAR10_CLASSES):
                for i in range(n):
                    buf = io.BytesIO()
                    Image.new("RGB", (32, 32), (25 * c, 7 * i % 256, 128)).save(buf, "JPEG")
                    z.writestr(f"{top}/{split}/{name}/{i:04d}.jpg", buf.getvalue())
    return path


def write_image_tree(root: Path, seed: int) -> None:
    """`root/{train,test}/{cat,dog}/N.png`: 16 train and 4 test random 8x8 images per class, drawn from `seed`."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", 16), ("test", 4)):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
