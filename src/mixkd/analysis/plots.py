"""Figures of the analyses: feature scatters, average-softmax bars, attack curves, heatmaps, line plots."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mixkd.analysis.features import FeatureResult  # noqa: E402
from mixkd.analysis.logits import LogitStats  # noqa: E402

DPI = 110
ATTACK_NAMES = {"fgsm": "FGSM", "ifgsm": "I-FGSM"}


def save_figure(fig, out_png: Path) -> Path:
    """Save and close a figure (creating the folder)."""
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return out_png


def _short(name: str, n: int = 14) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def plot_feature_scatter(results: Sequence[FeatureResult], class_names: Sequence[str], classes: Sequence[int],
                         out_png: Path, title: str) -> Path:
    """The models' 2-D t-SNE embeddings side by side, coloured by class, V-scores in the panel titles."""
    fig, axes = plt.subplots(1, len(results), figsize=(3.6 * len(results), 3.9), squeeze=False)
    colors = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for ax, r in zip(axes[0], results, strict=True):
        for j, c in enumerate(classes):
            pts = r.embedding[r.labels == c]
            ax.scatter(pts[:, 0], pts[:, 1], s=7, alpha=0.75, color=colors(j % colors.N), label=class_names[c],
                       linewidths=0)
        ax.set_title(f"{r.model}\nV(features) {r.v_raw:.3f} · V(t-SNE) {r.v_tsne:.3f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8, markerscale=2.5,
               frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return save_figure(fig, out_png)


def plot_class_distributions(stats: Sequence[LogitStats], cls: int, class_names: Sequence[str],
                             out_png: Path, temperature: float = 1.0) -> Path:
    """Bars of the average softmax over the examples of class `cls`: rows = splits, columns = models."""
    splits = list(dict.fromkeys(s.split for s in stats))
    models = list(dict.fromkeys(s.model for s in stats))
    by = {(s.split, s.model): s for s in stats}
    c = len(class_names)
    fig, axes = plt.subplots(len(splits), len(models), figsize=(3.4 * len(models), 2.7 * len(splits)),
                             squeeze=False, sharey=True)
    x = np.arange(c)
    for i, split in enumerate(splits):
        for j, model in enumerate(models):
            ax, s = axes[i][j], by[(split, model)]
            probs = s.class_mean[cls].numpy()
            colors = np.where(x == cls, "tab:red", "tab:blue")
            ax.bar(x, probs, color=colors, width=0.8)
            ax.set_ylim(0, 1)
            ax.set_title(f"{model} · {split}\ntop-1 {s.top1:.1f}% · mean entropy {s.entropy:.3f}", fontsize=9)
            if c <= 20:
                ax.set_xticks(x, [_short(n, 10) for n in class_names], rotation=70, fontsize=7)
            else:
                ax.set_xticks(x[:: max(1, c // 10)])
                ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("mean probability")
    t = "" if temperature == 1.0 else f" (T = {temperature:g})"
    fig.suptitle(f"Average softmax{t} over the examples of class '{class_names[cls]}' (red bar); "
                 "top-1 and entropy over the whole split", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_png)


def plot_attack_curves(results: Mapping[str, Mapping[str, Sequence[float]]], eps: Sequence[float],
                       out_png: Path, title: str = "Accuracy under white-box attack") -> Path:
    """Top-1 against epsilon (in 1/255 units): one colour per model, one line style per attack."""
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    styles = ["-", "--", ":", "-."]
    colors = plt.get_cmap("tab10")
    e255 = [e * 255 for e in eps]
    for i, (model, per_attack) in enumerate(results.items()):
        for j, (attack, acc) in enumerate(per_attack.items()):
            ax.plot(e255, acc, styles[j % len(styles)], marker="o", ms=3.5, color=colors(i % 10),
                    label=f"{model} · {ATTACK_NAMES.get(attack, attack)}")
    ax.set_xlabel("ε (pixel intensity, units of 1/255)")
    ax.set_ylabel("top-1 under attack (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=7.5, loc="upper right")
    fig.tight_layout()
    return save_figure(fig, out_png)


def plot_heatmaps(panels: Sequence[tuple[str, Sequence[str], Sequence[str], np.ndarray]], out_png: Path, *,
                  xlabel: str, ylabel: str, value_label: str, title: str | None = None) -> Path:
    """One annotated heatmap per (title, row labels, column labels, matrix) panel, sharing one colour scale."""
    finite = np.concatenate([m[np.isfinite(m)] for *_, m in panels]) if panels else np.array([])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    w = max(3.2, 0.9 * max(len(c) for _, _, c, _ in panels) + 1.6)
    h = max(2.6, 0.55 * max(len(r) for _, r, _, _ in panels) + 1.4)
    fig, axes = plt.subplots(1, len(panels), figsize=(w * len(panels) + 0.8, h), squeeze=False)
    im = None
    for ax, (name, rows, cols, m) in zip(axes[0], panels, strict=True):
        im = ax.imshow(np.ma.masked_invalid(m), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=10)
        mid = (vmin + vmax) / 2
        for (r, c), v in np.ndenumerate(m):
            text = "–" if not np.isfinite(v) else f"{v:.1f}"
            ax.text(c, r, text, ha="center", va="center", fontsize=8,
                    color="black" if np.isfinite(v) and v > mid else "white")
    fig.colorbar(im, ax=list(axes[0]), label=value_label, shrink=0.9)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, out_png)


def plot_lines(panels: Sequence[tuple[str, Sequence[str], Mapping[str, Sequence[float]]]], out_png: Path, *,
               xlabel: str, value_label: str, title: str | None = None) -> Path:
    """One line per series over categorical x values, one panel per (title, x labels, series) entry."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False, sharey=True)
    for ax, (name, xs, series) in zip(axes[0], panels, strict=True):
        for label, ys in series.items():
            ax.plot(range(len(xs)), ys, marker="o", ms=4, label=label)
        ax.set_xticks(range(len(xs)), xs, rotation=20, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(value_label)
    axes[0][-1].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out_png)


def plot_bars(categories: Sequence[str], series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
              out_png: Path, *, ylabel: str, title: str | None = None, ylim: tuple[float, float] | None = None
              ) -> Path:
    """Grouped bars with error bars: one group per category, one bar per series of (means, stds)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(categories) * max(1, len(series)) + 1.5), 3.9))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(categories))
    for i, (name, (means, stds)) in enumerate(series.items()):
        pos = x - 0.4 + width * (i + 0.5)
        m, s = np.asarray(means, dtype=float), np.nan_to_num(np.asarray(stds, dtype=float))
        ax.bar(pos, m, width, yerr=s, capsize=3, label=name, color=plt.get_cmap("tab10")(i % 10))
        for px, v in zip(pos, m, strict=True):
            if np.isfinite(v):
                ax.text(px, v, f"{v:.1f}", ha="center", va="bottom", fontsize=6.5, rotation=90)
    ax.set_xticks(x, categories, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_png)


