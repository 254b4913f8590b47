"""A sweep's figures, drawn from the rows of its results.csv: heatmaps, lines and tables of a result column,
averaged over the axes a figure does not show. A figure kind is one registry entry (`FIGURES`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mixkd.analysis.tables import markdown_table, write_text
from mixkd.errors import ConfigError
from mixkd.registry import Registry

if TYPE_CHECKING:
    from mixkd.sweeps.spec import Axis, SweepSpec

# the value columns of results.csv (mixkd.sweeps.collect), which a figure shows
RESULT_COLUMNS = ("best_top1", "best_top5", "best_epoch", "last_top1", "last_top5", "teacher_top1", "wall_time_s")

FigureFn = Callable[[dict, list[dict], "SweepSpec"], Path]
FIGURES: Registry[FigureFn] = Registry("figure kind")
_FIGURE_AXES = {"heatmap": ("rows", "cols"), "lines": ("x", "series"), "table": ("rows", "cols")}


def check_figure(fig: dict, spec: SweepSpec) -> None:
    """A figure entry names a known kind, existing axes, a result column and a file."""
    where = f"{spec.path}: figure {fig.get('file', fig.get('kind'))!r}"
    kind = fig.get("kind")
    if kind not in _FIGURE_AXES:
        raise ConfigError(f"{where}: kind must be one of {', '.join(_FIGURE_AXES)}, got {kind!r}")
    names = [a.name for a in spec.axes]
    for role in (*_FIGURE_AXES[kind], "panels"):
        if role == "panels" and role not in fig:
            continue
        if fig.get(role) not in names:
            raise ConfigError(f"{where}: {role} must name a grid axis ({', '.join(names)}), got {fig.get(role)!r}")
    if fig.get("value", "best_top1") not in RESULT_COLUMNS:
        raise ConfigError(f"{where}: value must be one of {', '.join(RESULT_COLUMNS)}")
    if not fig.get("file"):
        raise ConfigError(f"{where}: give a file name (e.g. file: fig5.png)")


def _axis(spec: SweepSpec, name: str) -> Axis:
    return next(a for a in spec.axes if a.name == name)


def cell_stats(rows: Sequence[dict], value: str, **where: str) -> tuple[float, float, int]:
    """Mean, std and count of `value` over the finished rows matching `where` (NaN mean if none)."""
    vals = [r[value] for r in rows if r.get(value) is not None and all(r[k] == v for k, v in where.items())]
    if not vals:
        return math.nan, math.nan, 0
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, len(vals)


def _panels(fig: dict, spec: SweepSpec) -> list[tuple[str, dict]]:
    if "panels" not in fig:
        return [("", {})]
    a = _axis(spec, fig["panels"])
    return [(f"{a.name} = {label}", {a.name: label}) for label in a.labels]


_VALUE_LABELS = {"best_top1": "best top-1 (%)", "last_top1": "last top-1 (%)", "best_top5": "best top-5 (%)",
                 "last_top5": "last top-5 (%)", "teacher_top1": "teacher top-1 (%)", "best_epoch": "best epoch",
                 "wall_time_s": "wall time (s)"}


@FIGURES.register("heatmap")
def _heatmap(fig: dict, rows: list[dict], spec: SweepSpec) -> Path:
    from mixkd.analysis.plots import plot_heatmaps

    value = fig.get("value", "best_top1")
    r_ax, c_ax = _axis(spec, fig["rows"]), _axis(spec, fig["cols"])
    panels = []
    for title, where in _panels(fig, spec):
        m = np.array([[cell_stats(rows, value, **where, **{r_ax.name: r, c_ax.name: c})[0] for c in c_ax.labels]
                      for r in r_ax.labels])
        panels.append((title, r_ax.labels, c_ax.labels, m))
    return plot_heatmaps(panels, spec.out / fig["file"], xlabel=fig.get("xlabel", c_ax.name),
                         ylabel=fig.get("ylabel", r_ax.name), value_label=_VALUE_LABELS[value],
                         title=fig.get("title"))


@FIGURES.register("lines")
def _lines(fig: dict, rows: list[dict], spec: SweepSpec) -> Path:
    from mixkd.analysis.plots import plot_lines

    value = fig.get("value", "best_top1")
    x_ax, s_ax = _axis(spec, fig["x"]), _axis(spec, fig["series"])
    panels = [(title, x_ax.labels, {s: [cell_stats(rows, value, **where, **{s_ax.name: s, x_ax.name: x})[0]
                                        for x in x_ax.labels] for s in s_ax.labels})
              for title, where in _panels(fig, spec)]
    return plot_lines(panels, spec.out / fig["file"], xlabel=fig.get("xlabel", x_ax.name),
                      value_label=_VALUE_LABELS[value], title=fig.get("title"))


@FIGURES.register("table")
def _table(fig: dict, rows: list[dict], spec: SweepSpec) -> Path:
    value = fig.get("value", "best_top1")
    r_ax, c_ax = _axis(spec, fig["rows"]), _axis(spec, fig["cols"])
    parts = [f"# {fig['title']}\n"] if fig.get("title") else []
    for title, where in _panels(fig, spec):
        body = []
        for r in r_ax.labels:
            cells = []
            for c in c_ax.labels:
                mean, std, n = cell_stats(rows, value, **where, **{r_ax.name: r, c_ax.name: c})
                cells.append("–" if n == 0 else f"{mean:.2f}" if n == 1 else f"{mean:.2f} ± {std:.2f}")
            body.append([r, *cells])
        parts.append((f"\n## {title}\n\n" if title else "\n")
                     + markdown_table([f"{r_ax.name} \\ {c_ax.name}", *c_ax.labels], body))
    parts.append(f"\n{_VALUE_LABELS[value]}; mean ± std (sample) over the other axes where several runs exist.\n")
    return write_text(spec.out / fig["file"], "".join(parts))
