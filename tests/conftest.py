"""Shared test helpers: tiny real-data configs that train in seconds on 2 CPU cores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def one_thread():
    """Run on one thread: small tensors on a shared 2-core machine lose more to the second thread's
    synchronisation than they gain."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The CUDA tests read Fashion-MNIST where it is installed, else the GPU kit's CIFAR-10 slice (benchmarks/gpu.sh
# prepare writes it; it travels to a GPU machine with the working tree), else the project's CIFAR-10 zip.
GPU_KIT_DATA = REPO / ".gpukit" / "cifar10-kit.zip"
CUDA_SKIP = "needs a CUDA GPU: `benchmarks/gpu.sh` runs the tests marked cuda on a GPU machine"


requires_fmnist = pytest.mark.skipif(
    not (FMNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist is not installed (make data)",
)

# A few hundred real Fashion-MNIST images, a tiny ResNet, fp32 on one thread: fast and bit-reproducible.
TINY = [
    "data.name=fashion-mnist",
    "data.train_subset=256",
    "data.test_subset=128",
    "data.batch_size=32",
    "data.eval_batch_size=128",
    "model.arch=resnet8",
    "optim.epochs=3",
    "optim.lr=0.05",
    "optim.milestones=[2]",
    "runtime.precision=fp32",
    "runtime.device=cpu",
    "runtime.threads=1",
    "runtime.tensorboard=false",
]


def run_mixkd(*args: str, check: bool = True, timeout: float = 300, env_extra: dict | None = None,
              **kw) -> subprocess.CompletedProcess:
    """Run the real `mixkd` CLI in a subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "mixkd", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=kw.pop("cwd", REPO), **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"mixkd {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` skip, with the reason, where torch sees no CUDA GPU."""
    import torch

    if torch.cuda.is_available():
        return
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(pytest.mark.skip(reason=CUDA_SKIP))


@pytest.fixture(scope="session")
def cuda_data() -> list[str]:
    """data.* overrides of the CUDA tests: real images from the first of the data sets that is here."""
    if (FMNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        return ["data.name=fashion-mnist", "data.root=null"]
    for zip_path in (GPU_KIT_DATA, SHARED / "data" / "cifar10-jpg.zip"):
        if zip_path.is_file():
            return ["data.name=imagefolder", f"data.root={zip_path}"]
    pytest.skip("no data for the CUDA tests: install dataset-fashion-mnist or run `benchmarks/gpu.sh prepare`")


@pytest.fixture(autouse=True)
def _reports_not_quiet():
    """Each test starts with progress notes on: an in-process `main([... --quiet])` leaves them off."""
    from mixkd.progress import set_quiet

    set_quiet(False)
    yield


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory) -> dict:
    """A real sweep: 2 seeds of a tiny `train` + one `distill` point whose teacher file is corrupt (the sweep
    tests run it; the report tests of tests/analysis read its run folders)."""
    import yaml

    root = tmp_path_factory.mktemp("sweep")
    bad_teacher = root / "corrupt-teacher.pt"
    bad_teacher.write_bytes(b"not a checkpoint")
    spec = {
        "out": str(root / "out"),
        "overrides": dict(o.split("=", 1) for o in TINY) | {"optim.epochs": 2, "optim.milestones": [1]},
        "grid": {
            "method": {"ce": {"distill.method": "ce"},
                       "kd": {"distill.method": "kd", "teacher.arch": "resnet8",
                              "teacher.checkpoint": str(bad_teacher)}},
            "seed": [0, 1],
        },
        "figures": [{"kind": "heatmap", "file": "heat.png", "rows": "method", "cols": "seed"},
                    {"kind": "table", "file": "table.md", "rows": "method", "cols": "seed"}],
    }
    # YAML-typed override values, as a person would write them in the spec
    spec["overrides"] = {k: yaml.safe_load(str(v)) for k, v in spec["overrides"].items()}
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    first = run_mixkd("sweep", str(path), "--jobs", "2", check=False)
    return {"spec": path, "out": root / "out", "first": first}
