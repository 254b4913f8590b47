import csv
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
from mixkd.errors import ConfigError
from mixkd.sweeps.points import status
from mixkd.sweeps.spec import load_spec
from tests.conftest import REPO, TINY, requires_fmnist, run_mixkd
from tests.imagezip import write_image_tree

FIGURES = REPO / "configs" / "paper" / "figures"


def _spec(tmp_path: Path, body: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def test_grid_product_linked_keys_templates_and_recipes(tmp_path):
    (tmp_path / "r.yaml").write_text("model: {arch: resnet8}\n")
    path = _spec(tmp_path, {
        "recipe": "r.yaml", "out": "runs/x", "vars": {"teachers": "runs/t"},
        "overrides": {"optim.epochs": 2, "optim.milestones": [1], "teacher.checkpoint": "{teachers}/{T}/best.pt"},
        "grid": {
            "T": {"key": "teacher.arch", "values": ["resnet20", "resnet56"]},
            "mix": {"none": {"mixing.name": "none"}, "pmu10": {"mixing.name": "mixup", "mixing.fraction": 0.1}},
            "distill.temperature": [4, 1.5],
        },
    })
    points = load_spec(path).points(["data.train_subset=64"])
    assert len(points) == 8
    p = points[3]  # resnet20, pmu10, T=1.5
    assert p.name == "T-resnet20_mix-pmu10_distill.temperature-1.5"
    assert p.coords == {"T": "resnet20", "mix": "pmu10", "distill.temperature": "1.5"}
    cfg = p.config()
    assert (cfg.teacher.arch, cfg.teacher.checkpoint) == ("resnet20", "runs/t/resnet20/best.pt")
    assert (cfg.mixing.name, cfg.mixing.fraction, cfg.distill.temperature) == ("mixup", 0.1, 1.5)
    assert cfg.model.arch == "resnet8" and cfg.optim.milestones == [1] and cfg.data.train_subset == 64
    # command-line settings: a spec variable, new values for a keyed axis, a subset of named values
    pts = load_spec(path, settings=["vars.teachers=elsewhere", "grid.T=[resnet8]", "grid.mix=[pmu10]"]).points()
    assert [q.name for q in pts] == ["T-resnet8_mix-pmu10_distill.temperature-4",
                                     "T-resnet8_mix-pmu10_distill.temperature-1.5"]
    assert pts[0].config().teacher.checkpoint == "elsewhere/resnet8/best.pt"


def test_named_recipes_and_point_name_template(tmp_path):
    for name, method in (("a", "ce"), ("b", "kd")):
        (tmp_path / f"{name}.yaml").write_text(f"distill: {{method: {method}}}\n")
    path = _spec(tmp_path, {"name": "{scenario}/s{seed}",
                            "grid": {"scenario": {"A": {"recipe": "a.yaml"}, "B": {"recipe": "b.yaml"}},
                                     "seed": [0, 1]}})
    points = load_spec(path).points()
    assert [p.name for p in points] == ["A/s0", "A/s1", "B/s0", "B/s1"]
    assert [p.config().distill.method for p in points] == ["ce", "ce", "kd", "kd"]
    assert points[3].config().seed == 1


@pytest.mark.parametrize("body, message", [
    ({"grid": {"seed": []}}, "non-empty list"),
    ({"grid": {"seed": [0]}, "figures": [{"kind": "heatmap", "file": "h.png", "rows": "seed", "cols": "T"}]},
     "cols must name a grid axis"),
    ({"grid": {"seed": [0]}, "figures": [{"kind": "pie", "file": "p.png"}]}, "kind must be one of"),
    ({"grid": {"seed": [0, 1], "T": [4]}, "name": "{T}"}, "same directory"),
    ({"grid": {"seed": [0]}, "overrides": {"optim.lr": "{lr}"}}, "names 'lr'"),
    ({"grdi": {"seed": [0]}}, "unknown key 'grdi'"),
    ({"grid": {"x": {"recipe": "missing.yaml"}}}, "must map config keys"),
    ({"grid": {"x": {"a": {"recipe": "missing.yaml"}}}}, "recipe missing.yaml not found"),
])
def test_bad_specs_fail_before_any_run(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        load_spec(_spec(tmp_path, body)).points()


def test_bad_config_value_names_the_point(tmp_path):
    path = _spec(tmp_path, {"out": str(tmp_path / "o"), "grid": {"optim.lr": [0.1, -1]}})
    proc = run_mixkd("sweep", str(path), "--dry-run", check=False)
    assert proc.returncode == 2 and "sweep point optim.lr--1: optim.lr: must be > 0.0" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("spec", sorted(FIGURES.glob("*.yaml")), ids=lambda p: p.stem)
def test_paper_figure_specs_expand(spec):
    loaded = load_spec(spec)
    points = loaded.points()
    assert points and len({p.name for p in points}) == len(points)
    for p in points[:3] + points[-1:]:
        cfg = p.config()
        assert cfg.data.name == "cifar100" and cfg.optim.epochs == 240


@requires_fmnist
def test_sweep_runs_points_survives_a_crash_and_resumes(small_sweep):
    out, first = small_sweep["out"], small_sweep["first"]
    assert first.returncode == 1, first.stderr
    lines = [ln for ln in first.stdout.splitlines() if ln.startswith("[")]
    assert len(lines) == 4 and sum("FAILED" in ln for ln in lines) == 2
    assert any("method-kd_seed-0: FAILED (exit 2)" in ln and "checkpoint" in ln for ln in lines)
    with (out / "results.csv").open() as f:
        rows = {r["point"]: r for r in csv.DictReader(f)}
    assert rows["method-ce_seed-0"]["status"] == "done" and rows["method-kd_seed-1"]["status"] == "new"
    summary = json.loads((out / "method-ce_seed-1" / "summary.json").read_text())
    assert float(rows["method-ce_seed-1"]["best_top1"]) == summary["best_top1"]
    assert (out / "heat.png").stat().st_size > 5000
    assert "| ce | " in (out / "table.md").read_text()
    # an interrupted point (checkpoint but no summary) is resumed, finished ones are skipped
    (out / "method-ce_seed-0" / "summary.json").unlink()
    assert status(out / "method-ce_seed-0") == "partial"
    dry = run_mixkd("sweep", str(small_sweep["spec"]), "--dry-run")
    assert "--resume" in dry.stdout and "partial  method-ce_seed-0" in dry.stdout
    spec = small_sweep["spec"]
    body = yaml.safe_load(spec.read_text())
    body["grid"]["method"].pop("kd")
    spec.write_text(yaml.safe_dump(body, sort_keys=False))
    again = run_mixkd("sweep", str(spec))
    assert "2 points, 1 already done, 1 to run" in again.stdout
    assert "--resume" in (out / "logs" / "method-ce_seed-0.log").read_text().splitlines()[0]
    assert json.loads((out / "method-ce_seed-0" / "summary.json").read_text())["epochs"] == 2
    collected = run_mixkd("sweep", str(spec), "--collect")
    assert "2/2 points finished" in collected.stdout


def _tiny_spec(tmp_path: Path, seeds: list[int], extra: dict | None = None) -> Path:
    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in TINY)} | (extra or {})
    return _spec(tmp_path, {"out": str(tmp_path / "out"), "overrides": overrides, "grid": {"seed": seeds}})


