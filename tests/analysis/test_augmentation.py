"""Wang et al.'s T. stddev against an independent computation, and `mixkd analyze augmentation` on a real run."""

import json

import numpy as np
import pytest
import torch

from mixkd.analysis.augmentation import teacher_stddev
from mixkd.cli import main
from mixkd.errors import ConfigError
from tests.conftest import requires_fmnist


def test_t_stddev_is_the_class_mean_std_of_group_mean_probabilities():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), size=1003)  # 1003 rows: 10 groups of 100 and 3 rows left out
    groups = [probs[g * 100:(g + 1) * 100].mean(axis=0) for g in range(10)]
    expected = np.mean([np.sqrt(np.mean((np.array(groups)[:, c] - np.mean(np.array(groups)[:, c])) ** 2))
                        for c in range(7)])
    assert teacher_stddev(torch.from_numpy(probs).float(), 100) == pytest.approx(expected, rel=1e-6)
    same = torch.full((400, 5), 0.2)  # every group has the same mean: no spread
    assert teacher_stddev(same, 100) == 0.0
    with pytest.raises(ConfigError, match="fewer than 2 groups; lower --group"):
        teacher_stddev(same, 300)


@requires_fmnist
def test_analyze_augmentation_compares_every_mixing_for_one_teacher(trained_run, tmp_path, capsys):
    run, _ = trained_run
    out = tmp_path / "aug"
    assert main(["analyze", "augmentation", str(run), "--group", "32", "--mixings", "none", "mixup", "cutmix",
                 "cutmix-pick", "confident-mixup", "--fraction", "0.5", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "| teacher | cutmix-pick 50% |" in text.replace(run.name, "teacher")
    results = json.loads((out / "augmentation.json").read_text())["results"]
    assert [r["mixing"] for r in results] == ["none", "mixup 50%", "cutmix 50%", "cutmix-pick 50%",
                                              "confident-mixup 50%"]
    by = {r["mixing"]: r for r in results}
    assert all(r["t_stddev"] > 0 for r in results)
    # mixing softens the teacher: a mixed sample's softmax has more entropy than a clean one's
    assert by["mixup 50%"]["mean_entropy"] > by["none"]["mean_entropy"]
    assert (out / "augmentation.png").stat().st_size > 0


def test_analyze_augmentation_refuses_an_unknown_mixing_before_reading_models(tmp_path, capsys):
    assert main(["analyze", "augmentation", str(tmp_path / "absent"), "--mixings", "cutmx", "--out",
                 str(tmp_path / "o")]) == 2
    assert "unknown mixing method 'cutmx' (did you mean cutmix" in capsys.readouterr().err
