"""What a sweep has produced: results.csv (one row per point) and its figures, and the `--status` table of
where every point stands (read from the run folders, the logs and the launchers' queues)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from mixkd.analysis.tables import write_csv
from mixkd.sweeps.plots import FIGURES, RESULT_COLUMNS
from mixkd.sweeps.points import last_error_line, status
from mixkd.sweeps.spec import SweepSpec, fill


def collect(spec: SweepSpec, extra: Sequence[str] = ()) -> list[dict]:
    """results.csv (one row per point: coordinates, status, accuracies) and the spec's figures."""
    rows = []
    for p in spec.points(extra):
        run = spec.out / p.name
        row: dict[str, Any] = {"point": p.name, **p.coords, "status": status(run)}
        if row["status"] == "done":
            s = json.loads((run / "summary.json").read_text())
            teacher = (s.get("teacher") or {}).get("top1")
            if teacher is None and (run / "teacher.json").is_file():
                teacher = json.loads((run / "teacher.json").read_text()).get("top1")
            row.update({k: s.get(k) for k in RESULT_COLUMNS if k != "teacher_top1"}, teacher_top1=teacher)
        else:
            row.update({k: None for k in RESULT_COLUMNS})
        rows.append(row)
    spec.out.mkdir(parents=True, exist_ok=True)
    write_csv(spec.out / "results.csv", rows)
    for fig in spec.figures:
        fig = {**fig, "title": fill(fig.get("title"), spec.vars, spec.path)}
        FIGURES.get(fig["kind"])(fig, rows, spec)
    return rows



def point_states(spec: SweepSpec, extra: Sequence[str] = ()) -> list[dict]:
    """One row per point: state (finished, running, queued, failed, stopped, not started), where it runs,
    best top-1 of a finished point, and the log (with its last error line) of a failed one.

    Read from the run folders and logs, plus the launchers' queues (squeue where points went to Slurm).
    """
    from mixkd.sweeps.launchers import in_flight
    from mixkd.sweeps.units import EXIT_NOTE

    points = spec.points(extra)
    flight = in_flight(spec.out, points)
    rows = []
    for p in points:
        run, log = spec.out / p.name, spec.out / "logs" / f"{p.name}.log"
        row: dict[str, Any] = {"point": p.name, "state": "not started", "best_top1": None, "where": "",
                               "log": None}
        st = status(run)
        if st == "done":
            row["state"] = "finished"
            row["best_top1"] = json.loads((run / "summary.json").read_text()).get("best_top1")
        elif p.name in flight:
            row["state"], row["where"] = flight[p.name].state, flight[p.name].where
        elif log.is_file():
            lines = [ln for ln in log.read_text(errors="replace").splitlines()
                     if ln.strip() and not ln.startswith(EXIT_NOTE)]
            if lines and lines[-1].startswith("mixkd: stopped by"):
                row["state"], row["where"] = "stopped", "resumed by the next run of the sweep"
            elif st == "partial" and not any(ln.startswith("mixkd: error:") for ln in lines[-1:]):
                row["state"], row["where"] = "stopped", "killed; resumed by the next run of the sweep"
            else:
                row["state"], row["log"], row["where"] = "failed", str(log), last_error_line("\n".join(lines))
        elif st == "partial":
            row["state"], row["where"] = "stopped", "resumed by the next run of the sweep"
        rows.append(row)
    return rows


def status_table(rows: Sequence[dict]) -> str:
    """The `--status` table, then a count per state."""
    width = max([len("point")] + [len(r["point"]) for r in rows])
    lines = [f"{'point':{width}s}  {'state':11s}  {'best top-1':>10s}  details"]
    for r in rows:
        best = f"{r['best_top1']:.2f}" if r["best_top1"] is not None else ""
        detail = f"log: {r['log']}  ({r['where']})" if r["log"] else r["where"]
        lines.append(f"{r['point']:{width}s}  {r['state']:11s}  {best:>10s}  {detail}".rstrip())
    counts = Counter(r["state"] for r in rows)
    order = ("finished", "running", "queued", "failed", "stopped", "not started")
    lines.append(f"{len(rows)} points: " + ", ".join(f"{counts[k]} {k}" for k in order if counts[k]))
    return "\n".join(lines)
