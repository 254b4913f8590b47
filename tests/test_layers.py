"""Imports go one way (issue 23): the toolkit's core never imports the lab built on it (sweeps, studies,
benchmarks) at module level; the lab imports the core. Read from every module's source with `ast`."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SRC = REPO / "src" / "mixkd"
CORE = ("data", "models", "mixing", "distill", "engine", "analysis", "config", "io", "runtime")
LAB = ("sweeps", "studies", "bench")


def module_name(path: Path) -> str:
    """`mixkd.a.b` of src/mixkd/a/b.py (a package's __init__.py is the package)."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import the module runs when it is imported: everywhere but inside
    function bodies (class bodies and `if`/`try` blocks at the top run at import time)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(child, ast.Import):
                found.extend((child.lineno, a.name) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the package, one level up per extra dot
                    up = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*up, base] if base else up)
                found.extend([(child.lineno, base)] + [(child.lineno, f"{base}.{a.name}") for a in child.names])
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == f"mixkd.{p}" or module.startswith(f"mixkd.{p}.") for p in packages)


def core_files() -> list[Path]:
    """Every module of the core: its packages' files and its top-level modules."""
    files = []
    for name in CORE:
        files += sorted((SRC / name).rglob("*.py")) if (SRC / name).is_dir() else [SRC / f"{name}.py"]
    return files


def test_the_layers_exist_where_the_test_looks():
    assert all((SRC / n).is_dir() or (SRC / f"{n}.py").is_file() for n in CORE + LAB)
    assert len(core_files()) > 40


@pytest.mark.parametrize("path", core_files(), ids=lambda p: p.relative_to(SRC).as_posix())
def test_the_core_does_not_import_sweeps_studies_or_bench_at_module_level(path):
    wrong = [f"line {line}: {mod}" for line, mod in module_level_imports(path) if _in(mod, LAB)]
    assert not wrong, f"{path.relative_to(REPO)} imports the lab built on the core: {', '.join(wrong)}"


def test_the_import_reader_sees_relative_and_nested_imports_but_not_function_bodies(tmp_path, monkeypatch):
    pkg = tmp_path / "mixkd" / "engine"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("from ..sweeps import spec\nif True:\n    import mixkd.bench.step\n"
                 "class A:\n    from mixkd.studies import findings\n"
                 "def f():\n    from mixkd.sweeps import runner\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "mixkd")
    mods = [m for _, m in module_level_imports(f)]
    assert {"mixkd.sweeps", "mixkd.sweeps.spec", "mixkd.bench.step", "mixkd.studies.findings"} <= set(mods)
    assert "mixkd.sweeps.runner" not in mods
