"""Calibration of trained models: ECE, MCE, NLL, Brier and the reliability diagram's bins per model and split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from mixkd.analysis.loading import EvalData, LoadedModel
from mixkd.analysis.logits import collect_logits, trained_view
from mixkd.engine.calibration import Calibration


@dataclass
class CalibrationResult:
    """One model on one split."""

    model: str
    split: str
    n: int
    top1: float  # percent
    confidence: float  # mean top probability, percent
    figures: dict  # ece, mce (percent), nll, brier
    bins: dict  # Calibration.reliability(): edges, count, confidence, accuracy per bin

    def to_json(self) -> dict:
        """Everything, for calibration.json."""
        return {"model": self.model, "split": self.split, "n": self.n, "top1": self.top1,
                "mean_confidence": self.confidence, **self.figures, "reliability": self.bins}


def analyze_calibration(models: Sequence[LoadedModel], data: EvalData, splits: Sequence[str],
                        bins: int) -> list[CalibrationResult]:
    """Every model on every split, in that order (the same unaugmented rows as the run's evaluation). A student
    distilled on rescaled logits (Mix-KD's f/σ, z-scores) also gets "LABEL (NAME view)": the calibration of
    softmax(rescaled logits), since its raw softmax, which is what the file it exports computes, is nearly
    uniform (see analysis/logits.py, trained_view)."""
    out = []
    for m in models:
        view = trained_view(m.config)
        for split in splits:
            logits, labels = collect_logits(m.model, data.loader(split), f"{m.label} {split}")
            out.append(_result(m.label, split, logits, labels, bins))
            if view is not None:
                name, norm = view
                out.append(_result(f"{m.label} ({name} view)", split, norm.soften(logits), labels, bins))
    return out


def _result(label: str, split: str, logits: Tensor, labels: Tensor, bins: int) -> CalibrationResult:
    cal = Calibration(bins)
    cal.update(logits, labels)
    probs = logits.softmax(dim=1)
    return CalibrationResult(label, split, len(labels), 100.0 * float((logits.argmax(1) == labels).float().mean()),
                             100.0 * float(probs.max(1).values.mean()), cal.result(), cal.reliability())
