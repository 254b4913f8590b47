"""The real `mixkd` command: bad input fails fast with one line that names the problem and the fix."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mixkd.cli import main
from tests.conftest import REPO, TINY, requires_fmnist, run_mixkd


def _error(capsys, monkeypatch, *args: str) -> str:
    monkeypatch.chdir(REPO)
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mixkd: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["train", "no/such/recipe.yaml"], ["no/such/recipe.yaml", "not found"]),
        (["train", "configs/quickstart/teacher.yaml", "optim.lrr=0.1"], ["optim.lrr", "did you mean optim.lr"]),
        (["train", "configs/quickstart/teacher.yaml", "optim.lr=-1"], ["optim.lr", "> 0"]),
        (["train", "configs/quickstart/teacher.yaml", "--quiet", "optim.lr=-1"], ["optim.lr", "> 0"]),
        (["train", "configs/quickstart/teacher.yaml", "optim.milestones=[500]"], ["optim.milestones", "epochs"]),
        (["train", "configs/quickstart/teacher.yaml", "model.arch=resnet21"], ["resnet21", "resnet20"]),
        (["train", "configs/quickstart/teacher.yaml", "data.name=cifar100", "data.root=/nonexistent",
          "data.download=false"], ["/nonexistent", "data.root"]),
        (["distill", "configs/quickstart/student.yaml", "teacher.checkpoint=/no/teacher.pt"], ["/no/teacher.pt"]),
        (["distill", "configs/quickstart/teacher.yaml"], ["distill.method=ce", "mixkd"]),
        (["train", "configs/quickstart/student.yaml"], ["mixkd distill"]),
        (["train", "--resume", "/no/run"], ["/no/run"]),
        (["distill", "configs/quickstart/student.yaml", "distill.gamma=0.1"], ["distill.gamma", "distill.ce_weight"]),
        (["train", "configs/quickstart/teacher.yaml", "distill.kd_weight=0.9"], ["distill.kd_weight must be 0"]),
        (["distill", "configs/quickstart/student.yaml", "distill.method=fitnett"], ["fitnett", "choose one of"]),
        (["bench", "step", "--methods", "kd,ce"], ["--methods", "ce has no teacher"]),
        (["bench", "epoch", "--methods", "kd,at"], ["--methods", "bench step --methods"]),
        (["bench", "cohort", "--compile", "on"], ["--compile on", "cohort benchmark runs", "uncompiled"]),
        (["bench", "step", "--methods", "kd,dkd", "--compare-compile"], ["--compare-compile", "--methods"]),
    ],
)
def test_bad_input_is_one_line_with_the_fix(args, words, capsys, monkeypatch):
    line = _error(capsys, monkeypatch, *args)
    for w in words:
        assert w in line, line


@requires_fmnist
def test_train_then_distill_from_its_checkpoint_via_the_cli(tmp_path):
    teacher = tmp_path / "teacher"
    run_mixkd("train", *TINY, "optim.epochs=2", "optim.milestones=[1]", "--out", str(teacher), "--quiet")
    student = tmp_path / "student"
    run_mixkd("distill", *TINY, "optim.epochs=1", "optim.milestones=[]", "distill.method=mixkd", "--mixup", "0.5",
              "--teacher", str(teacher / "best.pt"), "--out", str(student), "--quiet")
    summary = json.loads((student / "summary.json").read_text())
    assert summary["method"] == "mixkd" and summary["mixing"]["fraction"] == 0.5
    assert summary["teacher"]["arch"] == "resnet8" and summary["teacher"]["top1"] > 10


def test_models_and_datasets_are_listed(capsys):
    assert main(["models"]) == 0 and "resnet110" in capsys.readouterr().out.split()
    assert main(["datasets"]) == 0 and "fashion-mnist" in capsys.readouterr().out.split()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is visible")
def test_asking_for_a_gpu_that_is_not_there_is_one_line(capsys, monkeypatch):
    line = _error(capsys, monkeypatch, "train", "configs/quickstart/teacher.yaml", "runtime.device=cuda")
    assert "runtime.device" in line and "no CUDA GPU" in line


# --------------------------------------------------------------------------- one parsing rule for every command


def test_a_bare_train_or_distill_is_refused(capsys, monkeypatch):
    for verb in ("train", "distill"):
        line = _error(capsys, monkeypatch, verb)
        assert f"mixkd {verb} needs a recipe" in line and "--resume" in line, line
    line = _error(capsys, monkeypatch, "train", "--mixup")  # an option alone is no config either
    assert "needs a recipe" in line


@pytest.mark.parametrize("argv, mixup, config, overrides", [
    (["train", "--mixup", "data.train_subset=256"], 1.0, None, ["data.train_subset=256"]),
    (["train", "--mixup", "configs/quickstart/teacher.yaml", "seed=1"], 1.0, "configs/quickstart/teacher.yaml",
     ["seed=1"]),
    (["train", "--mixup", "0.5", "configs/quickstart/teacher.yaml"], 0.5, "configs/quickstart/teacher.yaml", []),
    (["train", "--mixup=0.3", "optim.lr=0.1", "--quiet"], 0.3, None, ["optim.lr=0.1"]),
    (["train", "configs/quickstart/teacher.yaml", "--out", "runs/x", "optim.lr=0.1", "--mixup"], 1.0,
     "configs/quickstart/teacher.yaml", ["optim.lr=0.1"]),
])
def test_mixup_takes_its_fraction_only_when_one_follows(argv, mixup, config, overrides):
    from mixkd.cli import parse_args

    args = parse_args(argv)
    assert (args.mixup, args.config, args.overrides) == (mixup, config, overrides)


@pytest.mark.parametrize("argv, where", [
    (["analyze", "features", "runs/a", "--classes", "0", "2", "data.test_subset=100", "--per-class", "3"], "models"),
    (["analyze", "logits", "runs/a", "--class", "Coat", "data.test_subset=100"], "models"),
    (["attack", "runs/a", "--eps", "0", "1/255", "data.test_subset=5", "--steps", "2"], "models"),
    (["sweep", "s.yaml", "--jobs", "2", "optim.epochs=2", "--dry-run", "grid.a=[1]"], "spec"),
    (["quickstart", "--out", "runs/q", "data.train_subset=64"], None),
    (["distill", "r.yaml", "--teacher", "t.pt", "optim.epochs=2", "--quiet"], "config"),
])
def test_overrides_may_follow_options_for_every_command_that_takes_them(argv, where):
    from mixkd.cli import parse_args

    args = parse_args(argv)
    assert [o for o in args.overrides if not o.startswith("grid.")] == [a for a in argv if "=" in a
                                                                       and not a.startswith(("grid.", "--"))]
    if where == "models":
        assert args.models == ["runs/a"]
    elif where:
        assert "=" not in getattr(args, where)


def test_argument_errors_show_the_usage_of_their_subcommand(capsys):
    from mixkd.cli import main

    for argv, prog, words in [
        (["analyze", "features", "runs/a", "--classes", "0", "--bogus"], "mixkd analyze features",
         "unrecognized arguments: --bogus"),
        (["report", "runs/a", "seed=1"], "mixkd report", "this command takes no KEY=VALUE overrides, got 'seed=1'"),
        (["train", "a.yaml", "b.yaml"], "mixkd train", "'b.yaml' is not a KEY=VALUE override"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith(f"usage: {prog} ") and f"{prog}: error: {words}" in err, err


def test_analyses_reject_non_data_overrides(capsys, monkeypatch):
    line = _error(capsys, monkeypatch, "attack", "runs/a", "--eps", "0", "optim.lr=0.1")
    assert "data.* overrides only" in line


# --------------------------------------------------------------------------- sweeps say what happened


def _spec(tmp_path) -> str:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"recipe: {REPO / 'configs/quickstart/teacher.yaml'}\nout: {tmp_path / 'out'}\n"
                    "grid:\n  seed: [0]\n")
    return str(spec)


def test_collect_without_a_finished_point_is_an_error_and_writes_nothing(tmp_path, capsys, monkeypatch):
    line = _error(capsys, monkeypatch, "sweep", _spec(tmp_path), "--collect")
    assert "nothing to collect" in line and "without --collect" in line
    assert not (tmp_path / "out").exists()


def test_last_error_line_is_whole():
    from mixkd.sweeps.points import last_error_line

    long = "mixkd: error: " + "x" * 400
    assert last_error_line(f"python -m mixkd train\n{long}\n\n") == long
    assert last_error_line(f"{long}\nTraceback (most recent call last):\nValueError: boom\n") == long
    assert last_error_line("Traceback (most recent call last):\n  File x\nValueError: boom\n") == "ValueError: boom"


@requires_fmnist
def test_a_failing_point_reports_its_whole_error_line(tmp_path):
    root = "/nonexistent/" + "a-long-folder-name/" * 12  # the error line is longer than any terminal
    proc = run_mixkd("sweep", _spec(tmp_path), *TINY, "data.name=cifar100", f"data.root={root}",
                     "data.download=false", check=False)
    assert proc.returncode == 1, proc.stderr
    log = (tmp_path / "out" / "logs" / "seed-0.log").read_text()
    error = next(ln for ln in log.splitlines() if ln.startswith("mixkd: error:"))
    assert len(error) > 300 and f"FAILED (exit 2): {error}" in proc.stdout, proc.stdout


# --------------------------------------------------------------------------- torchrun: one summary


@requires_fmnist
def test_only_rank_0_prints_the_summary_under_torchrun(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mixkd",
           "train", *TINY, "optim.epochs=1", "optim.milestones=[]", "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(summaries) == 1 and summaries[0]["last_top1"] is not None, proc.stdout


# --------------------------------------------------------------------------- an unwritable --out


@pytest.fixture(scope="module")
def read_only_dir(tmp_path_factory):
    """A read-only folder: a real read-only tmpfs when root can mount one (root ignores permission bits)."""
    path = tmp_path_factory.mktemp("ro")
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)]).returncode != 0:
            pytest.skip("root, but mounting a read-only tmpfs is not permitted here")
        yield path
        subprocess.run(["umount", "-l", str(path)], check=True)
    else:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)


def _sweep_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"overrides": dict(o.split("=", 1) for o in TINY), "grid": {"seed": [0]}}))
    return spec


# Each command is given inputs that would fail later (no data, no such model): the --out error must come first.
COMMANDS = {
    "train": lambda tmp: ["train", *TINY, "data.name=cifar100", f"data.root={tmp}/none", "data.download=false"],
    "distill": lambda tmp: ["distill", "configs/quickstart/student.yaml", f"teacher.checkpoint={REPO}/README.md"],
    "attack": lambda tmp: ["attack", str(tmp / "no-such-run")],
    "analyze features": lambda tmp: ["analyze", "features", str(tmp / "no-such-run"), "--classes", "0"],
    "analyze logits": lambda tmp: ["analyze", "logits", str(tmp / "no-such-run")],
    "report": lambda tmp: ["report", str(tmp / "no-such-run")],
    "sweep": lambda tmp: ["sweep", str(_sweep_spec(tmp))],
    "quickstart": lambda tmp: ["quickstart"],
}


@pytest.mark.parametrize("where", ["under a file", "read-only"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unwritable_out_fails_first_with_one_line(command, where, tmp_path, read_only_dir, capsys, monkeypatch):
    (tmp_path / "file").write_text("not a folder\n")
    out = tmp_path / "file" / "out" if where == "under a file" else read_only_dir / "out"
    line = _error(capsys, monkeypatch, *COMMANDS[command](tmp_path), "--out", str(out))
    assert line.startswith(f"mixkd: error: --out {out}: ") and "pick another --out" in line, line
    assert ("is a file" in line) if where == "under a file" else ("read-only" in line or "permission" in line)
    assert sorted(p.name for p in tmp_path.iterdir()) in (["file"], ["file", "spec.yaml"])


# --------------------------------------------------------------------------- signals


@requires_fmnist
def test_ctrl_c_stops_a_run_and_names_its_folder(tmp_path):
    """Ctrl-C in a terminal: SIGINT to the whole process group."""
    out = tmp_path / "run"
    args = [a for a in TINY if not a.startswith(("optim.", "data.train_subset", "data.test_subset"))]
    proc = subprocess.Popen([sys.executable, "-m", "mixkd", "distill", "configs/quickstart/student.yaml", *args,
                             "data.train_subset=64", "data.test_subset=64", "optim.epochs=40",
                             "optim.milestones=[30]", f"teacher.checkpoint={_teacher(tmp_path)}",
                             "teacher.arch=resnet8",
                             "--out", str(out), "--quiet"],
                            cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (out / "metrics.jsonl").exists():
        assert time.time() < deadline and proc.poll() is None, proc.stderr and proc.stderr.read()
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [f"mixkd: stopped by SIGINT; continue with: mixkd distill --resume {out}"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def _teacher(tmp_path: Path) -> Path:
    """A teacher checkpoint: one quick epoch of resnet8 (in this process)."""
    from mixkd.config import load_config
    from mixkd.engine.trainer import train

    train(load_config(None, [*TINY, "optim.epochs=1", "optim.milestones=[]"]), tmp_path / "teacher", quiet=True)
    return tmp_path / "teacher" / "best.pt"


def test_methods_lists_every_method_with_paper_defaults_and_needs(capsys):
    from mixkd.distill import DISTILLERS

    assert main(["methods", "--json"]) == 0
    rows = {r["method"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(DISTILLERS.names())
    assert all(r["paper"] for r in rows.values())
    assert rows["kd"]["defaults"] == {"ce_weight": 0.1, "kd_weight": 0.9, "logit_norm": "none", "temperature": 4.0}
    assert rows["mixkd"]["defaults"]["logit_norm"] == "std"
    published = {"weight": 1.0, "tckd_weight": 1.0, "nckd_weight": 8.0, "warmup_epochs": 20}
    assert rows["dkd"]["defaults"]["dkd"] == published
    assert rows["crd"]["defaults"]["crd"]["nce_k"] == 16384 and "dataset indices" in rows["crd"]["needs"]
    assert rows["ce"]["needs"] == []
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    assert "crd.nce_k=16384" in text and "Decoupled Knowledge Distillation" in text


@requires_fmnist
def test_print_config_prints_what_config_yaml_would_hold_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small = [a for a in TINY if not a.startswith(("data.train_subset", "optim."))] + [
        "data.train_subset=64", "optim.epochs=1", "optim.milestones=[]"]
    recipe = str(REPO / "configs" / "quickstart" / "teacher.yaml")
    assert main(["train", recipe, *small, "--out", "run", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # no run folder, nothing else
    assert main(["train", recipe, *small, "--out", "run", "--quiet"]) == 0
    assert printed == (tmp_path / "run" / "config.yaml").read_text()  # the very file a run writes
    capsys.readouterr()
    # distill: the --teacher flag lands in teacher.checkpoint; the printed YAML is a recipe that runs as is
    assert main(["distill", str(REPO / "configs" / "quickstart" / "student.yaml"), *small, "--teacher",
                 "run/best.pt", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["teacher"]["checkpoint"] == "run/best.pt" and cfg["distill"]["method"] == "mixkd"
    assert "crd" not in cfg["distill"] and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    # a bad override or name is the same one line as in a run, and nothing is printed to stdout
    for bad, words in ((["optim.lrr=0.1"], "did you mean optim.lr"), (["model.arch=resnet21"], "unknown model")):
        assert main(["train", recipe, *bad, "--print-config"]) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1 and words in err, err
