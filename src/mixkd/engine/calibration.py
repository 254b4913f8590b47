"""Calibration of a classifier: ECE, MCE (equal-width confidence bins), NLL and Brier score.

Accumulated batch by batch from logits the evaluation already computed, on their device, so a run's
per-epoch test pass gets them for a softmax and a few scatter-adds per batch. Conventions:

- confidence = the top softmax probability; bin b (of B) holds confidences in (b/B, (b+1)/B] (Guo et al. 2017);
- ECE = Σ_b (n_b / n) · |accuracy_b − confidence_b|, MCE = max over non-empty bins of the same gap; both in
  percent, like top-1;
- NLL = mean cross-entropy of the true class (nats);
- Brier = mean over images of Σ_k (p_k − 1[k = y])², the multi-class form (0 = perfect, at most 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_BINS = 15
KEYS = ("ece", "mce", "nll", "brier")


@dataclass
class Calibration:
    """Running sums over batches; `result()` gives the figures of everything seen so far."""

    bins: int = DEFAULT_BINS
    n: int = 0
    _count: Tensor | None = field(default=None, repr=False)
    _conf: Tensor | None = field(default=None, repr=False)
    _correct: Tensor | None = field(default=None, repr=False)
    _nll: Tensor | None = field(default=None, repr=False)
    _brier: Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.bins < 1:
            raise ValueError(f"calibration bins must be >= 1, got {self.bins}")

    @torch.no_grad()
    def update(self, logits: Tensor, y: Tensor) -> None:
        """Add a batch: `logits` (N, K), `y` (N,) class indices."""
        if self._count is None:
            dtype = torch.float32 if logits.device.type == "mps" else torch.float64  # mps has no float64
            zeros = lambda: torch.zeros(self.bins, dtype=dtype, device=logits.device)  # noqa: E731
            self._count, self._conf, self._correct = zeros(), zeros(), zeros()
            self._nll = torch.zeros((), dtype=dtype, device=logits.device)
            self._brier = torch.zeros((), dtype=dtype, device=logits.device)
        dtype = self._count.dtype
        logits = logits.float()
        logp = F.log_softmax(logits, dim=1)
        p = logp.exp()
        conf, pred = p.max(dim=1)
        b = (torch.ceil(conf * self.bins).long() - 1).clamp_(0, self.bins - 1)
        self._count.index_add_(0, b, torch.ones_like(conf, dtype=dtype))
        self._conf.index_add_(0, b, conf.to(dtype))
        self._correct.index_add_(0, b, (pred == y).to(dtype))
        self._nll -= logp.gather(1, y.view(-1, 1)).to(dtype).sum()
        # Σ_k (p_k − e_y)² = Σ_k p_k² − 2 p_y + 1
        self._brier += ((p * p).sum(dim=1) - 2 * p.gather(1, y.view(-1, 1)).squeeze(1) + 1).to(dtype).sum()
        self.n += int(y.numel())

    def result(self) -> dict[str, float]:
        """{'ece', 'mce' (percent), 'nll' (nats), 'brier'}; NaN for each when nothing was seen."""
        if not self.n:
            return {k: float("nan") for k in KEYS}
        count = self._count
        seen = count > 0
        gap = (self._correct[seen] - self._conf[seen]).abs() / count[seen]
        return {"ece": 100.0 * float((gap * count[seen]).sum() / self.n),
                "mce": 100.0 * float(gap.max()),
                "nll": float(self._nll / self.n),
                "brier": float(self._brier / self.n)}

    def reliability(self) -> dict[str, list]:
        """Per bin: its edges, image count, mean confidence and accuracy (None for an empty bin), for diagrams."""
        count = self._count.cpu().tolist() if self._count is not None else [0.0] * self.bins
        conf = self._conf.cpu().tolist() if self._conf is not None else [0.0] * self.bins
        correct = self._correct.cpu().tolist() if self._correct is not None else [0.0] * self.bins
        return {"edges": [b / self.bins for b in range(self.bins + 1)],
                "count": [int(c) for c in count],
                "confidence": [s / c if c else None for s, c in zip(conf, count, strict=True)],
                "accuracy": [s / c if c else None for s, c in zip(correct, count, strict=True)]}


def calibration(logits: Tensor, y: Tensor, bins: int = DEFAULT_BINS) -> dict[str, float]:
    """ECE, MCE (percent), NLL and Brier of one set of logits (see the module docstring)."""
    c = Calibration(bins)
    c.update(logits, y)
    return c.result()


def calibration_summary(rows: list[dict], best_epoch: int) -> dict:
    """summary.json's calibration keys from a run's metrics rows: best_/last_ ece, mce, nll, brier (the best
    epoch's and the last epoch's test pass; None where a row predates calibration) and the bin count."""
    last = rows[-1] if rows else {}
    best = next((r for r in rows if r.get("epoch") == best_epoch), {})
    out: dict = {}
    for when, row in (("best", best), ("last", last)):
        for k in KEYS:
            out[f"{when}_{k}"] = row.get("test_loss" if k == "nll" else k)
    out["calibration_bins"] = DEFAULT_BINS
    return out
