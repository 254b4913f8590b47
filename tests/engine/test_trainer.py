import json

import pytest
import torch

from mixkd.cli import main
from mixkd.config import load_config
from mixkd.engine.rundir import load_checkpoint
from mixkd.engine.trainer import train
from mixkd.errors import CheckpointError, MixkdError
from tests.conftest import TINY, requires_fmnist

pytestmark = requires_fmnist


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    summary = train(load_config(None, TINY), out, quiet=True)
    return out, summary


def test_run_directory_is_complete(finished_run):
    out, summary = finished_run
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "last.pt", "best.pt"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for key in ("lr", "train_loss", "train_top1", "test_loss", "top1", "top5", "seconds"):
        assert all(key in r for r in rows), key
    assert rows[2]["lr"] == pytest.approx(0.005)  # x0.1 after the milestone
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for key in ("best_top1", "best_top5", "best_epoch", "last_top1", "last_top5", "epochs", "wall_time_s",
                "model", "params"):
        assert key in on_disk, key
    assert on_disk["last_top1"] == rows[-1]["top1"]
    assert on_disk["best_top1"] == max(r["top1"] for r in rows)
    # better than chance (10 classes) after 3 short epochs on real data
    assert on_disk["best_top1"] > 30
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 3 and ckpt["arch"] == "resnet8" and set(ckpt["rng"]) >= {"torch", "numpy", "python"}


