"""Tables of finished runs read from their run directories; runs that differ only by seed are averaged."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from mixkd.analysis.loading import unique_labels
from mixkd.analysis.tables import fmt, markdown_table, write_csv, write_text
from mixkd.config import compact_config
from mixkd.errors import MixkdError
from mixkd.mixing import MIXERS

METRICS = ("best_top1", "best_top5", "last_top1", "last_top5", "teacher_top1", "best_ece", "last_ece", "last_nll",
           "last_brier")
_HEADERS = {"best_top1": "best top-1", "best_top5": "best top-5", "last_top1": "last top-1",
            "last_top5": "last top-5", "teacher_top1": "teacher top-1", "best_ece": "best ECE", "last_ece": "last ECE",
            "last_nll": "last NLL", "last_brier": "last Brier"}
_UNITLESS = ("last_nll", "last_brier")  # the others are percent


@dataclass
class Run:
    """A finished run directory."""

    path: Path
    summary: dict
    config: dict

    @property
    def label(self) -> str:
        """The run directory's name."""
        return self.path.name

    def metric(self, key: str) -> float | None:
        """A METRICS value (teacher_top1 from summary.json's teacher entry)."""
        if key == "teacher_top1":
            return (self.summary.get("teacher") or {}).get("top1")
        return self.summary.get(key)


def find_runs(paths: Sequence[str | Path], broken: list[str] | None = None) -> list[Run]:
    """Run directories named directly, or found (summary.json) anywhere under the given folders.

    A run whose summary.json or config.yaml cannot be read is left out and described in `broken` (when given;
    else it is an error), so one damaged folder does not hide the others."""
    runs: list[Run] = []
    for p in map(Path, paths):
        if not p.exists():
            raise MixkdError(f"{p}: no such run directory or folder")
        found = [p] if (p / "summary.json").is_file() else sorted(s.parent for s in p.rglob("summary.json"))
        if not found:
            raise MixkdError(f"{p}: no finished run (summary.json) in it or below it; did the run finish?")
        for d in found:
            try:
                runs.append(_read_run(d))
            except MixkdError as e:
                if broken is None:
                    raise
                broken.append(str(e))
    return list({r.path.resolve(): r for r in runs}.values())


