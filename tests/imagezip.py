"""A small zip in the layout of the project's CIFAR-10 JPEG zip, made by tests that must run without ../shared."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

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