def plot_mean_curves(panels: Sequence[tuple[str, Mapping[str, tuple[Sequence[float], Sequence[float],
                                                                         Sequence[float]]]]],
                     out_png: Path, *, xlabel: str, ylabel: str, title: str | None = None) -> Path:
    """Mean curves with a ±1 std band: one panel per (title, {label: (xs, means, stds)})."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.9), squeeze=False, sharey=True)
    for ax, (name, curves) in zip(axes[0], panels, strict=True):
        for i, (label, (xs, means, stds)) in enumerate(curves.items()):
            m, s = np.asarray(means, dtype=float), np.nan_to_num(np.asarray(stds, dtype=float))
            color = plt.get_cmap("tab10")(i % 10)
            ax.plot(xs, m, marker="o", ms=2.5, color=color, label=label)
            ax.fill_between(xs, m - s, m + s, color=color, alpha=0.18, linewidth=0)
        ax.set_xlabel(xlabel)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5)
    axes[0][0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out_png)


def plot_reliability(results: Sequence, out_png: Path, title: str) -> Path:
    """Reliability diagrams side by side (one panel per model and split): accuracy per confidence bin against
    the diagonal of perfect calibration, the gap shaded, the share of images per bin below, ECE in the title."""
    fig, axes = plt.subplots(2, len(results), figsize=(3.4 * len(results), 4.4), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    for k, r in enumerate(results):
        ax, hist = axes[0][k], axes[1][k]
        edges = np.asarray(r.bins["edges"])
        width = edges[1] - edges[0]
        centres = edges[:-1] + width / 2
        acc = np.array([np.nan if a is None else a for a in r.bins["accuracy"]])
        conf = np.array([np.nan if c is None else c for c in r.bins["confidence"]])
        seen = ~np.isnan(acc)
        ax.bar(centres[seen], acc[seen], width=width, color="tab:blue", edgecolor="white", label="accuracy")
        low = np.minimum(acc, conf)
        ax.bar(centres[seen], np.abs(conf - acc)[seen], bottom=low[seen], width=width, fill=False, hatch="///",
               edgecolor="tab:red", lw=0.8, label="gap to mean confidence")
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        name = textwrap.fill(f"{r.model} ({r.split})", 30)  # wrapped, not cut: "student-mixkd (std view)" stays whole
        ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{name}\nECE {r.figures['ece']:.2f}%  top-1 {r.top1:.1f}%")
        ax.title.set_fontsize(9)
        share = np.asarray(r.bins["count"], dtype=float) / max(r.n, 1)
        hist.bar(centres, share, width=width, color="tab:gray", edgecolor="white")
        hist.set(xlabel="confidence", ylim=(0, 1))
        if k == 0:
            ax.set_ylabel("accuracy")
            hist.set_ylabel("images")
            ax.legend(loc="upper left", fontsize=7)
    fig.suptitle(title, y=1.04)
    return save_figure(fig, out_png)
