"""CIFAR-10 and CIFAR-100 from torchvision's python pickles (a folder or the .tar.gz): one loader, two names."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mixkd.config import DataConfig
from mixkd.data.datasets import DATASETS, Source, Split, extract_tar, fix_hint, one_line, resolve_root, staged
from mixkd.data.spec import DatasetSpec
from mixkd.errors import DataError


@dataclass(frozen=True)
class _CifarLayout:
    folder: str
    archive: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    names_key: str
    labels_key: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


_CIFAR = {
    "cifar10": _CifarLayout(
        "cifar-10-batches-py", "cifar-10-python.tar.gz", tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",), "batches.meta", "label_names", "labels",
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
    ),
    "cifar100": _CifarLayout(
        "cifar-100-python", "cifar-100-python.tar.gz", ("train",), ("test",), "meta", "fine_label_names",
        "fine_labels", (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761),
    ),
}  # fmt: skip


def _find_cifar(root: Path, lay: _CifarLayout) -> Path | None:
    need = (*lay.train, *lay.test, lay.meta)
    for d in (root / lay.folder, root):
        if all((d / f).is_file() for f in need):
            return d
    return None


class _ArraysOnly(pickle.Unpickler):
    """CIFAR's pickles hold dicts, lists, strings and NumPy arrays; any other global could run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> type:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR file")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            out = _ArraysOnly(f, encoding="latin1").load()
        if not isinstance(out, dict):
            raise pickle.UnpicklingError(f"a {type(out).__name__}, not a dict")
        return out
    except Exception as e:  # a truncated or foreign file: say which one
        raise DataError(
            f"{path}: not a CIFAR python pickle ({one_line(e)}); delete it and fetch it again"
        ) from None


def _cifar_split(folder: Path, files: tuple[str, ...], key: str) -> Split:
    xs, ys = [], []
    for f in files:
        d = _unpickle(folder / f)
        xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[key], dtype=np.int64))
    return Split(labels=torch.from_numpy(np.concatenate(ys)), images=torch.from_numpy(np.concatenate(xs)))


def _load_cifar(cfg: DataConfig) -> Source:
    lay, root = _CIFAR[cfg.name], resolve_root(cfg)
    folder = _find_cifar(root, lay)
    archive = root / lay.archive
    if folder is None and archive.is_file():
        with staged(root) as stage:
            extract_tar(archive, stage)
            if _find_cifar(stage, lay) is None:
                raise DataError(f"{archive}: does not hold {lay.folder}/ with "
                                f"{', '.join((*lay.train, *lay.test, lay.meta))}; is it the {cfg.name} python archive?")
        folder = _find_cifar(root, lay)
    if folder is None and cfg.download:
        from torchvision import datasets

        tv = datasets.CIFAR10 if cfg.name == "cifar10" else datasets.CIFAR100
        try:
            with staged(root) as stage:
                tv(str(stage), train=True, download=True)
        except DataError:
            raise
        except Exception as e:  # no network, proxy, disk full...: all end the same way
            raise DataError(
                f"{cfg.name}: no data at {root / lay.folder} and the download failed ({one_line(e)}); "
                + fix_hint(cfg.name, root, lay.archive)
            ) from None
        folder = _find_cifar(root, lay)
    if folder is None:
        how = "" if cfg.download else " (data.download=false)"
        raise DataError(
            f"{cfg.name}: no data at {root / lay.folder}{how}; " + fix_hint(cfg.name, root, lay.archive)
        )
    classes = tuple(_unpickle(folder / lay.meta)[lay.names_key])
    spec = DatasetSpec(cfg.name, len(classes), classes, lay.mean, lay.std, 32)
    return Source(
        spec, _cifar_split(folder, lay.train, lay.labels_key), _cifar_split(folder, lay.test, lay.labels_key)
    )


DATASETS.register("cifar10")(_load_cifar)
DATASETS.register("cifar100")(_load_cifar)
