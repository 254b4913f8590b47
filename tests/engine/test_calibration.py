"""ECE, MCE, NLL and Brier against an independent float64 numpy implementation on fixed logits."""

import math

import numpy as np
import pytest
import torch

from mixkd.engine.calibration import Calibration, calibration, calibration_summary
from mixkd.engine.metrics import evaluate


def reference(logits: np.ndarray, y: np.ndarray, bins: int = 15) -> dict:
    """Guo et al.'s loop over bins (lower < confidence <= upper), in float64."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    correct = pred == y
    ece, mce = 0.0, 0.0
    edges = np.linspace(0, 1, bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            gap = abs(correct[inside].mean() - conf[inside].mean())
            ece += inside.mean() * gap
            mce = max(mce, gap)
    onehot = np.eye(p.shape[1])[y]
    return {"ece": 100 * ece, "mce": 100 * mce, "nll": float(-np.log(p[np.arange(len(y)), y]).mean()),
            "brier": float(((p - onehot) ** 2).sum(axis=1).mean())}


def test_matches_the_reference_on_fixed_logits():
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(1000, 10)) * rng.uniform(0.2, 5, size=(1000, 1))).astype(np.float32)
    y = rng.integers(0, 10, size=1000)
    y[:600] = logits[:600].argmax(axis=1)  # 60 % right at least, confidences spread over most bins
    got = calibration(torch.from_numpy(logits), torch.from_numpy(y))
    want = reference(logits.astype(np.float64), y)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-5, abs=1e-6), k


def test_batches_add_up_to_the_whole():
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(size=(300, 7)).astype(np.float32) * 3)
    y = torch.from_numpy(rng.integers(0, 7, size=300))
    c = Calibration(10)
    for a in range(0, 300, 64):
        c.update(logits[a:a + 64], y[a:a + 64])
    whole = calibration(logits, y, bins=10)
    assert c.result() == pytest.approx(whole, rel=1e-9)
    assert sum(c.reliability()["count"]) == 300


def test_empty_bins_count_nothing_and_mce_ignores_them():
    # every confidence is 0.9 (two classes): only one of the 15 bins holds images
    logits = torch.tensor([[math.log(9.0), 0.0]] * 10)
    y = torch.tensor([0] * 7 + [1] * 3)  # 70 % right at 90 % confidence
    got = calibration(logits, y)
    assert got["ece"] == pytest.approx(20.0, abs=1e-4) and got["mce"] == pytest.approx(20.0, abs=1e-4)
    rel = Calibration(15)
    rel.update(logits, y)
    r = rel.reliability()
    assert sum(1 for c in r["count"] if c) == 1 and r["accuracy"].count(None) == 14


def test_perfectly_calibrated_and_uniform_cases():
    # confidence 0.8 and 80 % right: ECE and MCE are zero
    logits = torch.tensor([[math.log(4.0), 0.0]] * 10)
    y = torch.tensor([0] * 8 + [1] * 2)
    got = calibration(logits, y)
    assert got["ece"] == pytest.approx(0.0, abs=1e-4) and got["mce"] == pytest.approx(0.0, abs=1e-4)
    assert got["brier"] == pytest.approx(0.8 * 0.08 + 0.2 * 1.28, rel=1e-6)  # (0.2² + 0.2²) and (0.8² + 0.8²)
    # a uniform prediction over K classes: NLL = log K, Brier = 1 − 1/K
    k = 10
    got = calibration(torch.zeros(50, k), torch.arange(50) % k)
    assert got["nll"] == pytest.approx(math.log(k), rel=1e-6)
    assert got["brier"] == pytest.approx(1 - 1 / k, rel=1e-6)
    # certain and right: everything is zero
    got = calibration(torch.eye(5) * 100, torch.arange(5))
    assert all(v == pytest.approx(0.0, abs=1e-6) for v in got.values())


def test_nothing_seen_is_nan_and_bad_bins_are_refused():
    assert all(math.isnan(v) for v in Calibration().result().values())
    with pytest.raises(ValueError, match="bins must be >= 1"):
        Calibration(0)


def test_evaluate_reports_calibration_and_the_loss_is_the_nll():
    class Batch:
        def __init__(self, x, y):
            self.x, self.y = x, y

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    xs, ys = torch.randn(40, 4), torch.randint(0, 3, (40,))
    out = evaluate(model, [Batch(xs[:25], ys[:25]), Batch(xs[25:], ys[25:])])
    want = calibration(model(xs).detach(), ys)
    assert out["loss"] == pytest.approx(want["nll"], rel=1e-6)
    assert {k: out[k] for k in ("ece", "mce", "brier")} == pytest.approx(
        {k: want[k] for k in ("ece", "mce", "brier")}, rel=1e-6)
    assert "ece" not in evaluate(model, [])


def test_summary_keys_from_metrics_rows():
    rows = [{"epoch": 1, "test_loss": 2.0, "ece": 9.0, "mce": 20.0, "brier": 0.7},
            {"epoch": 2, "test_loss": 1.5, "ece": 5.0, "mce": 10.0, "brier": 0.5},
            {"epoch": 3, "test_loss": 1.6}]  # a row written before calibration existed
    s = calibration_summary(rows, best_epoch=2)
    assert s["best_ece"] == 5.0 and s["best_nll"] == 1.5 and s["last_nll"] == 1.6 and s["last_ece"] is None
    assert s["calibration_bins"] == 15
