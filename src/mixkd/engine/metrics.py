"""Accuracy metrics and evaluation over a loader."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.engine.calibration import DEFAULT_BINS, Calibration
from mixkd.runtime import autocast

# the calibration figures of a metrics.jsonl row (its test_loss is the NLL)
CALIBRATION_ROW = ("ece", "mce", "brier")


def topk_correct(logits: Tensor, y: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of rows whose label is among the top-k logits, for each k (k capped at the class count)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hit = top == y.view(-1, 1)
    return [int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, precision: str = "fp32",
             channels_last: bool = False, bins: int = DEFAULT_BINS) -> dict[str, float]:
    """Top-1, top-5 (percent), mean cross-entropy and calibration (ece, mce in percent, brier; see
    engine/calibration.py, `bins` equal-width bins) of `model` over `batches` (model left in eval mode)."""
    model.eval()
    n = correct1 = correct5 = 0
    cal = Calibration(bins)
    loss_sum = 0.0
    for batch in batches:
        x = batch.x.contiguous(memory_format=torch.channels_last) if channels_last else batch.x
        with autocast(x.device.type, precision):
            logits = model(x)
        logits = logits.float()
        loss_sum += float(F.cross_entropy(logits, batch.y, reduction="sum"))
        c1, c5 = topk_correct(logits, batch.y)
        correct1 += c1
        correct5 += c5
        cal.update(logits, batch.y)
        n += batch.y.numel()
    n = max(n, 1)
    out = {"top1": 100.0 * correct1 / n, "top5": 100.0 * correct5 / n, "loss": loss_sum / n}
    if cal.n:  # the loss is the NLL; an empty split has no calibration (NaN would read as a diverged run)
        out.update({k: v for k, v in cal.result().items() if k != "nll"})
    return out