def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("mixkd: error: "), err
    return err[0]


@requires_fmnist
def test_a_sweep_never_reuses_a_point_of_another_config(tmp_path, capsys):
    spec = _tiny_spec(tmp_path, [0], {"optim.epochs": 1, "optim.milestones": []})
    out = tmp_path / "out"
    assert main(["sweep", str(spec)]) == 0
    point = out / "seed-0"
    snapshot = {p.name: p.stat().st_mtime_ns for p in point.iterdir()}
    # Figure 6 scaled differently in the same folder: refused before anything runs, naming the keys
    bigger = ["data.train_subset=200", "optim.epochs=2"]
    assert main(["sweep", str(spec), *bigger]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"mixkd: error: sweep point seed-0: {point} was run with another config: "
                           "data.train_subset (256 -> 200), optim.epochs (1 -> 2);"), line
    assert "pick another --out, or delete those point folders" in line
    assert main(["sweep", str(spec), *bigger, "--collect"]) == 2
    assert "data.train_subset (256 -> 200)" in _one_error_line(capsys)
    assert main(["sweep", str(spec), *bigger, "--dry-run"]) == 0
    assert f"blocked  seed-0  ({point} was run with another config" in capsys.readouterr().out
    # a stopped point is resumed only under its own config
    (point / "summary.json").unlink()
    assert main(["sweep", str(spec), *bigger]) == 2
    assert "optim.epochs (1 -> 2)" in _one_error_line(capsys)
    assert {p.name: p.stat().st_mtime_ns for p in point.iterdir()} == {
        k: v for k, v in snapshot.items() if k != "summary.json"}
    # a result-neutral key does not block resuming or reusing
    assert main(["sweep", str(spec), "runtime.tensorboard=true"]) == 0
    assert (point / "summary.json").is_file() and (out / "logs" / "seed-0.log").read_text().split()[4] == "--resume"
    capsys.readouterr()
    assert main(["sweep", str(spec), "runtime.tensorboard=true"]) == 0
    assert "1 points, 1 already done, 0 to run" in capsys.readouterr().out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@requires_fmnist
