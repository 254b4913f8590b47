import json
import math

import pytest
import torch

from mixkd.analysis.loading import load_models
from mixkd.analysis.logits import analyze_logits, collect_logits, logit_stats
from mixkd.engine.metrics import evaluate
from tests.conftest import requires_fmnist, run_mixkd

pytestmark = requires_fmnist


def test_softmax_statistics_of_a_trained_model(trained_run):
    (m,), data = load_models([trained_run[0]], device="cpu")
    logits, labels = collect_logits(m.model, data.loader("test"))
    s1, s4 = logit_stats(logits, labels, 1.0), logit_stats(logits, labels, 4.0)
    assert s1["top1"] == pytest.approx(evaluate(m.model, data.loader("test"))["top1"])
    present = torch.bincount(labels, minlength=10) > 0
    assert torch.allclose(s1["class_mean"][present].sum(1), torch.ones(int(present.sum())), atol=1e-5)
    # a trained model puts most mass of each class on that class; temperature flattens the outputs
    assert (s1["class_mean"][present].argmax(1) == present.nonzero().flatten()).float().mean() >= 0.7
    assert 0 < s1["entropy"] < s4["entropy"] <= math.log(10) + 1e-6
    assert s4["confidence"] < s1["confidence"]


def test_train_and_test_rows_are_the_runs(trained_run):
    (m,), data = load_models([trained_run[0]], device="cpu")
    stats = {s.split: s for s in analyze_logits([m], data)}
    assert data.loader("train").num_samples == 1024 and data.loader("test").num_samples == 256
    assert stats["test"].top1 == trained_run[1]["best_top1"]


def test_logits_command(trained_run, untrained_ckpt, tmp_path):
    run_mixkd("analyze", "logits", str(trained_run[0]), str(untrained_ckpt), "--arch", "resnet8",
              "--class", "bag", "--device", "cpu", "--out", str(tmp_path))
    out = json.loads((tmp_path / "logits.json").read_text())
    assert out["class"] == "Bag" and len(out["results"]) == 4
    trained = next(r for r in out["results"] if r["model"] == "resnet8" and r["split"] == "test")
    dist = trained["class_mean_softmax"]["Bag"]
    assert len(dist) == 10 and sum(dist) == pytest.approx(1, abs=1e-4) and max(dist) == dist[8]
    assert (tmp_path / "logits-Bag.png").stat().st_size > 10_000


def test_a_student_distilled_on_rescaled_logits_is_also_shown_through_them(trained_run):
    import dataclasses

    from mixkd.config import load_config
    from mixkd.distill.losses import std_rescale, zscore

    (m,), data = load_models([trained_run[0]], device="cpu")
    assert [s.model for s in analyze_logits([m], data, splits=["test"])] == [m.label]  # trained without KD
    logits, labels = collect_logits(m.model, data.loader("test"))
    for method, norm, view in [("mixkd", "std", std_rescale(logits)), ("kd", "zscore", zscore(logits) / 2.0)]:
        cfg = load_config(None, [f"distill.method={method}", f"distill.logit_norm={norm}",
                                 "distill.base_temperature=2.0"])
        raw, shown = analyze_logits([dataclasses.replace(m, config=cfg)], data, temperature=4.0, splits=["test"])
        assert shown.model == f"{m.label} ({norm} view)" and raw.model == m.label
        want = logit_stats(view, labels)  # the view ignores --temperature: it is what the KD term saw
        assert shown.entropy == pytest.approx(want["entropy"]) and shown.top1 == raw.top1
        assert torch.allclose(shown.class_mean.nan_to_num(), want["class_mean"].nan_to_num())
    cfg = load_config(None, ["distill.method=kd"])  # Hinton's temperature: no second view
    assert len(analyze_logits([dataclasses.replace(m, config=cfg)], data, splits=["test"])) == 1
