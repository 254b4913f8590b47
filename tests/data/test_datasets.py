"""Datasets: Fashion-MNIST (Debian files), fake CIFAR pickles, image trees and zips, missing data, subsets."""

from __future__ import annotations

import functools
import http.server
import os
import pickle
import socket
import tarfile
import threading
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mixkd.config import DataConfig
from mixkd.data import DATASETS, build_data, choose_subset
from mixkd.data import imagefolder as imagefolder_mod
from mixkd.errors import ConfigError, DataError


def _all(loader) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batches = list(loader)
    return tuple(torch.cat([getattr(b, k) for b in batches]) for k in ("x", "y", "index"))


def test_registry_names() -> None:
    assert {"cifar10", "cifar100", "fashion-mnist", "imagefolder"} <= set(DATASETS.names())
    with pytest.raises(ConfigError, match="cifar10"):
        build_data(DataConfig(name="cifar-10"))


# --------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_shapes_and_classes(fashion) -> None:
    spec = fashion.spec
    assert spec.num_classes == 10 and spec.classes[:2] == ("T-shirt/top", "Trouser")
    assert spec.classes[-1] == "Ankle boot" and spec.image_size == 32
    assert fashion.train.num_samples == 60000 and fashion.test.num_samples == 10000
    assert fashion.train_eval.num_samples == 60000
    b = next(iter(fashion.test))
    assert b.x.shape == (512, 3, 32, 32) and b.x.dtype == torch.float32 and b.y.dtype == torch.int64
    pixels = spec.denormalize(b.x)
    # padded 28 -> 32 with zeros, grey replicated to three channels
    assert pixels[:, :, :2].abs().max() < 1e-5 and pixels[:, :, :, 30:].abs().max() < 1e-5
    assert torch.equal(pixels[:, 0], pixels[:, 1]) and torch.equal(pixels[:, 1], pixels[:, 2])
    assert torch.equal(b.index, torch.arange(512)) and set(b.y.tolist()) == set(range(10))


def test_fashion_stats_match_constants(fashion) -> None:
    s = s2 = n = 0.0
    for b in fashion.train_eval:  # running sums: the whole split as floats would be 700 MB
        s, s2, n = s + b.x.double().sum().item(), s2 + b.x.double().square().sum().item(), n + b.x.numel()
    mean = s / n
    assert abs(mean) < 2e-3 and abs((s2 / n - mean**2) ** 0.5 - 1) < 2e-3


def test_fashion_subsets() -> None:
    cfg = DataConfig(name="fashion-mnist", download=False, train_subset=1000, test_subset=30)
    b = build_data(cfg, seed=3)
    assert b.train.num_samples == 1000 and b.test.num_samples == 30
    _, y, idx = _all(b.train_eval)
    assert torch.bincount(y).tolist() == [100] * 10  # totals are taken round-robin over classes
    assert torch.equal(idx, torch.arange(1000))
    again = build_data(cfg, seed=3)
    assert torch.equal(_all(again.train_eval)[0], _all(b.train_eval)[0])
    other = build_data(cfg, seed=4)
    assert not torch.equal(_all(other.train_eval)[0], _all(b.train_eval)[0])

    per = build_data(DataConfig(name="fashion-mnist", download=False, train_subset=7, subset_per_class=True,
                                test_subset=2, batch_size=8))  # fmt: skip
    assert per.train.num_samples == 70 and per.test.num_samples == 20
    assert torch.bincount(_all(per.train_eval)[1]).tolist() == [7] * 10


def test_choose_subset_edges() -> None:
    labels = torch.tensor([0] * 5 + [1] * 2 + [2] * 9)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    per = choose_subset(labels, 3, True, g())
    assert torch.bincount(labels[per]).tolist() == [3, 2, 3]  # a short class gives what it has
    assert torch.equal(choose_subset(labels, 100, False, g()), torch.arange(16))
    assert torch.bincount(labels[choose_subset(labels, 6, False, g())]).tolist() == [2, 2, 2]


def test_fashion_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.root") as e:
        build_data(DataConfig(name="fashion-mnist", root=str(tmp_path / "nope"), download=False))
    assert str(tmp_path / "nope") in str(e.value) and "\n" not in str(e.value)


