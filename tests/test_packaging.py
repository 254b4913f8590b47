"""An installed mixkd: a wheel built from the repository, installed in a fresh venv outside the checkout,
finds every recipe it ships and runs `mixkd quickstart` from an unrelated folder."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY, requires_fmnist

pytestmark = requires_fmnist

# what a wheel is built from: the files pyproject.toml points at (a copy, so the build leaves the checkout clean)
SOURCES = ("pyproject.toml", "README.md", "src", "configs")
# the distributions mixkd imports at run time, as import names (the fresh venv borrows this environment's)
RUNTIME_IMPORTS = ("torch", "torchvision", "numpy", "yaml", "tqdm", "matplotlib", "sklearn", "PIL")


def _run(*cmd: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel .` of a copy of the repository's sources (build isolation: as a user builds it)."""
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "mixkd"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in SOURCES:
        item = REPO / name
        if item.is_dir():
            shutil.copytree(item, src / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(item, src / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", src, cwd=tmp)
    (built,) = (tmp / "dist").glob("mixkd-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv outside the checkout with the wheel installed; its dependencies are borrowed from this
    environment through a .pth file (installing torch again would take minutes and need the network)."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", root, cwd=root.parent)
    python = root / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel,
         cwd=root.parent)
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                        cwd=root.parent).stdout.strip())
    dirs = {str(Path(importlib.util.find_spec(name).origin).parents[1]) for name in RUNTIME_IMPORTS}
    (purelib / "zz-borrowed-dependencies.pth").write_text("\n".join(sorted(dirs)) + "\n")
    return root


def test_the_wheel_admits_newer_torch_and_offers_tensorboard(wheel) -> None:
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    # no upper bound: users are not held at the torch CI pins (the Makefile installs exactly 2.14.1)
    assert "torch>=2.1" in requires and "torchvision>=0.16" in requires, requires
    assert 'tensorboard>=2.12; extra == "tensorboard"' in requires, requires


def test_the_wheel_ships_every_recipe_and_py_typed(wheel) -> None:
    recipes = {p.relative_to(REPO / "configs").as_posix(): p.read_bytes() for p in (REPO / "configs").rglob("*.yaml")}
    assert len(recipes) > 50
    with zipfile.ZipFile(wheel) as z:
        shipped = {n.removeprefix("mixkd/configs/"): z.read(n) for n in z.namelist()
                   if n.startswith("mixkd/configs/")}
        assert "mixkd/py.typed" in z.namelist()
    assert shipped == recipes  # the same files, byte for byte


def test_installed_mixkd_runs_the_quickstart_outside_a_checkout(venv, tmp_path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    python, mixkd = venv / "bin" / "python", venv / "bin" / "mixkd"
    # where it imports from, and every recipe it ships loads by its README name (configs/...) from a folder
    # without configs/ (the sweep specs are checked byte for byte above; one dry run shows they resolve too)
    probe = _run(python, "-c", "import mixkd.config as c\n"
                 "from mixkd.cli import main\n"
                 "names = [p.relative_to(c.RECIPE_DIR.parent).as_posix() for p in c.RECIPE_DIR.rglob('*.yaml')]\n"
                 "special = lambda n: c.is_sweep_spec(c.read_yaml(n)) or c.is_cohort_plan(c.read_yaml(n))\n"
                 "recipes = [n for n in names if not special(n)]\n"
                 "[c.load_config(n) for n in recipes]\n"
                 "assert main(['sweep', 'configs/paper/figures/fig6-pmu-alpha.yaml', '--dry-run']) == 0\n"
                 "print(c.__file__, c.RECIPE_DIR, len(recipes))", cwd=work)
    module, recipe_dir, recipes = probe.stdout.splitlines()[-1].split()
    assert Path(module).is_relative_to(venv) and Path(recipe_dir).is_relative_to(venv), probe.stdout
    assert int(recipes) > 50
    tiny = [o for o in TINY if not o.startswith(("model.arch=", "optim.epochs=", "optim.milestones="))]
    tiny += ["optim.epochs=1", "optim.milestones=[]", "data.train_subset=128", "data.test_subset=64"]
    out = _run(mixkd, "quickstart", "--out", "qs", "--quiet", *tiny, cwd=work)
    table = (work / "qs" / "results.md").read_text()
    assert out.stdout.startswith(table.strip().splitlines()[0])
    for label, arch in (("teacher (resnet20)", "resnet20"), ("student, no KD", "resnet8"),
                        ("student, KD T=4", "resnet8"), ("student, Mix-KD (PMU 10%)", "resnet8")):
        assert f"| {label} | {arch} |" in table
    assert (work / "qs" / "accuracy.png").stat().st_size > 0
    assert sorted(p.name for p in work.iterdir()) == ["qs"]
