"""The methods of issue 21 through the real CLI: their learnable parts (ReviewKD's connectors, CTKD's
temperature MLP) resume bit-identically after a SIGKILL, and (slow) each method distils with every mixing."""

from __future__ import annotations

import json

import pytest
import torch

from mixkd.cli import main
from mixkd.engine.rundir import load_checkpoint
from mixkd.mixing import MIXERS
from tests.conftest import TINY, requires_fmnist
from tests.engine.test_resume_methods import _killed_and_resumed, _teacher_args

pytestmark = requires_fmnist

METHODS = {
    "dist": [],
    "kdsvd": [],
    "ctkd": [],
    "reviewkd": ["distill.reviewkd.warmup_epochs=1"],
    "dkd+ctkd-instance": ["distill.method=dkd", "distill.ctkd.mode=instance", "distill.dkd.warmup_epochs=1"],
}


@pytest.mark.slow  # 25 s; resume of method state is covered in the default set by tests/engine/test_resume_methods.py
def test_reviewkd_connectors_and_the_instance_temperature_resume_bit_identical(tmp_path):
    # one run holds both learnable parts: ReviewKD + KD, the KD temperature learned per instance by CTKD
    args = [*TINY, "distill.method=reviewkd", "distill.kd_weight=0.9", "distill.ctkd.mode=instance",
            "distill.ctkd.hidden=16", *_teacher_args(tmp_path)]
    full, killed_rows = _killed_and_resumed(args, tmp_path, "after:last.pt#2")
    assert len(killed_rows) == 2
    state = load_checkpoint(full / "last.pt")["distiller"]
    assert {"ctkd.mlp.0.weight", "review.abfs.0.conv1.0.weight", "review.abfs.0.conv1.1.running_mean"} <= set(state)
    rows = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    temps = [r["ctkd_temperature"] for r in rows]
    assert all(1 < t < 21 for t in temps) and len(set(temps)) == 3  # logged per epoch, and it moves


@pytest.mark.slow
@pytest.mark.parametrize("mixing", MIXERS.names())
@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_distils_with_every_mixing_through_the_cli(method, mixing, tmp_path):
    name = method.split("+")[0]
    args = ["distill", *TINY, "optim.epochs=1", "optim.milestones=[]", f"distill.method={name}",
            *METHODS[method], f"mixing.name={mixing}", "mixing.fraction=0.5", *_teacher_args(tmp_path)[2:],
            "--out", str(tmp_path / "run"), "--quiet"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["distill"]["method"] == name and summary["epochs"] == 1
    assert torch.isfinite(torch.tensor(summary["last_top1"]))