# --------------------------------------------------------------------------- CIFAR from fake pickles


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_fake_cifar(tmp_path: Path, name: str, fake_cifar) -> None:
    fake = fake_cifar(tmp_path, name)
    b = build_data(
        DataConfig(name=name, root=str(tmp_path), download=False, batch_size=16, eval_batch_size=7)
    )
    assert b.spec.classes == tuple(fake["classes"]) and b.spec.num_classes == len(fake["classes"])
    assert b.spec.mean[0] == (0.4914 if name == "cifar10" else 0.5071)
    assert b.train.num_samples == 50 and b.test.num_samples == 20 and len(b.test) == 3
    x, y, idx = _all(b.test)
    assert y.tolist() == fake["y_test"] and torch.equal(idx, torch.arange(20))
    raw = torch.from_numpy(fake["x_test"]).view(-1, 3, 32, 32)
    assert torch.equal(b.spec.normalize(raw.float() / 255), x)
    x, y, _ = _all(b.train_eval)
    assert y.tolist() == fake["y_train"]
    assert torch.equal(
        b.spec.normalize(torch.from_numpy(fake["x_train"]).view(-1, 3, 32, 32).float() / 255), x
    )


def test_cifar_default_root_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_cifar) -> None:
    fake_cifar(tmp_path / "cifar10", "cifar10")
    monkeypatch.setenv("MIXKD_DATA", str(tmp_path))
    assert build_data(DataConfig(name="cifar10", download=False, batch_size=8)).train.num_samples == 50


def test_cifar_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError) as e:
        build_data(DataConfig(name="cifar100", root=str(tmp_path), download=False))
    msg = str(e.value)
    assert str(tmp_path / "cifar-100-python") in msg and "data.root=" in msg and "MIXKD_DATA" in msg
    assert "cifar-100-python.tar.gz" in msg and "\n" not in msg

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    monkeypatch.setenv("MIXKD_DATA", str(tmp_path / "data"))
    with pytest.raises(DataError, match="download failed") as e:
        build_data(DataConfig(name="cifar10"))
    assert str(tmp_path / "data" / "cifar10") in str(e.value) and "\n" not in str(e.value)


# --------------------------------------------------------------------------- image folders and zips


def _zip_tree(src: Path, dest: Path, top: str = "tiny") -> Path:
    with zipfile.ZipFile(dest, "w") as z:
        for p in sorted(src.rglob("*")):
            z.write(p, f"{top}/{p.relative_to(src).as_posix()}" if top else p.relative_to(src).as_posix())
    return dest