@pytest.mark.parametrize("how, jobs", [("SIGTERM to the sweep", 2), ("Ctrl-C", 1)])
def test_a_signal_stops_every_point_of_a_sweep_and_starts_no_other(tmp_path, how, jobs):
    long = {"data.train_subset": 64, "data.test_subset": 64, "optim.epochs": 40, "optim.milestones": [30]}
    spec = _tiny_spec(tmp_path, list(range(jobs + 1)), long)  # one point more than run at once
    out = tmp_path / "out"
    sweep = subprocess.Popen([sys.executable, "-m", "mixkd", "sweep", str(spec), "--jobs", str(jobs)], cwd=REPO,
                             start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    running = [out / f"seed-{i}" for i in range(jobs)]
    deadline = time.time() + 240
    while not all((p / "metrics.jsonl").exists() for p in running):
        assert time.time() < deadline and sweep.poll() is None, "both points should be training"
        time.sleep(0.02)
    pids = [json.loads((p / ".mixkd-run").read_text())["pid"] for p in running]
    assert all(_alive(pid) for pid in pids)
    if how == "Ctrl-C":
        os.killpg(sweep.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
    else:
        sweep.send_signal(signal.SIGTERM)  # a scheduler signals the sweep process only
    _, err = sweep.communicate(timeout=180)
    signame = "SIGINT" if how == "Ctrl-C" else "SIGTERM"
    assert sweep.returncode == 128 + getattr(signal, signame)
    assert err.strip().splitlines()[-1] == (
        f"mixkd: stopped by {signame}; stopped {jobs} running process(es) of the sweep and started no other; rerun "
        "the same command to continue (finished points are skipped, stopped ones resumed)")
    assert not any(_alive(pid) for pid in pids)
    for p in running:
        log = (out / "logs" / f"{p.name}.log").read_text().strip().splitlines()
        assert log[-1].startswith("mixkd: stopped by SIG") and f"--resume {p}" in log[-1], log[-3:]
    time.sleep(1.0)
    assert not (out / f"seed-{jobs}").exists() and not (out / "logs" / f"seed-{jobs}.log").exists()
    assert not (out / "results.csv").exists()


@requires_fmnist
def test_a_second_sweep_on_a_running_folder_and_orphaned_points_are_refused_in_one_line(tmp_path, capsys):
    long = {"data.train_subset": 64, "data.test_subset": 64, "optim.epochs": 40, "optim.milestones": [30]}
    spec = _tiny_spec(tmp_path, [0], long)
    out, point = tmp_path / "out", tmp_path / "out" / "seed-0"
    sweep = subprocess.Popen([sys.executable, "-m", "mixkd", "sweep", str(spec)], cwd=REPO, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = None
    try:
        deadline = time.time() + 240
        while not (point / "metrics.jsonl").exists():
            assert time.time() < deadline and sweep.poll() is None, "the point should be training"
            time.sleep(0.02)
        pid = json.loads((point / ".mixkd-run").read_text())["pid"]
        logs = {p.name: p.read_bytes() for p in (out / "logs").iterdir()}
        assert main(["sweep", str(spec)]) == 2
        line = _one_error_line(capsys)
        assert f"{out} is being run by another sweep (pid {sweep.pid}); two sweeps must not share a folder" in line
        assert {p.name: p.read_bytes() for p in (out / "logs").iterdir()} == logs
        # the sweep's own process killed alone: its point trains on, and the rerun names it instead of failing it
        sweep.kill()
        sweep.wait(timeout=30)
        assert _alive(pid)
        assert main(["sweep", str(spec)]) == 2
        line = _one_error_line(capsys)
        assert f"1 point(s) of {out} are still being trained by earlier processes (seed-0; pids {pid})" in line
        assert f"stop them (kill {pid}), then rerun this command" in line
    finally:
        sweep.kill()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)


PAPER_METHODS = {"kd", "fitnet", "at", "sp", "cc", "vid", "rkd", "pkt", "ab", "ft", "nst", "crd", "ickd"}


def test_table1_methods_spec_is_methods_by_the_13_pairs_with_and_without_mixup():
    spec = load_spec(FIGURES / "table1-methods.yaml")
    axes = {a.name: a for a in spec.axes}
    assert len(axes["pair"].labels) == 13 and set(axes["mixup"].labels) >= {"none", "FMU"}
    assert PAPER_METHODS <= set(axes["method"].labels)
    points = spec.points()
    assert len(points) == 13 * len(axes["method"].labels) * len(axes["mixup"].labels)
    for p in points:  # every point validates, with the paper's settings and the method's published weights
        cfg = p.config()
        assert cfg.distill.method == p.coords["method"] and cfg.optim.epochs == 240 and cfg.distill.ce_weight is None
    by_name = {(p.coords["pair"], p.coords["method"], p.coords["mixup"]): p.config() for p in points}
    assert by_name[("resnet56-resnet20", "dkd", "none")].distill.dkd.nckd_weight == 2.0  # mdistiller's β per pair
    assert by_name[("vgg13-MobileNetV2", "ft", "FMU")].optim.lr == 0.01
    table = next(f for f in spec.figures if f["file"] == "table1-methods.md")
    assert (table["rows"], table["cols"], table["panels"]) == ("method", "pair", "mixup")


def test_table3_methods_spec_and_its_scaled_down_override():
    spec = load_spec(FIGURES / "table3-methods-robustness.yaml",
                     settings=["grid.method=[kd,at,crd,mixkd]", "vars.attack=--per-class 50"])
    small = ["teacher.arch=resnet20", "teacher.checkpoint=t.pt", "model.arch=resnet8", "distill.init_epochs=1",
             "data.name=fashion-mnist", "data.train_subset=2000", "optim.epochs=3", "optim.milestones=[2]"]
    points = spec.points(small)
    assert len(points) == 8 and all(p.config().mixing.name == "mixup" for p in points)
    assert PAPER_METHODS <= set(next(a for a in load_spec(FIGURES / "table3-methods-robustness.yaml").axes
                                     if a.name == "method").labels)
    assert spec.commands and "mixkd attack {points}" in spec.commands[0]


@requires_fmnist
def test_points_that_share_a_teacher_share_its_logits_on_disk_exactly(tmp_path, capsys):
    import torch

    from mixkd.config import load_config
    from mixkd.engine.rundir import load_checkpoint
    from mixkd.engine.trainer import train
    from mixkd.models import build_model

    teacher = tmp_path / "t.pt"
    torch.save({"model": build_model("resnet8", 10).state_dict()}, teacher)
    # one view per image (no augmentation), so the second point's first epoch can hit what the first stored
    extra = {"optim.epochs": 2, "optim.milestones": [], "distill.method": "mixkd", "data.augment": False,
             "teacher.arch": "resnet8", "teacher.checkpoint": str(teacher), "mixing.name": "mixup"}
    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in TINY)} | extra
    spec = _spec(tmp_path, {"out": str(tmp_path / "out"), "overrides": overrides,
                            "grid": {"pmu": {"p25": {"mixing.fraction": 0.25}, "p50": {"mixing.fraction": 0.5}}}})
    assert main(["sweep", str(spec)]) == 0
    cache = tmp_path / "out" / "teacher-cache"
    assert f"2 points share a teacher: they share its logits through a disk cache in {cache}" in capsys.readouterr().out
    assert len(list(cache.glob("*/identity.json"))) == 1
    rows = [json.loads(r) for r in (tmp_path / "out" / "pmu-p50" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["teacher_cache_hit_rate"] > 0.8  # served by what the first point stored
    # and it trained exactly as a run whose teacher computes every row live
    args = [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in overrides.items()]
    train(load_config(None, [*args, "mixing.fraction=0.5", "teacher.cache=off"]), tmp_path / "live", quiet=True)
    a, b = (load_checkpoint(p / "last.pt")["model"] for p in (tmp_path / "out" / "pmu-p50", tmp_path / "live"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_finished_point_is_not_reused_on_other_data_under_the_same_relative_path(tmp_path, monkeypatch, capsys):
    for folder, seed in (("first", 0), ("second", 1)):
        write_image_tree(tmp_path / folder / "data", seed=seed)
    monkeypatch.setenv("MIXKD_CACHE", str(tmp_path / "cache"))
    spec = _spec(tmp_path, {"out": str(tmp_path / "out"), "grid": {"seed": [0]}, "overrides": {
        "data.name": "imagefolder", "data.root": "data", "data.batch_size": 8, "data.eval_batch_size": 8,
        "model.arch": "resnet8", "optim.epochs": 1, "optim.milestones": [], "runtime.device": "cpu",
        "runtime.precision": "fp32", "runtime.threads": 1}})
    monkeypatch.chdir(tmp_path / "first")
    assert main(["sweep", str(spec)]) == 0
    capsys.readouterr()
    monkeypatch.chdir(tmp_path / "second")  # data/ here holds other images of the same classes
    assert main(["sweep", str(spec)]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"mixkd: error: sweep point seed-0: {tmp_path / 'out' / 'seed-0'} was trained on other "
                           f"data than data.root=data (from {tmp_path / 'second'}) holds now"), line


@pytest.mark.slow  # 63 s; cohort members equal solo runs bit for bit in the default set (tests/engine/test_cohort.py)
@requires_fmnist
def test_points_sharing_a_teacher_and_a_stream_train_as_one_cohort_exactly_as_alone(tmp_path, capsys):
    import torch

    from mixkd.engine.rundir import load_checkpoint
    from mixkd.models import build_model

    teacher = tmp_path / "t.pt"
    torch.save({"model": build_model("resnet8", 10).state_dict()}, teacher)
    extra = {"optim.epochs": 2, "optim.milestones": [], "teacher.arch": "resnet8", "teacher.checkpoint": str(teacher),
             "mixing.name": "mixup", "mixing.fraction": 0.5}
    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in TINY)} | extra
    grid = {"method": {"ce": {"distill.method": "ce"}, "kd": {"distill.method": "kd"},
                       "at": {"distill.method": "at"}, "boom": {"distill.method": "kd", "optim.lr": 1.0e30}}}
    body = {"out": str(tmp_path / "out"), "overrides": overrides, "grid": grid}
    spec = _spec(tmp_path, body)
    assert main(["sweep", str(spec)]) == 1  # the diverging point fails; the others finish
    out = capsys.readouterr().out
    assert "4 points train in 1 processes" in out and "(cohorts of 4;" in out
    assert "method-boom: FAILED (exit 2): mixkd: error: the loss became nan at epoch 1" in out
    assert (tmp_path / "out" / "logs" / "cohort-method-ce.yaml").is_file()
    boom_log = (tmp_path / "out" / "logs" / "method-boom.log").read_text()
    assert "trained in a cohort of 4 points" in boom_log and "the loss became nan" in boom_log.splitlines()[-1]
    assert main(["sweep", str(spec), "--status"]) == 0
    states = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()[1:-1]}
    assert "failed" in states["method-boom"] and "the loss became nan" in states["method-boom"]
    assert all(" finished " in states[f"method-{m}"] for m in ("ce", "kd", "at"))
    # the same grid with one process per point: the same weights and numbers, bit for bit
    alone = tmp_path / "alone.yaml"
    alone.write_text(yaml.safe_dump({**body, "out": str(tmp_path / "alone")}, sort_keys=False))
    assert main(["sweep", str(alone), "--cohorts", "off", "grid.method=[ce,kd,at]"]) == 0
    assert "train in" not in capsys.readouterr().out
    for m in ("ce", "kd", "at"):
        a, b = (d / f"method-{m}" for d in (tmp_path / "out", tmp_path / "alone"))
        wa, wb = (load_checkpoint(d / "last.pt")["model"] for d in (a, b))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), m
        sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
        assert (sa["best_top1"], sa["last_top1"], sa["best_epoch"]) == (sb["best_top1"], sb["last_top1"],
                                                                       sb["best_epoch"]), m
    # a rerun trains only the failed point, alone (a cohort of one)
    assert main(["sweep", str(spec)]) == 1
    out = capsys.readouterr().out
    assert "3 already done, 1 to run" in out and "train in" not in out
