"""The GPU kit's CPU side: `prepare` slices a CIFAR-10-layout zip, `--dry-run` checks everything but the GPU."""

import json
import os
import subprocess
import sys
import zipfile

from tests.conftest import REPO
from tests.imagezip import CIFAR10_CLASSES as CLASSES
from tests.imagezip import write_cifar10_jpg_zip


def _kit(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run([str(REPO / "benchmarks" / "gpu.sh"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_prepare_slices_the_zip_and_the_dry_run_checks_the_kit(tmp_path):
    write_cifar10_jpg_zip(tmp_path / "src.zip", train=5, test=4)
    kit = tmp_path / "kit"
    prep = _kit("prepare", "--zip", str(tmp_path / "src.zip"), "--kit", str(kit), "--per-class", "3")
    assert prep.returncode == 0, prep.stderr
    manifest = json.loads((kit / "manifest.json").read_text())
    assert manifest["train"] == dict.fromkeys(CLASSES, 3) and manifest["test"] == dict.fromkeys(CLASSES, 4)
    with zipfile.ZipFile(kit / "cifar10-kit.zip") as z:
        names = z.namelist()
    assert len(names) == 70 and "cifar10-kit/train/cat/0002.jpg" in names and "cifar10-kit/train/cat/0003.jpg" \
        not in names  # the first images of each class, by name

    dry = _kit("--dry-run", "--kit", str(kit), "--out", str(tmp_path / "res"))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    out = dry.stdout
    assert "ok   kit data is an image tree: 10 classes, 30 train, 40 test images" in out
    assert "ok   findings: the findings specs load (39 runs)" in out and "tests marked cuda collected" in out
    assert "FAIL" not in out and out.rstrip().endswith(f"ready; results would go to {tmp_path / 'res'}")
    assert not (tmp_path / "res").exists()  # a dry run writes nothing


def test_dry_run_without_the_kit_says_how_to_make_it(tmp_path):
    dry = _kit("--dry-run", "--kit", str(tmp_path / "none"))
    assert dry.returncode == 1
    assert "FAIL kit data" in dry.stdout and "run `benchmarks/gpu.sh prepare`" in dry.stdout
    run = _kit("--kit", str(tmp_path / "none"), "--out", str(tmp_path / "res"))
    assert run.returncode == 2 and "benchmarks/gpu.sh prepare" in run.stderr and not (tmp_path / "res").exists()