def test_imagefolder_dir_and_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image_tree) -> None:
    arrays = image_tree(tmp_path / "tree")
    cfg = DataConfig(name="imagefolder", root=str(tmp_path / "tree"), batch_size=4, eval_batch_size=5)
    b = build_data(cfg)
    assert b.spec.classes == ("bird", "cat", "dog") and b.spec.image_size == 8
    assert b.train.num_samples == 12 and b.test.num_samples == 6 and b.train.num_views == 162
    x, y, _ = _all(b.train_eval)
    assert y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    want = np.stack([a for c in b.spec.classes for a in arrays["train"][c]])
    pixels = torch.from_numpy(want).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(b.spec.normalize(pixels), x)  # PNG is lossless
    flat = pixels.permute(1, 0, 2, 3).reshape(3, -1)
    assert np.allclose(b.spec.mean, flat.mean(1), atol=1e-5) and np.allclose(
        b.spec.std, flat.std(1, False), atol=1e-5
    )
    _, ty, _ = _all(b.test)
    assert ty.tolist() == [0, 0, 1, 1, 2, 2]

    z = _zip_tree(tmp_path / "tree", tmp_path / "tiny.zip")
    bz = build_data(DataConfig(name="imagefolder", root=str(z), batch_size=4))
    assert bz.spec == b.spec
    assert torch.equal(_all(bz.train_eval)[0], x) and torch.equal(_all(bz.test)[0], _all(b.test)[0])
    assert len(list((tmp_path / "cache" / "imagefolder").glob("tiny.zip-*.npz"))) == 1

    def no_decode(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(imagefolder_mod, "_decode_all", no_decode)
    assert torch.equal(
        _all(build_data(DataConfig(name="imagefolder", root=str(z), batch_size=4)).train_eval)[0], x
    )


def test_imagefolder_zip_without_top_folder_and_test_split(tmp_path: Path, image_tree) -> None:
    image_tree(tmp_path / "tree", classes=("a", "b"), eval_dir="test")
    z = _zip_tree(tmp_path / "tree", tmp_path / "flat.zip", top="")
    b = build_data(DataConfig(name="imagefolder", root=str(z), batch_size=4))
    assert b.spec.classes == ("a", "b") and b.test.num_samples == 4


def test_imagefolder_large_images_use_workers(tmp_path: Path, image_tree) -> None:
    image_tree(tmp_path / "big", classes=("x", "y"), per_class=(2, 1), size=80)
    cfg = DataConfig(
        name="imagefolder", root=str(tmp_path / "big"), batch_size=2, eval_batch_size=2, workers=0
    )
    b = build_data(cfg)
    assert b.spec.image_size == 224 and b.train.num_views == 0 and b.test.num_views == 1
    batch = next(iter(b.train))
    assert batch.x.shape == (2, 3, 224, 224) and batch.view is None and batch.index.dtype == torch.int64
    assert [len(t.y) for t in b.test] == [2]
    with pytest.raises(ConfigError, match="data.loader=workers"):
        build_data(DataConfig(name="imagefolder", root=str(tmp_path / "big"), batch_size=2, loader="device"))


def test_imagefolder_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothing at") as e:
        build_data(DataConfig(name="imagefolder", root=str(tmp_path / "absent.zip")))
    assert str(tmp_path / "absent.zip") in str(e.value) and "data.root" in str(e.value)
    (tmp_path / "flat" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="train/<class>/"):
        build_data(DataConfig(name="imagefolder", root=str(tmp_path / "flat")))


def test_imagefolder_with_one_class_is_refused(tmp_path: Path, image_tree) -> None:
    image_tree(tmp_path / "one", classes=("cat",))
    with pytest.raises(DataError, match=r"has one class \(cat\) in train/; a classifier needs at least two"):
        build_data(DataConfig(name="imagefolder", root=str(tmp_path / "one")))


@pytest.mark.parametrize("damage", ["crc", "inflate"])
def test_a_damaged_zip_member_is_one_line_naming_it(tmp_path: Path, image_tree, damage: str) -> None:
    image_tree(tmp_path / "tree")
    z = tmp_path / "tiny.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as out:
        for p in sorted((tmp_path / "tree").rglob("*.*")):
            out.write(p, f"tiny/{p.relative_to(tmp_path / 'tree').as_posix()}")
    with zipfile.ZipFile(z) as zz:
        info = zz.getinfo("tiny/train/cat/001.png")
    raw = bytearray(z.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # the member's compressed bytes
    if damage == "crc":  # flip the CRC-32 the central directory records (what zipfile checks the bytes against)
        central = raw.find(info.filename.encode(), start + info.compress_size) - 46
        raw[central + 16] ^= 0xFF
    else:  # garble the deflate stream
        raw[start:start + 8] = b"\xff" * 8
    z.write_bytes(bytes(raw))
    with pytest.raises(DataError) as e:
        build_data(DataConfig(name="imagefolder", root=str(z)))
    text = str(e.value)
    assert "\n" not in text and text.startswith(f"{z}:tiny/train/cat/001.png: the zip is damaged"), text


# --------------------------------------------------------------------------- archives and failed downloads


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its content (None for folders): what "nothing on disk changed" compares."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def _cifar_archive(tmp_path: Path, name: str, fake_cifar) -> Path:
    """The real archive layout (`cifar-10-batches-py/...` in a .tar.gz) of fake CIFAR pickles."""
    src = tmp_path / "src"
    fake_cifar(src, name)
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    archive = tmp_path / ("cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz")
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src / folder, arcname=folder)
    return archive


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_archive_is_extracted(tmp_path: Path, name: str, fake_cifar) -> None:
    archive = _cifar_archive(tmp_path, name, fake_cifar)
    root = tmp_path / "data"
    root.mkdir()
    archive.rename(root / archive.name)
    assert build_data(DataConfig(name=name, root=str(root), download=False, batch_size=8)).train.num_samples == 50
    assert sorted(p.name for p in root.iterdir()) == sorted([archive.name, (
        "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")])  # no staging folder left


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not-cifar", "escapes"])
def test_corrupt_cifar_archive_is_one_line_and_touches_nothing(tmp_path: Path, name: str, damage: str,
                                                              fake_cifar) -> None:
    good = _cifar_archive(tmp_path, name, fake_cifar).read_bytes()
    root = tmp_path / "data"
    root.mkdir()
    archive = root / ("cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz")
    (root / "notes.txt").write_text("the user's own file\n")
    if damage == "truncated":
        archive.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        archive.write_bytes(b"<html>404 Not Found</html>\n" * 50)
    elif damage == "empty":
        archive.write_bytes(b"")
    else:
        with tarfile.open(archive, "w:gz") as tf:
            (tmp_path / "x.txt").write_text("x")
            tf.add(tmp_path / "x.txt", arcname="../outside.txt" if damage == "escapes" else "other/x.txt")
    before = _tree(tmp_path)
    with pytest.raises(DataError) as e:
        build_data(DataConfig(name=name, root=str(root), download=True))  # no download: the archive is there
    msg = str(e.value)
    assert str(archive) in msg and "\n" not in msg and e.value.__cause__ is None
    assert {"truncated": "cannot be extracted", "garbage": "cannot be extracted", "empty": "cannot be extracted",
            "not-cifar": "does not hold", "escapes": "refusing to extract"}[damage] in msg
    assert _tree(tmp_path) == before  # no partial extraction, no staging folder


def test_cifar_pickles_cannot_run_code(tmp_path: Path, fake_cifar) -> None:
    class RunsCode:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'code-ran'}",)

    fake_cifar(tmp_path, "cifar100")
    with open(tmp_path / "cifar-100-python" / "meta", "wb") as f:
        pickle.dump({"fine_label_names": RunsCode()}, f, protocol=2)
    with pytest.raises(DataError, match=r"meta: not a CIFAR python pickle .*posix.system is not allowed"):
        build_data(DataConfig(name="cifar100", root=str(tmp_path), download=False))
    assert not (tmp_path / "code-ran").exists()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def bad_server(tmp_path: Path):
    """A real HTTP server on localhost whose files are not what torchvision expects (checksums fail)."""
    www = tmp_path / "www"
    www.mkdir()
    for n in ("cifar-10-python.tar.gz", "cifar-100-python.tar.gz", "train-images-idx3-ubyte.gz",
              "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (www / n).write_bytes(os.urandom(5000))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"  # closed when the socket is: connection refused


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "fashion-mnist"])
@pytest.mark.parametrize("server", ["refused", "bad-files"])
@pytest.mark.parametrize("existing", [False, True])
def test_failed_download_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                                               server: str, existing: bool, request) -> None:
    """A real download from localhost that fails (refused, or files whose checksum is wrong)."""
    from torchvision import datasets

    base = request.getfixturevalue("bad_server") if server == "bad-files" else _closed_port_url()
    if name == "fashion-mnist":
        monkeypatch.setattr(datasets.FashionMNIST, "mirrors", [base])
    else:
        tv = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        monkeypatch.setattr(tv, "url", base + tv.filename)
    disk = tmp_path / "disk"
    disk.mkdir()
    root = disk / "a" / "b" / name  # parents that do not exist yet
    if existing:  # or a root that exists and holds the user's files
        root = disk / "mine"
        root.mkdir()
        (root / "notes.txt").write_text("keep me")
    before = _tree(disk)
    with pytest.raises(DataError, match="download failed") as e:
        build_data(DataConfig(name=name, root=str(root), download=True))
    assert str(root) in str(e.value) and "\n" not in str(e.value)
    assert _tree(disk) == before
