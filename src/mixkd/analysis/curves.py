"""Training curves of several runs, read from their metrics.jsonl files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mixkd.analysis.plots import save_figure  # noqa: E402
from mixkd.engine.rundir import RunDir  # noqa: E402


def plot_test_accuracy(run_dirs: dict[str, Path], out_png: Path, title: str = "Test accuracy") -> Path:
    """Plot top-1 test accuracy per epoch for each labelled run directory; returns the PNG path."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, path in run_dirs.items():
        rows = [r for r in RunDir(path).read_metrics() if r.get("stage") != "init"]  # init stages: no test top-1
        if rows:
            ax.plot([r["epoch"] for r in rows], [r["top1"] for r in rows], marker="o", ms=3, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_png)
