"""Exact resume of distillers that own state: a SIGKILLed CRD run (trainable embeddings, memory banks, a
normalising constant fixed at its first step) and an AB run killed inside its init stage both end
bit-identical to runs that were never interrupted."""

import json
import signal

import torch

from mixkd.cli import main
from mixkd.engine.rundir import load_checkpoint
from mixkd.models import build_model
from tests.conftest import TINY, requires_fmnist
from tests.engine.conftest import start

pytestmark = requires_fmnist


def _teacher_args(tmp_path) -> list[str]:
    """A resnet14 saved as a community-format checkpoint, and the overrides that distil from it with PMU."""
    torch.manual_seed(0)
    teacher = tmp_path / "teacher.pth"
    torch.save({"model": build_model("resnet14", 10).state_dict()}, teacher)
    return ["mixing.name=mixup", "mixing.fraction=0.5", f"teacher.checkpoint={teacher}", "teacher.arch=resnet14"]


def _rows(run, ignore: tuple[str, ...] = ()) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "second" not in k and k != "images_per_s" and k not in ignore}
            for r in rows]


def _killed_and_resumed(args: list[str], tmp_path, kill_at: str, ignore: tuple[str, ...] = ()):
    """(uninterrupted run, the rows the killed run had) of `mixkd distill ARGS`, after checking that the killed
    run, resumed, ends bit-identical to the uninterrupted one; metrics columns in `ignore` are not compared."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    for out, where in ((full, None), (cut, kill_at)):
        proc = start(out, "distill", *args, "--quiet", kill_at=where)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == (0 if where is None else -signal.SIGKILL), err[-2000:]
    killed_rows = _rows(cut)
    assert main(["distill", "--resume", str(cut), "--quiet"]) == 0
    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(full / name), load_checkpoint(cut / name)
        assert a["epoch"] == b["epoch"] and a["init_epoch"] == b["init_epoch"], name
        for part in ("model", "distiller"):
            assert a[part].keys() == b[part].keys()
            for key, value in a[part].items():
                assert torch.equal(value, b[part][key]), (name, part, key)
    assert _rows(full, ignore) == _rows(cut, ignore)
    return full, killed_rows


def test_crd_with_partial_mixup_resumes_bit_identical(tmp_path):
    args = [*TINY, "distill.method=crd", "distill.crd.nce_k=256", *_teacher_args(tmp_path)]
    full, killed_rows = _killed_and_resumed(args, tmp_path, "after:last.pt#2")
    assert len(killed_rows) == 2
    state = load_checkpoint(full / "last.pt")
    assert {"memory_s", "memory_t", "z", "embed_s.linear.weight"} <= set(state["distiller"])
    assert float(state["distiller"]["z"][0]) > 0  # fixed at the first step, and carried over
    assert len(state["optimizer"]["param_groups"]) == 2  # the embeddings train with the student


def test_an_init_stage_method_resumes_across_the_stage_boundary(tmp_path):
    args = [*TINY, "optim.epochs=2", "optim.milestones=[1]", "distill.method=ab", "distill.init_epochs=2",
            *_teacher_args(tmp_path)]
    full, killed_rows = _killed_and_resumed(args, tmp_path, "after:last.pt#1")  # inside the init stage
    assert [r["stage"] for r in killed_rows] == ["init"]
    rows = _rows(full)
    assert [(r.get("stage", "main"), r["epoch"]) for r in rows] == [("init", 1), ("init", 2), ("main", 1), ("main", 2)]
    assert "top1" not in rows[0] and "train_ab_init" in rows[0]
    summary = json.loads((full / "summary.json").read_text())
    assert summary["init_epochs"] == 2 and summary["epochs"] == 2 and summary["best_epoch"] in (1, 2)
    assert summary["last_top1"] == rows[-1]["top1"]
    assert load_checkpoint(full / "best.pt")["init_epoch"] == 2  # best.pt only ever holds a main-stage epoch


def test_a_run_with_the_memory_cache_resumes_bit_identical_but_its_hit_rate(tmp_path):
    # the in-memory teacher cache starts empty in the resumed process: every output is the same (the cache is
    # exact), only the logged hit rate may differ, as docs/run-folders.md says
    args = [*TINY, "distill.method=kd", "teacher.cache=memory", *_teacher_args(tmp_path)]
    full, killed_rows = _killed_and_resumed(args, tmp_path, "after:last.pt#2", ignore=("teacher_cache_hit_rate",))
    assert len(killed_rows) == 2
    assert all("teacher_cache_hit_rate" in row for row in _rows(full))
