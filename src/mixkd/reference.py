"""The reference tables of the docs, generated from the code: every config key (docs/configuration.md) and
every KD method (docs/methods.md). `mixkd reference --write` rewrites the blocks between their markers;
tests/test_reference.py fails when a page is behind the code."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from mixkd.config import MixingConfig, RunConfig, mixing_keys_type, section_types
from mixkd.params import Range

# marker name -> the page holding it; the block sits between `<!-- begin: NAME -->` and `<!-- end: NAME -->`
BLOCKS = {"configuration table": "docs/configuration.md", "method sections": "docs/configuration.md",
          "methods table": "docs/methods.md"}


def _kind(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_kind(a) for a in args) + (" or null" if len(args) < len(typing.get_args(tp)) else "")
    if origin is Literal:
        return " \\| ".join(str(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_kind(typing.get_args(tp)[0])}"
    return {int: "integer", float: "number", bool: "true/false", str: "text"}.get(tp, str(tp))


def _value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _bounds(r: Range | None) -> str:
    if r is None:
        return ""
    lo = "" if r.lo is None else f"{'>' if r.open_lo else '≥'} {_value(r.lo)}"
    hi = "" if r.hi is None else f"≤ {_value(r.hi)}"
    return ", ".join(x for x in (lo, hi) if x)


def _rows(cls: type, prefix: str) -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) or f.name == "sections":
            continue
        if f.name == "own" and cls is MixingConfig:  # the mixings' own keys, as their files declare them
            out += _rows(mixing_keys_type(), prefix)
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        doc, bounds = getattr(cls, "docs", {}).get(f.name, ""), _bounds(f.metadata.get("range"))
        out.append(f"| `{prefix}{f.name}` | {_kind(tp)} | {_value(default)} | {bounds} | {doc} |")
    return out


def configuration_table() -> str:
    """Every key of a run's config with its type, default and allowed range (method sections: see below)."""
    lines = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|", *_rows(RunConfig, "")]
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if dataclasses.is_dataclass(hints[f.name]):
            lines += _rows(hints[f.name], f"{f.name}.")
    names = ", ".join(f"`{n}`" for n in section_types())
    lines.append(f"| `distill.<method>.*` | a section per method with parameters: {names} | null | see below | "
                 "null = the method's published default |")
    return "\n".join(lines)


def method_sections_table() -> str:
    """Every method section's keys with their type, published default (what null means) and range."""
    from mixkd.distill import sections

    lines = ["| key | type | published default | allowed |", "|---|---|---|---|"]
    for name, params in sections().items():
        for p in params.values():
            lines.append(f"| `distill.{name}.{p.name}` | {_kind(p.type)} | {_value(p.default)} | {_bounds(p.range)} |")
    return "\n".join(lines)


def method_rows() -> list[dict]:
    """One row per KD method: name, paper, published default settings, needs (`mixkd methods` prints these)."""
    from mixkd.distill import DISTILLERS

    return [{"method": name, "paper": DISTILLERS.get(name).paper, "defaults": DISTILLERS.get(name).default_settings(),
             "needs": DISTILLERS.get(name).needs()} for name in DISTILLERS.names()]


def flat(d: dict, prefix: str = "") -> str:
    """{a: 1, b: {c: 2}} -> "a=1, b.c=2"."""
    parts = []
    for k, v in d.items():
        parts.append(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else f"{prefix}{k}={_value(v)}")
    return ", ".join(parts)


def methods_table() -> str:
    """The KD methods as a markdown table."""
    lines = ["| method | paper | published defaults (what unset keys mean) | needs |", "|---|---|---|---|"]
    for r in method_rows():
        lines.append(f"| `{r['method']}` | {r['paper']} | {flat(r['defaults'])} | "
                     f"{', '.join(r['needs']) or 'nothing (no teacher)'} |")
    return "\n".join(lines)


GENERATORS = {"configuration table": configuration_table, "method sections": method_sections_table,
              "methods table": methods_table}


def _block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- begin: {re.escape(name)} -->\n)(.*?)(<!-- end: {re.escape(name)} -->)", re.S)


def stale_blocks(repo: Path) -> list[str]:
    """The blocks whose page text differs from what the code generates now (or whose markers are missing)."""
    out = []
    for name, page in BLOCKS.items():
        m = _block(name).search((repo / page).read_text(encoding="utf-8"))
        if m is None or m.group(2) != GENERATORS[name]() + "\n":
            out.append(f"{page}: {name}")
    return out


def write_blocks(repo: Path) -> list[str]:
    """Rewrite every block from the code; returns the pages changed."""
    changed = []
    for name, page in BLOCKS.items():
        path = repo / page
        text = path.read_text(encoding="utf-8")
        if _block(name).search(text) is None:
            raise ValueError(f"{page}: no '<!-- begin: {name} -->' ... '<!-- end: {name} -->' markers")
        new = _block(name).sub(lambda m, n=name: m.group(1) + GENERATORS[n]() + "\n" + m.group(3), text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(page)
    return changed
