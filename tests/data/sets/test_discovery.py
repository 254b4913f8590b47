"""A dataset is one file: a module saved among mixkd.data.sets is registered, listed and loaded, nothing else edited."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

NEW_DATASET = '''
"""A dataset written for this test, in a file of its own: uint8 images and labels in one .npz."""

from __future__ import annotations

import numpy as np
import torch

from mixkd.config import DataConfig
from mixkd.data.datasets import DATASETS, Source, Split, resolve_root
from mixkd.data.spec import DatasetSpec


@DATASETS.register("tinyset")
def _load_tinyset(cfg: DataConfig) -> Source:
    with np.load(resolve_root(cfg) / "tiny.npz") as z:
        train, test = (Split(torch.from_numpy(z[s + "_y"]), images=torch.from_numpy(z[s + "_x"]))
                       for s in ("train", "test"))
    return Source(DatasetSpec("tinyset", 2, ("even", "odd"), (0.5,) * 3, (0.25,) * 3, 8), train, test)
'''

# a real process: the new module is found by the sets package's own discovery, as if saved in
# src/mixkd/data/sets/ (the test only adds its folder to the package's path instead of writing there)
SCRIPT = """
import json, sys
import mixkd.data.sets as sets
from mixkd.registry import import_all
sets.__path__.append(sys.argv[1])
import_all(sets.__name__, sets.__path__)
from mixkd.cli import main
from mixkd.config import DataConfig
from mixkd.data import build_data
b = build_data(DataConfig(name="tinyset", root=sys.argv[2], batch_size=4, augment=False, download=False))
batches = list(b.test)
print(json.dumps({"classes": b.spec.classes, "train": b.train.num_samples,
                  "y": [v for t in batches for v in t.y.tolist()], "x": [t.x.tolist() for t in batches]}))
sys.exit(main(["datasets"]))
"""


def test_a_dataset_in_one_new_module_is_listed_and_loads(tmp_path: Path) -> None:
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "tinyset.py").write_text(NEW_DATASET)
    rng = np.random.default_rng(0)
    arrays = {"train_x": rng.integers(0, 256, (6, 3, 8, 8), dtype=np.uint8), "train_y": np.arange(6) % 2,
              "test_x": rng.integers(0, 256, (4, 3, 8, 8), dtype=np.uint8), "test_y": np.array([1, 0, 0, 1])}
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "tiny.npz", **arrays)
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "plugin"), str(tmp_path / "data")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, *listing = out.stdout.splitlines()
    got = json.loads(first)
    assert got["classes"] == ["even", "odd"] and got["train"] == 6 and got["y"] == [1, 0, 0, 1]
    want = (arrays["test_x"].astype(np.float32) / 255 - 0.5) / 0.25
    assert np.allclose(np.concatenate([np.array(x, dtype=np.float32) for x in got["x"]]), want, atol=1e-6)
    assert "tinyset" in listing and {"cifar10", "cifar100", "fashion-mnist", "imagefolder"} <= set(listing)