def _read_run(d: Path) -> Run:
    try:
        summary = json.loads((d / "summary.json").read_text())
    except (OSError, ValueError) as e:
        raise MixkdError(f"{d}: summary.json cannot be read ({type(e).__name__}: {str(e)[:120]})") from None
    try:
        cfg = yaml.safe_load((d / "config.yaml").read_text()) if (d / "config.yaml").is_file() else {}
    except (OSError, yaml.YAMLError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MixkdError(f"{d}: config.yaml cannot be read ({first})") from None
    if not isinstance(summary, dict) or not isinstance(cfg or {}, dict):
        raise MixkdError(f"{d}: summary.json or config.yaml does not hold a mapping")
    return Run(d, summary, cfg or {})


def _seedless(cfg: dict) -> str:
    # compacted, so a run whose config.yaml lists every (null) method section, as mixkd wrote before, groups
    # with the same experiment written without them
    return json.dumps({k: v for k, v in compact_config(cfg).items() if k not in ("seed", "name")}, sort_keys=True,
                      default=str)


def group_by_seed(runs: Sequence[Run]) -> list[list[Run]]:
    """Runs whose configs are equal except for the seed (and name) form one group; order of first appearance."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(_seedless(r.config) if r.config else str(r.path), []).append(r)
    return list(groups.values())


def group_label(group: Sequence[Run]) -> str:
    """The runs' common name with any seed part removed, or the first run's name."""
    if len(group) == 1:
        return group[0].label
    names = {re.sub(r"[_-]?seed[-=_]?\d+", "", r.label) for r in group}
    return names.pop() if len(names) == 1 and "" not in names else f"{group[0].label} (+{len(group) - 1})"


def mixing_label(s: dict) -> str:
    """A run's mixing in a report: `none`; mixup as the paper names it (FMU, PMU 10%); any other mixing by its
    name and the share of rows it mixes (cutmix 50% α=1), with its own parameter where it has one."""
    m = s.get("mixing") or {}
    name = m.get("name", "none")
    if name == "none":
        return "none"
    frac = m.get("fraction", 1.0)
    if name == "mixup":
        kind = "FMU" if frac == 1.0 else f"PMU {100 * frac:g}%"
        return f"{kind} α={m.get('alpha', 1.0):g}"
    label = f"{name} {100 * frac:g}% α={m.get('alpha', 1.0):g}"
    # the parameter beyond α and fraction that tells runs of a mixing apart, as the mixing declares it
    key, short = getattr(MIXERS.get(name), "label", (None, None)) if name in MIXERS else (None, None)
    if key and m.get(key) is not None:
        label += f" {short}={m[key]:g}"
    return label


def report_rows(runs: Sequence[Run]) -> list[dict]:
    """One row per seed group: description, run count and mean/std of every metric."""
    rows = []
    groups = group_by_seed(runs)
    labels = unique_labels([g[0].path for g in groups], [group_label(g) for g in groups])
    for g, label in zip(groups, labels, strict=True):
        s = g[0].summary
        row = {"run": label, "model": s.get("model"), "method": s.get("method"),
               "mixing": mixing_label(s), "teacher": (s.get("teacher") or {}).get("arch"),
               "epochs": s.get("epochs"), "seeds": len(g), "dirs": " ".join(str(r.path) for r in g)}
        for k in METRICS:
            vals = [v for v in (r.metric(k) for r in g) if v is not None]
            row[f"{k}_mean"] = float(np.mean(vals)) if vals else None
            row[f"{k}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
        rows.append(row)
    return rows


def _cell(row: dict, key: str) -> str:
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    return fmt(mean) if std is None else f"{mean:.2f} ± {std:.2f}"


def markdown_report(rows: Sequence[dict]) -> str:
    """The Markdown table (accuracies in %, mean ± sample std over seeds where there are several)."""
    header = ["run", "model", "method", "mixing", "teacher", "epochs", "seeds", *(_HEADERS[k] for k in METRICS)]
    body = [[r["run"], r["model"], r["method"], r["mixing"], r["teacher"], r["epochs"], r["seeds"],
             *(_cell(r, k) for k in METRICS)] for r in rows]
    note = ("\nTop-1/top-5 test accuracy (%). *best* = the best epoch's, *last* = the final epoch's; "
            "mean ± sample std over seeds where a row has several. ECE (%, 15 equal-width bins), NLL (nats) and "
            "Brier score of the same test pass; – for runs made before mixkd measured calibration.\n")
    return markdown_table(header, body) + note


def _pair(s: dict) -> str:
    return f"{(s.get('teacher') or {}).get('arch') or '–'}→{s.get('model')}"


# what a pivot table's rows and columns can be: a field of each run's summary.json
PIVOT_KEYS = {
    "method": lambda s: s.get("method"),
    "mixing": mixing_label,
    "model": lambda s: s.get("model"),
    "teacher": lambda s: (s.get("teacher") or {}).get("arch"),
    "pair": _pair,
    "dataset": lambda s: s.get("dataset"),
    "epochs": lambda s: s.get("epochs"),
}


def pivot(runs: Sequence[Run], rows: str, cols: str, value: str = "best_top1") -> dict:
    """`value` of the runs as a rows × cols table (e.g. methods × teacher→student pairs), mean ± sample std
    over the runs of each cell. A cell whose runs differ by more than their seed is marked `mixed`."""
    for key in (rows, cols):
        if key not in PIVOT_KEYS:
            raise MixkdError(f"--rows/--cols: unknown {key!r}; choose from {', '.join(PIVOT_KEYS)}")
    if value not in METRICS:
        raise MixkdError(f"--value: unknown {value!r}; choose from {', '.join(METRICS)}")
    cells: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        key = (str(PIVOT_KEYS[rows](r.summary)), str(PIVOT_KEYS[cols](r.summary)))
        cells.setdefault(key, []).append(r)
    out = {}
    for key, members in cells.items():
        vals = [v for v in (m.metric(value) for m in members) if v is not None]
        out[key] = {"mean": float(np.mean(vals)) if vals else None,
                    "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                    "n": len(vals), "mixed": len(group_by_seed(members)) > 1}
    return {"rows": list(dict.fromkeys(k[0] for k in cells)), "cols": list(dict.fromkeys(k[1] for k in cells)),
            "cells": out, "row_key": rows, "col_key": cols, "value": value}


def markdown_pivot(table: dict) -> str:
    """A pivot table as Markdown: mean ± std (n runs); † marks cells that average different configurations."""
    body = []
    for r in table["rows"]:
        cells = []
        for c in table["cols"]:
            cell = table["cells"].get((r, c))
            if cell is None or cell["mean"] is None:
                cells.append("–")
                continue
            text = fmt(cell["mean"]) if cell["std"] is None else f"{cell['mean']:.2f} ± {cell['std']:.2f}"
            cells.append(f"{text} ({cell['n']})" + (" †" if cell["mixed"] else ""))
        body.append([r, *cells])
    unit = "" if table["value"] in _UNITLESS else " (%)"
    note = (f"\n{_HEADERS.get(table['value'], table['value'])}{unit}, mean ± sample std over the (n) runs of a cell "
            "(seeds); † a cell whose runs differ by more than their seed.\n")
    return markdown_table([f"{table['row_key']} \\ {table['col_key']}", *table["cols"]], body) + note


def write_report(runs: Sequence[Run], out: Path, title: str = "Test accuracy",
                 broken: Sequence[str] = ()) -> dict[str, Path]:
    """report.md, report.csv and curves.png (test top-1 per epoch of every run) in `out`; report.md also lists
    the `broken` runs that were left out."""
    from mixkd.analysis.curves import plot_test_accuracy

    rows = report_rows(runs)
    left_out = "".join(f"\n- left out: {b}" for b in broken)
    md = write_text(out / "report.md", f"# {title}\n\n" + markdown_report(rows)
                    + (f"\n{len(broken)} run(s) could not be read:{left_out}\n" if broken else ""))
    csv = write_csv(out / "report.csv", rows)
    names = unique_labels([r.path for r in runs], [r.label for r in runs])
    png = plot_test_accuracy(dict(zip(names, (r.path for r in runs), strict=True)), out / "curves.png", title=title)
    return {"markdown": md, "csv": csv, "figure": png}
