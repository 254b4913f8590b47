"""Softmax outputs: per-class average distributions, accuracy and entropy (the paper's Fig. 4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mixkd.analysis.loading import EvalData, LoadedModel
from mixkd.distill.norm import LogitNorm
from mixkd.progress import progress


@torch.no_grad()
def collect_logits(model: nn.Module, batches, desc: str = "logits") -> tuple[Tensor, Tensor]:
    """(logits [N, C] float32, labels [N]) over every batch, model in eval mode, on the CPU."""
    model.eval()
    logits, labels = [], []
    for batch in progress(batches, desc, unit="batch"):
        logits.append(model(batch.x).float().cpu())
        labels.append(batch.y.cpu())
    return torch.cat(logits), torch.cat(labels)


def entropy(probs: Tensor) -> Tensor:
    """Shannon entropy (nats) of each row of probabilities (0 log 0 = 0)."""
    return -(probs * probs.clamp_min(1e-30).log()).sum(dim=1)


@dataclass
class LogitStats:
    """One model on one split."""

    model: str
    split: str
    top1: float  # percent
    entropy: float  # mean entropy of the softmax outputs, nats
    confidence: float  # mean max probability
    class_mean: Tensor  # [C, C]: row c = average softmax over the examples labelled c (NaN if none)

    def to_json(self, class_names: Sequence[str], shown: Sequence[int]) -> dict:
        """The scalars and the average distributions of the shown classes."""
        return {"model": self.model, "split": self.split, "top1": self.top1, "mean_entropy": self.entropy,
                "mean_confidence": self.confidence,
                "class_mean_softmax": {class_names[c]: [round(float(p), 6) for p in self.class_mean[c]]
                                       for c in shown}}


def logit_stats(logits: Tensor, labels: Tensor, temperature: float = 1.0) -> dict:
    """Accuracy, mean entropy, mean confidence and per-class average softmax(logits / T)."""
    c = logits.shape[1]
    probs = torch.softmax(logits / temperature, dim=1)
    onehot = torch.nn.functional.one_hot(labels, c).float()
    counts = onehot.sum(0)
    class_mean = (onehot.T @ probs) / counts[:, None]  # 0/0 -> NaN marks classes absent from the split
    return {"top1": 100.0 * float((logits.argmax(1) == labels).float().mean()),
            "entropy": float(entropy(probs).mean()), "confidence": float(probs.max(1).values.mean()),
            "class_mean": class_mean}


def trained_view(cfg) -> tuple[str, LogitNorm] | None:
    """(name, normalisation) through which a distilled run's KD term saw its logits, where that is not a
    temperature: Mix-KD's f/σ (`std`) or z-scores (`zscore`). Such a student's raw softmax looks almost
    uniform (its logits were only ever compared after rescaling), so the analysis shows this view beside it."""
    from mixkd.distill import DISTILLERS, needs_teacher
    from mixkd.distill.norm import build_logit_norm

    if cfg is None or not needs_teacher(cfg.distill.method):
        return None
    d = cfg.distill
    name = d.logit_norm or getattr(DISTILLERS.get(d.method), "default_logit_norm", "none")
    if name == "none":
        return None
    return name, build_logit_norm(name, d.temperature, d.base_temperature)


def analyze_logits(models: Sequence[LoadedModel], data: EvalData, temperature: float = 1.0,
                   splits: Sequence[str] = ("train", "test")) -> list[LogitStats]:
    """LogitStats for every model and split; a model distilled on rescaled logits also gets an entry
    "LABEL (NAME view)" of softmax(rescaled logits) (`trained_view`; --temperature does not apply to it)."""
    out = []
    for split in splits:
        loader = data.loader(split)
        for m in models:
            logits, labels = collect_logits(m.model, loader, f"{m.label} {split}")
            out.append(LogitStats(m.label, split, **logit_stats(logits, labels, temperature)))
            view = trained_view(m.config)
            if view is not None:
                name, norm = view
                out.append(LogitStats(f"{m.label} ({name} view)", split, **logit_stats(norm.soften(logits), labels)))
    return out
