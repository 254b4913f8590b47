"""Image trees as folders and zips: decode cache, large images, missing, malformed and damaged trees."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mixkd.config import DataConfig
from mixkd.data import build_data
from mixkd.data.sets import imagefolder as imagefolder_mod
from mixkd.errors import ConfigError, DataError
from tests.data.test_datasets import _all


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
