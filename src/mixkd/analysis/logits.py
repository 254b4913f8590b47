"""Softmax outputs: per-class average distributions, accuracy and entropy (the paper's Fig. 4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mixkd.analysis.loading import EvalData, LoadedModel
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


def analyze_logits(models: Sequence[LoadedModel], data: EvalData, temperature: float = 1.0,
                   splits: Sequence[str] = ("train", "test")) -> list[LogitStats]:
    """LogitStats for every model and split."""
    out = []
    for split in splits:
        loader = data.loader(split)
        for m in models:
            stats = logit_stats(*collect_logits(m.model, loader, f"{m.label} {split}"), temperature)
            out.append(LogitStats(m.label, split, **stats))
    return out
