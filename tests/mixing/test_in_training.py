"""Every mixing in real distillations on real Fashion-MNIST images: the exact teacher cache serves its unmixed
rows bit-identically to a live teacher, DKD and CRD train on CutMix rows, a teacher-guided mixing needs a teacher
(one line), trains in a cohort exactly as alone, and a killed run resumes bit-identically."""

import json
import signal

import pytest
import torch

from mixkd.cli import main
from mixkd.config import load_config
from mixkd.engine.cohort import Cohort, Member, group_into_cohorts
from mixkd.engine.rundir import load_checkpoint
from mixkd.engine.trainer import train
from mixkd.errors import ConfigError
from tests.conftest import TINY, requires_fmnist
from tests.engine.conftest import start
from tests.engine.test_cohort import assert_same_student

pytestmark = requires_fmnist

SHORT = [*TINY, "data.train_subset=128", "data.test_subset=64", "optim.epochs=2", "optim.milestones=[1]",
         "teacher.compile=off"]
NEW = ["cutmix", "mixup-cutmix", "cutmix-pick", "confident-mixup"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "resnet8"
    train(load_config(None, [*TINY, "optim.epochs=1", "optim.milestones=[]"]), out, quiet=True)
    return out / "last.pt"


def _args(teacher, mixing: str, *extra: str) -> list[str]:
    return [*SHORT, f"teacher.checkpoint={teacher}", f"mixing.name={mixing}", "mixing.fraction=0.5", *extra]


def _rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _same_weights(a, b) -> bool:
    wa, wb = load_checkpoint(a / "last.pt")["model"], load_checkpoint(b / "last.pt")["model"]
    return all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("mixing", NEW)
def test_the_exact_cache_serves_unmixed_rows_of_every_mixing_as_a_live_teacher_would(teacher, tmp_path, mixing):
    common = _args(teacher, mixing, "distill.method=kd", "data.augment=false", "teacher.precision=fp32")
    train(load_config(None, [*common, "teacher.cache=memory"]), tmp_path / "cached", quiet=True)
    train(load_config(None, [*common, "teacher.cache=off"]), tmp_path / "live", quiet=True)
    rates = [r["teacher_cache_hit_rate"] for r in _rows(tmp_path / "cached")]
    assert rates[0] == 0.0 and rates[1] > 0.2  # epoch 2: unmixed rows also unmixed in epoch 1 hit
    assert _same_weights(tmp_path / "cached", tmp_path / "live")
    summary = json.loads((tmp_path / "cached" / "summary.json").read_text())
    assert summary["mixing"]["name"] == mixing and summary["mixing"]["fraction"] == 0.5


@pytest.mark.parametrize("method", [["distill.method=dkd"], ["distill.method=crd", "distill.crd.nce_k=64"]],
                         ids=["dkd", "crd"])
def test_dkd_and_crd_distil_on_cutmix_rows(teacher, tmp_path, method):
    summary = train(load_config(None, _args(teacher, "cutmix", *method, "optim.epochs=1", "optim.milestones=[]")),
                    tmp_path / "run", quiet=True)
    row = _rows(tmp_path / "run")[0]
    assert summary["best_top1"] > 0 and all(v == v for k, v in row.items() if isinstance(v, float))


def test_a_teacher_guided_mixing_of_a_student_without_teacher_is_one_line_before_any_work(tmp_path, capsys):
    assert main(["train", *SHORT, "mixing.name=cutmix-pick", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mixkd: error: mixing.name=cutmix-pick (it picks rows by the teacher's outputs) "
                              "needs a teacher: pass --teacher PATH")
    assert not (tmp_path / "run").exists()


def test_a_cohort_under_a_teacher_guided_mixing_trains_each_student_as_alone(teacher, tmp_path):
    cfgs = {name: load_config(None, _args(teacher, "cutmix-pick", *extra))
            for name, extra in {"kd": ["distill.method=kd"], "ce": ["distill.method=ce"],
                                "at": ["distill.method=at"]}.items()}
    assert group_into_cohorts(list(cfgs.values())) == [[0, 1, 2]]  # the ce student reads the teacher too
    results = Cohort([Member(c, tmp_path / "cohort" / n) for n, c in cfgs.items()], quiet=True).fit()
    assert all(isinstance(r, dict) for r in results), results
    for name, cfg in cfgs.items():
        train(cfg, tmp_path / "solo" / name, quiet=True)
        assert_same_student(tmp_path / "solo" / name, tmp_path / "cohort" / name)


def _killed_and_resumed(tmp_path, args):
    full, cut = tmp_path / "full", tmp_path / "cut"
    for out, where in ((full, None), (cut, "after:last.pt#1")):
        proc = start(out, "distill", *args, "--quiet", kill_at=where)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == (0 if where is None else -signal.SIGKILL), err[-2000:]
    assert main(["distill", "--resume", str(cut), "--quiet"]) == 0
    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(full / name), load_checkpoint(cut / name)
        assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items()), name


@pytest.mark.parametrize("mixing", [
    "cutmix-pick", *(pytest.param(m, marks=pytest.mark.slow) for m in ("cutmix", "mixup-cutmix", "confident-mixup"))])
def test_a_killed_run_resumes_bit_identical_under_every_mixing(teacher, tmp_path, mixing):
    _killed_and_resumed(tmp_path, _args(teacher, mixing, "distill.method=kd"))


def test_a_teacher_guided_mixing_refuses_a_missing_teacher_file(tmp_path):
    cfg = load_config(None, [*SHORT, "mixing.name=confident-mixup", f"teacher.checkpoint={tmp_path / 'no.pt'}"])
    with pytest.raises(ConfigError, match="teacher.checkpoint: no file at"):
        train(cfg, tmp_path / "run", quiet=True)
