"""Cohorts: students trained in one process on one data stream and teacher end bit-identical to each student
trained alone (weights, method state, metrics, best and last epoch), survive kill -9 and fail one at a time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml

from mixkd.cli import main
from mixkd.config import load_config
from mixkd.engine.cohort import Cohort, Member, group_into_cohorts, why_apart
from mixkd.engine.rundir import load_checkpoint
from mixkd.engine.trainer import train
from tests.conftest import REPO, TINY, requires_fmnist
from tests.engine.test_resume import assert_same_run

pytestmark = requires_fmnist

SHORT = [*TINY, "data.train_subset=128", "data.test_subset=64", "optim.epochs=2", "optim.milestones=[1]",
         "teacher.compile=off"]  # with auto, the epochs (which differ here) decide compiling: no cohort
PMU = ["mixing.name=mixup", "mixing.fraction=0.5"]
# the six methods, and students that differ in what a cohort lets them differ in
STUDENTS = {
    "kd": ["distill.method=kd"],
    "dkd": ["distill.method=dkd"],
    "crd": ["distill.method=crd", "distill.crd.nce_k=64"],
    "at": ["distill.method=at", "optim.epochs=3", "optim.milestones=[2]"],  # trains on after the others end
    "fitnet": ["distill.method=fitnet", "optim.lr=0.02"],
    "vid": ["distill.method=vid"],
    "ce": ["distill.method=ce"],  # no teacher
    "kd-resnet14": ["distill.method=kd", "model.arch=resnet14"],
    "fsp": ["distill.method=fsp", "distill.init_epochs=1"],  # an init stage first
}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "resnet8"
    train(load_config(None, [*TINY, "optim.epochs=1", "optim.milestones=[]"]), out, quiet=True)
    return out / "last.pt"


def _configs(teacher, *extra: str, names=STUDENTS) -> dict:
    return {name: load_config(None, [*SHORT, f"teacher.checkpoint={teacher}", *extra, *STUDENTS[name]])
            for name in names}


def assert_same_student(solo, together) -> None:
    assert_same_run(solo, together)
    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(solo / name), load_checkpoint(together / name)
        assert a["distiller"].keys() == b["distiller"].keys()
        for key, value in a["distiller"].items():  # CRD's memory banks, regressors, ...
            assert torch.equal(value, b["distiller"][key]), (name, key)
    assert (solo / "config.yaml").read_text() == (together / "config.yaml").read_text()


# without mixup in the slow set (20 s): partial mixup (pmu50) exercises the same path and the mixer's draws too
@pytest.mark.parametrize("mixing", [pytest.param([], marks=pytest.mark.slow), PMU], ids=["no-mixup", "pmu50"])
def test_every_student_of_a_cohort_is_bit_identical_to_its_solo_run(teacher, tmp_path, mixing):
    cfgs = _configs(teacher, *mixing)
    results = Cohort([Member(cfg, tmp_path / "cohort" / name) for name, cfg in cfgs.items()], quiet=True).fit()
    assert all(isinstance(r, dict) for r in results), results
    for name, cfg in cfgs.items():
        train(cfg, tmp_path / "solo" / name, quiet=True)
        assert_same_student(tmp_path / "solo" / name, tmp_path / "cohort" / name)
    assert json.loads((tmp_path / "cohort" / "at" / "summary.json").read_text())["epochs"] == 3


def test_a_student_that_diverges_stops_alone_and_the_others_are_unaffected(teacher, tmp_path):
    cfgs = _configs(teacher, names=["kd", "vid"])
    cfgs["bad"] = load_config(None, [*SHORT, f"teacher.checkpoint={teacher}", "distill.method=kd", "optim.lr=1e30"])
    results = Cohort([Member(cfg, tmp_path / "cohort" / name) for name, cfg in cfgs.items()], quiet=True).fit()
    bad = results[2]
    assert isinstance(bad, Exception) and "the loss became" in str(bad) and "optim.lr=1e+29" in str(bad)
    assert not (tmp_path / "cohort" / "bad" / "summary.json").exists()
    for name in ("kd", "vid"):
        train(cfgs[name], tmp_path / "solo" / name, quiet=True)
        assert_same_student(tmp_path / "solo" / name, tmp_path / "cohort" / name)


def test_a_killed_cohort_process_resumes_every_student_exactly(teacher, tmp_path):
    names = ["kd", "crd", "at"]
    over = {name: [*SHORT, f"teacher.checkpoint={teacher}", *STUDENTS[name]] for name in names}
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"members": [
        {"out": str(tmp_path / "cohort" / n), "overrides": over[n]} for n in names]}))
    # the 4th checkpoint write is the second epoch of the first student: the others stop one epoch behind
    env = {**os.environ, "MIXKD_TEST_SIGNAL_AT": "after:last.pt#4=SIGKILL"}
    proc = subprocess.run([sys.executable, "-m", "mixkd", "cohort", str(plan), "--quiet"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    epochs = {n: load_checkpoint(tmp_path / "cohort" / n / "last.pt")["epoch"] for n in names}
    assert epochs == {"kd": 2, "crd": 1, "at": 1}
    resume = tmp_path / "resume.yaml"
    resume.write_text(yaml.safe_dump({"members": [{"out": str(tmp_path / "cohort" / n), "resume": True}
                                                  for n in names]}))
    assert main(["cohort", str(resume), "--quiet"]) == 0
    for n in names:
        train(load_config(None, over[n]), tmp_path / "solo" / n, quiet=True)
        assert_same_student(tmp_path / "solo" / n, tmp_path / "cohort" / n)


def test_the_cohort_rule_groups_by_stream_and_teacher_and_says_why_apart(teacher, tmp_path):
    kd, dkd = (load_config(None, [*SHORT, f"teacher.checkpoint={teacher}", f"distill.method={m}"])
               for m in ("kd", "dkd"))
    ce = load_config(None, [*SHORT, "distill.method=ce", "model.arch=resnet14", "optim.lr=0.1"])
    other_seed = load_config(None, [*SHORT, f"teacher.checkpoint={teacher}", "distill.method=kd", "seed=1"])
    mixed = load_config(None, [*SHORT, f"teacher.checkpoint={teacher}", "distill.method=kd", *PMU])
    copy = tmp_path / "copy.pt"
    copy.write_bytes(teacher.read_bytes())  # the same teacher under another name joins
    same_teacher = load_config(None, [*SHORT, f"teacher.checkpoint={copy}", "distill.method=at"])
    torch.save({"model": {k: v + 1 if v.is_floating_point() else v
                          for k, v in torch.load(teacher, weights_only=True)["model"].items()}}, tmp_path / "o.pt")
    other_teacher = load_config(None, [*SHORT, f"teacher.checkpoint={tmp_path / 'o.pt'}", "teacher.arch=resnet8",
                                       "distill.method=kd"])
    cfgs = [kd, dkd, ce, other_seed, mixed, same_teacher, other_teacher]
    assert group_into_cohorts(cfgs) == [[0, 1, 2, 5], [3], [4], [6]]
    assert why_apart([kd, other_seed]) == "they differ in seed"
    assert why_apart([kd, mixed]) == "they differ in mixing"
    assert why_apart([kd, other_teacher]) == "they distil from different teachers (or teacher settings)"
    assert why_apart([kd, dkd, ce, same_teacher]) is None