def test_saved_config_reruns_the_same_experiment(finished_run, tmp_path):
    out, summary = finished_run
    again = train(load_config(out / "config.yaml"), tmp_path / "again", quiet=True)
    assert again["best_top1"] == summary["best_top1"] and again["last_top1"] == summary["last_top1"]
    a = load_checkpoint(out / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "again" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_run_is_not_overwritten(finished_run):
    out, _ = finished_run
    before = (out / "last.pt").read_bytes()
    with pytest.raises(MixkdError, match="already holds a finished run; pick another --out"):
        train(load_config(None, TINY), out, quiet=True)
    assert (out / "last.pt").read_bytes() == before


def test_corrupt_checkpoint_gives_a_clear_error(finished_run, tmp_path):
    out, _ = finished_run
    data = (out / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "last.pt")


def test_a_bad_teacher_file_fails_before_the_data_is_prepared(finished_run, tmp_path, monkeypatch):
    out, _ = finished_run
    data = (out / "last.pt").read_bytes()
    (tmp_path / "teacher.pt").write_bytes(data[: len(data) // 2])

    def no_data(*args, **kwargs):
        raise AssertionError("the data was prepared before the teacher's file was read")

    monkeypatch.setattr("mixkd.engine.assembly.build_data", no_data)
    cfg = load_config(None, TINY + ["distill.method=kd", f"teacher.checkpoint={tmp_path / 'teacher.pt'}"])
    with pytest.raises(CheckpointError, match="teacher.pt: cannot be read, truncated"):
        train(cfg, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def _teacher_variant(finished_run, tmp_path, change) -> str:
    out, _ = finished_run
    state = torch.load(out / "best.pt", weights_only=True)
    change(state)
    torch.save(state, tmp_path / "teacher.pt")
    return str(tmp_path / "teacher.pt")


def _nan_weight(state) -> None:
    state["model"]["fc.weight"][0, 0] = float("nan")


def _other_classes(state) -> None:
    state["dataset"] = {**state["dataset"], "name": "imagefolder",
                        "classes": ["cat", *state["dataset"]["classes"][1:]]}


@pytest.mark.parametrize("change, says", [
    (_nan_weight, "1 weight tensors hold NaN or infinity (the first: fc.weight), so it cannot teach"),
    (_other_classes, "was trained on imagefolder whose class 0 is 'cat', but class 0 of fashion-mnist here is "
                     "'T-shirt/top': its outputs would teach the wrong classes"),
], ids=["nan-weights", "other-dataset"])
def test_a_teacher_that_cannot_teach_is_refused_before_anything_is_written(finished_run, tmp_path, capsys, change,
                                                                           says):
    teacher = _teacher_variant(finished_run, tmp_path, change)
    run = tmp_path / "run"
    assert main(["distill", *TINY, "distill.method=kd", "--teacher", teacher, "--out", str(run), "--quiet"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and says in err[0], err
    assert not run.exists()


def _strict_rows(run) -> list[dict]:
    strict = {"parse_constant": lambda c: pytest.fail(f"{c} in metrics.jsonl")}
    return [json.loads(line, **strict) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _finite(path) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in load_checkpoint(path)["model"].values() if t.is_floating_point())


def test_a_loss_that_turns_nan_writes_nothing_and_a_lower_lr_continues(killed, capsys):
    run = killed("epoch-1")  # a real run SIGKILLed after its first epoch
    config = (run / "config.yaml").read_text()
    assert main(["train", "--resume", str(run), "optim.lr=1.0e+30", "--quiet"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "at epoch 2" in err[0]
    assert "nothing of epoch 2 was written (last.pt keeps epoch 1)" in err[0]
    assert f"`mixkd train --resume {run} optim.lr=1e+29`" in err[0] and "fp32" not in err[0]  # the run is fp32
    assert load_checkpoint(run / "last.pt")["epoch"] == 1 and _finite(run / "last.pt") and _finite(run / "best.pt")
    assert [r["epoch"] for r in _strict_rows(run)] == [1]
    assert (run / "config.yaml").read_text() == config and not (run / "config-changes.jsonl").exists()

    assert main(["train", "--resume", str(run), "optim.lr=0.01", "--quiet"]) == 0
    rows = _strict_rows(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[1]["lr"] == pytest.approx(0.01)
    assert load_config(run / "config.yaml").optim.lr == 0.01
    change = json.loads((run / "config-changes.jsonl").read_text())
    assert change == {"after_epoch": 1, "changed": {"optim.lr": [0.05, 0.01]}}


def test_a_nan_in_the_first_epoch_of_a_bf16_run_suggests_fp32_and_is_restartable(tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(MixkdError) as e:
        train(load_config(None, [*TINY, "runtime.precision=bf16", "optim.lr=1.0e+30"]), run, quiet=True)
    assert "epoch 1" in str(e.value) and "no epoch was saved yet" in str(e.value)
    assert "optim.lr=1e+29` (or add runtime.precision=fp32)" in str(e.value)
    assert sorted(p.name for p in run.iterdir()) == [".mixkd-run", "config.yaml"]
    assert main(["train", "--resume", str(run), "optim.lr=0.05", "runtime.precision=fp32", "--quiet"]) == 0
    assert [r["epoch"] for r in _strict_rows(run)] == [1, 2, 3]


def test_resume_cannot_change_what_the_checkpoint_fixes(killed, capsys):
    run = killed("epoch-1")
    assert main(["train", "--resume", str(run), "model.arch=resnet20", "optim.epochs=5", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mixkd: error: --resume cannot change model.arch (resnet8 -> resnet20), "
                          "optim.epochs (3 -> 5)")
    assert "optim.lr" in err and "another --out" in err


# --------------------------------------------------------------------------- the extreme seed, TensorBoard


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory):
    """Two epochs with mixup at the largest valid seed, writing TensorBoard events (the optional extra)."""
    out = tmp_path_factory.mktemp("tb") / "r"
    cfg = load_config(None, [*TINY, "optim.epochs=2", "optim.milestones=[1]", "mixing.name=mixup",
                             f"seed={2**64 - 1}", "runtime.tensorboard=true"])
    train(cfg, out, quiet=True)
    return out


def test_the_largest_valid_seed_trains(tensorboard_run):
    # config validation admits 0..2**64-1; the top of that range must really train (torch, NumPy, seed32)
    summary = json.loads((tensorboard_run / "summary.json").read_text())
    assert summary["seed"] == 2**64 - 1 and summary["epochs"] == 2 and summary["last_top1"] is not None


def test_tensorboard_events_hold_every_metric(tensorboard_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = [json.loads(line) for line in (tensorboard_run / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(tensorboard_run / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"lr", "train_loss", "train_top1", "test_loss", "top1", "top5"} <= tags
    assert tags == set(rows[0]) - {"epoch"}
    for tag in tags:
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [r["epoch"] for r in rows], tag
        assert [s.value for s in scalars] == pytest.approx([r[tag] for r in rows], rel=1e-6), tag


@pytest.mark.parametrize("method", ["rkd", "sp", "cc"])
def test_a_batch_relational_method_refuses_a_batch_of_one_before_any_work(method, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["distill", *TINY, "data.batch_size=1", f"distill.method={method}", "--teacher", str(tmp_path / "t.pt"),
            "--out", str(run), "--quiet"]
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and f"distill.method={method} relates the samples of a batch and needs at least 2 per " \
        "batch, but data.batch_size=1 gives 1; raise data.batch_size" in err[0], err
    assert not run.exists()
