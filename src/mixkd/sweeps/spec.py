"""A sweep's spec: a recipe + a grid of config values -> one point (an ordinary run directory) per combination.

A spec (YAML, paths in it relative to the spec file except run/checkpoint paths, which are relative to the
working directory like every mixkd path):

    recipe: ../cifar100/scenarios/base.yaml      # optional base recipe
    out: runs/paper/figures/fig5                 # where the point directories go
    vars: {teachers: runs/paper/cifar100/teachers}   # placeholders (command line: vars.teachers=DIR)
    overrides:                                   # every point; "{axis}" in a string is that axis's label
      teacher.checkpoint: "{teachers}/{teacher}/best.pt"
    grid:                                        # the product of the axes, in this order
      distill.temperature: [4, 1]                # a config key and its values
      S: {key: model.arch, values: [resnet20, resnet56]}      # the same with a short axis name
      teacher:                                   # named values whose keys move together
        resnet20: {teacher.arch: resnet20, teacher.checkpoint: runs/teachers/resnet20/best.pt}
      scenario:                                  # named recipes as one axis
        T-S: {recipe: ../cifar100/scenarios/T-S-T4.yaml}
    figures:                                     # drawn from results.csv (means over the other axes)
      - {kind: heatmap, file: fig5.png, rows: teacher, cols: S, panels: distill.temperature}
    commands: ["mixkd attack {points} --eps 0 2/255 --out {out}/attack"]   # after every point finished
    launcher:                                    # settings per launcher (docs/cluster.md), chosen by --launcher
      slurm: {partition: gpu, time: "8:00:00", gpus_per_task: 1}

Point directories are named AXIS-LABEL_AXIS-LABEL..., or by the `name:` template ("{set}/{arch}").
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mixkd.config import find_recipe, load_config, parse_override, read_yaml_mapping
from mixkd.errors import ConfigError
from mixkd.sweeps.plots import check_figure


@dataclass(frozen=True)
class Axis:
    """One dimension of the grid: labelled values, each a set of config keys (and maybe a recipe)."""

    name: str
    labels: tuple[str, ...]
    values: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Point:
    """One run of the sweep."""

    name: str
    coords: dict[str, str]
    recipe: Path | None
    overrides: tuple[str, ...]

    def config(self):
        """The validated RunConfig of this point."""
        return load_config(self.recipe, self.overrides)


@dataclass
class SweepSpec:
    """A parsed sweep spec."""

    path: Path
    recipe: Path | None
    out: Path
    overrides: dict[str, Any]
    axes: list[Axis]
    figures: list[dict] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # mixkd command lines run after the grid ({out} filled)
    vars: dict[str, str] = field(default_factory=dict)  # {name} placeholders usable in strings and `name`
    name: str | None = None  # template of the point directory names, e.g. "{set}/{arch}"
    launcher: dict[str, dict] = field(default_factory=dict)  # {launcher name: its settings} (mixkd.sweeps.launchers)

    def points(self, extra: Sequence[str] = ()) -> list[Point]:
        """Every point of the grid, with `extra` KEY=VALUE overrides applied last."""
        pts = []
        for combo in itertools.product(*(range(len(a.labels)) for a in self.axes)):
            coords = {a.name: a.labels[i] for a, i in zip(self.axes, combo, strict=True)}
            env = {**self.vars, "out": str(self.out), **coords}
            keys: dict[str, Any] = dict(self.overrides)
            recipe = self.recipe
            for a, i in zip(self.axes, combo, strict=True):
                for k, v in a.values[i].items():
                    if k == "recipe":
                        recipe = (self.path.parent / v).resolve()
                    else:
                        keys[k] = v
            texts = [f"{k}={yaml_value(fill(v, env, self.path))}" for k, v in keys.items()]
            if self.name:
                name = "/".join(_slug(part) for part in fill(self.name, env, self.path).split("/"))
            else:
                name = "_".join(f"{_slug(a)}-{_slug(label)}" for a, label in coords.items()) or "point"
            pts.append(Point(name, coords, recipe, tuple(texts) + tuple(extra)))
        return pts


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in ".-+" else "-" for ch in str(text)).rstrip("-") or "x"


def yaml_value(v: Any) -> str:
    """A value as override text that parses back to the same value."""
    if isinstance(v, str):
        try:
            same = yaml.safe_load(v) == v
        except yaml.YAMLError:
            same = False
        return v if same else json.dumps(v)
    return json.dumps(v)


def fill(v: Any, env: dict[str, str], spec: Path) -> Any:
    """`v` with its {name} placeholders filled from `env` (a string; other values as they are)."""
    if not isinstance(v, str) or "{" not in v:
        return v
    try:
        return v.format_map(env)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"{spec}: {v!r} names {e}, but the placeholders are: {', '.join(env)}") from None


def _label(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _parse_axis(name: str, raw: Any, spec: Path) -> Axis:
    where = f"{spec}: grid axis {name!r}"
    if isinstance(raw, list):
        key, values, labels = name, raw, None
    elif isinstance(raw, dict) and "key" in raw and "values" in raw:
        key, values, labels = raw["key"], raw["values"], raw.get("labels")
        extra = set(raw) - {"key", "values", "labels"}
        if extra:
            raise ConfigError(f"{where}: unexpected {', '.join(sorted(extra))} (allowed: key, values, labels)")
    elif isinstance(raw, dict):
        bad = [lbl for lbl, v in raw.items() if not isinstance(v, dict) or not v]
        if bad:
            raise ConfigError(f"{where}: value {bad[0]!r} must map config keys (or recipe) to values, e.g. "
                              "{teacher.arch: resnet56, teacher.checkpoint: PATH}")
        return Axis(name, tuple(map(str, raw)), tuple(raw.values()))
    else:
        raise ConfigError(f"{where}: give a list of values, {{key: ..., values: [...]}}, or named values")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: needs a non-empty list of values")
    labels = [_label(v) for v in values] if labels is None else [str(x) for x in labels]
    if len(labels) != len(values):
        raise ConfigError(f"{where}: {len(labels)} labels for {len(values)} values")
    return Axis(name, tuple(labels), tuple({key: v} for v in values))


def load_spec(path: str | Path, out: str | Path | None = None, settings: Sequence[str] = ()) -> SweepSpec:
    """Read and check a sweep spec (the grid, its recipes and figures) before any run starts.

    `settings` are `vars.NAME=VALUE` (a spec variable) and `grid.AXIS=[...]` (that axis's values, or for an
    axis of named values the labels to keep) given on the command line.
    """
    path = find_recipe(path)
    raw = read_yaml_mapping(path, "pass a sweep spec such as those in configs/paper/figures/")
    allowed = {"recipe", "out", "overrides", "grid", "figures", "commands", "vars", "name", "launcher"}
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(allowed))}")
    if not raw.get("grid"):
        raise ConfigError(f"{path}: no grid: add `grid:` with at least one axis")
    recipe = (path.parent / raw["recipe"]).resolve() if raw.get("recipe") else None
    if recipe is not None and not recipe.is_file():
        raise ConfigError(f"{path}: recipe {raw['recipe']} not found (paths are relative to the spec file)")
    overrides = raw.get("overrides") or {}
    if isinstance(overrides, list):  # also accept ["key=value", ...]
        overrides = {t.split("=", 1)[0]: next(iter(_leaves(parse_override(t)))) for t in overrides}
    grid = dict(raw.get("grid") or {})
    variables = {str(k): str(v) for k, v in (raw.get("vars") or {}).items()}
    for text in settings:
        _apply_setting(text, grid, variables, path)
    axes = [_parse_axis(n, v, path) for n, v in grid.items()]
    commands = raw.get("commands") or []
    if not isinstance(commands, list) or not all(isinstance(c, str) and c.split()[:1] == ["mixkd"]
                                                 for c in commands):
        raise ConfigError(f"{path}: commands must be a list of `mixkd ...` command lines")
    launchers = raw.get("launcher") or {}
    if not isinstance(launchers, dict) or not all(isinstance(v, dict) for v in launchers.values()):
        raise ConfigError(f"{path}: launcher must map launcher names to their settings, e.g. "
                          "launcher: {slurm: {partition: gpu, time: '8:00:00'}}")
    spec = SweepSpec(path, recipe, Path(out or raw.get("out") or f"runs/sweeps/{path.stem}"), overrides, axes,
                     list(raw.get("figures") or []), commands, variables, raw.get("name"), launchers)
    names = [p.name for p in spec.points()]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: the `name` template {spec.name!r} gives several points the same directory; "
                          "use every axis in it")
    for a in axes:
        for v in a.values:
            if "recipe" in v and not (path.parent / v["recipe"]).is_file():
                raise ConfigError(f"{path}: axis {a.name!r}: recipe {v['recipe']} not found "
                                  "(paths are relative to the spec file)")
    for fig in spec.figures:
        check_figure(fig, spec)
    return spec


def _apply_setting(text: str, grid: dict, variables: dict, path: Path) -> None:
    """Apply one `vars.NAME=VALUE` or `grid.AXIS=[...]` command-line setting to the raw spec."""
    key, _, value = text.partition("=")
    kind, _, name = key.partition(".")
    if kind == "vars" and name:
        variables[name] = value
        return
    if kind != "grid" or name not in grid:
        raise ConfigError(f"{text!r}: write vars.NAME=VALUE or grid.AXIS=[v1,v2] with AXIS one of: "
                          f"{', '.join(grid)}")
    values = yaml.safe_load(value)
    values = values if isinstance(values, list) else [values]
    axis = grid[name]
    if isinstance(axis, dict) and not ("key" in axis and "values" in axis):
        missing = [v for v in values if str(v) not in axis]
        if missing:
            raise ConfigError(f"{text!r}: axis {name!r} has no value {missing[0]!r}; it has {', '.join(axis)}")
        grid[name] = {str(v): axis[str(v)] for v in values}
    elif isinstance(axis, dict):
        grid[name] = {"key": axis["key"], "values": values}
    else:
        grid[name] = values


def _leaves(tree: dict) -> list:
    out = []
    for v in tree.values():
        out += _leaves(v) if isinstance(v, dict) else [v]
    return out

