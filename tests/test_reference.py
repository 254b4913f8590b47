"""The docs' reference tables are generated from the code and kept up to date: a key or method added in
code that the pages do not show fails here, with the command that fixes it."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import typing
from pathlib import Path

from mixkd import reference
from mixkd.config import RunConfig, mixing_keys_type, section_types, to_dict
from mixkd.distill import DISTILLERS, sections

REPO = Path(__file__).resolve().parents[1]


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out |= _keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


def test_the_pages_show_what_the_code_generates():
    assert reference.stale_blocks(REPO) == [], "run `mixkd reference --write` in the checkout"


def test_the_tables_name_every_config_key_and_every_method():
    shown = reference.configuration_table() + reference.method_sections_table()
    keys = _keys(to_dict(RunConfig()))  # every key of a run's config, each method section's included
    assert {f"distill.{name}.{key}" for name, params in sections().items() for key in params} <= keys
    assert [k for k in sorted(keys) if f"`{k}`" not in shown] == []
    methods = reference.methods_table()
    assert all(f"| `{name}` |" in methods for name in DISTILLERS.names())


def test_every_config_key_says_what_it_means():
    hints = typing.get_type_hints(RunConfig)
    parts = {f.name: hints[f.name] for f in dataclasses.fields(RunConfig) if dataclasses.is_dataclass(hints[f.name])}
    docs = {"": RunConfig.docs, **{name: dict(cls.docs) for name, cls in parts.items()}}
    docs["mixing"].update(mixing_keys_type().docs)  # the mixings' own keys, documented in the mixings' files
    saved = to_dict(RunConfig())  # every key as a config file writes it
    keys = {"": [k for k in saved if k not in parts],
            **{name: [k for k in saved[name] if k not in section_types()] for name in parts}}
    for name, section_keys in keys.items():
        assert [k for k in section_keys if not docs[name].get(k)] == [], f"{name or 'run'}: keys without a meaning"
        assert set(docs[name]) <= set(section_keys), f"{name or 'run'}: docs name keys it does not have"


def test_check_names_a_stale_page_and_write_brings_it_up_to_date(tmp_path):
    for page in set(reference.BLOCKS.values()):
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / page, tmp_path / page)
    page = tmp_path / "docs/methods.md"
    page.write_text(page.read_text().replace("| `dkd` |", "| `dkd-old` |"))
    run = [sys.executable, "-m", "mixkd.cli", "reference"]
    check = subprocess.run([*run, "--check"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert check.returncode == 1 and "behind the code: docs/methods.md: methods table" in check.stdout
    write = subprocess.run([*run, "--write"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert write.returncode == 0 and "rewrote docs/methods.md" in write.stdout
    assert page.read_text() == (REPO / "docs/methods.md").read_text()
    assert subprocess.run([*run, "--check"], cwd=tmp_path, capture_output=True, timeout=120).returncode == 0
