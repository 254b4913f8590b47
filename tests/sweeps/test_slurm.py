"""`mixkd sweep --launcher slurm` against a real single-node Slurm (munged, slurmctld, slurmd started here)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
import torch
import yaml

from mixkd.errors import ConfigError
from mixkd.sweeps.slurm import _minutes, parse_settings
from tests.conftest import TINY, requires_fmnist, run_mixkd

# one CPU per task, so the two tasks of an array run side by side on this 2-core machine
SLURM = ["--launcher", "slurm", "launcher.cpus_per_task=1", "launcher.time=10"]


def _spec(tmp_path: Path, grid: dict, extra: dict | None = None, name: str = "spec.yaml") -> Path:
    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in TINY)}
    overrides |= {"optim.epochs": 1, "optim.milestones": []} | (extra or {})
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"out": str(tmp_path / "out"), "overrides": overrides, "grid": grid},
                                   sort_keys=False))
    return path


def _job(stdout: str) -> str:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("submitted Slurm job array"))
    return line.split()[4]


def _wait_gone(slurm, job: str, timeout: float = 240) -> float:
    start = time.monotonic()
    while slurm.run("squeue", "-h", "-r", "-j", job, "-o", "%T", check=False).stdout.strip():
        assert time.monotonic() - start < timeout, slurm.run("squeue").stdout
        time.sleep(0.5)
    return time.monotonic() - start


def _states(spec: Path, *args: str) -> dict[str, list[str]]:
    out = run_mixkd("sweep", str(spec), "--status", *args).stdout.splitlines()
    return {ln.split()[0]: ln.split() for ln in out[1:-1]}


def _settled_states(spec: Path, timeout: float = 60) -> dict[str, list[str]]:
    """--status once no point is queued or running (a task's processes end a moment after squeue drops it)."""
    start = time.monotonic()
    while True:
        states = _states(spec)
        if not {s[1] for s in states.values()} & {"queued", "running"}:
            return states
        assert time.monotonic() - start < timeout, states
        time.sleep(0.5)


def _results(path: Path) -> list[dict]:
    with path.open() as f:
        return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in csv.DictReader(f)]


def test_slurm_times_and_settings_are_checked_one_by_one():
    assert [_minutes(t) for t in ("90", "1:30", "4:00:00", "1-12", "2-00:00:30")] == [90, 2, 240, 2160, 2881]
    s = parse_settings({"partition": "gpu", "time": "8:00:00", "gpus_per_task": 1, "sbatch": "--exclusive"}, "x")
    assert (s.partition, s.minutes, s.gpus_per_task, s.sbatch, s.cpus_per_task) == ("gpu", 480, 1, ("--exclusive",), 4)
    for raw, message in [({"partitoin": "gpu"}, "unknown Slurm setting 'partitoin'; the settings are: partition"),
                         ({"time": "4h"}, "launcher.slurm.time must be a Slurm time limit"),
                         ({"cpus_per_task": 0}, "cpus_per_task must be a whole number >= 1"),
                         ({"mem": "lots"}, "mem must be a size such as 16G"),
                         ({"sbatch": ["--array=0-3"]}, "the launcher sets it itself"),
                         ({"sbatch": ["--time=5"]}, "use launcher.slurm.time")]:
        with pytest.raises(ConfigError, match=message):
            parse_settings(raw, "x")


@requires_fmnist
def test_a_bad_launcher_setting_fails_in_one_line_before_anything_is_submitted(slurm, tmp_path):
    spec = _spec(tmp_path, {"seed": [0]})
    for args, message in [
        (["launcher.partition=nope"], "Slurm refuses these launcher.slurm settings: invalid partition specified: "
                                      "nope; fix that setting"),
        (["launcher.mem=900000G"], "Slurm refuses these launcher.slurm settings:"),
        (["launcher.tiem=10"], "unknown Slurm setting 'tiem'"),
        (["--jobs", "2"], "--jobs is the local launcher's; with --launcher slurm cap the tasks"),
    ]:
        proc = run_mixkd("sweep", str(spec), *SLURM, *args, check=False)
        err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(err) == 1 and message in err[0], (args, proc.stderr)
    assert not (tmp_path / "out").exists()
    assert slurm.run("squeue", "-h").stdout.strip() == ""
    proc = run_mixkd("sweep", str(spec), "--launcher", "slrum", check=False)
    assert proc.returncode == 2 and "unknown launcher 'slrum' (did you mean slurm?)" in proc.stderr


@requires_fmnist
def test_a_slurm_sweep_reports_every_state_resubmits_only_what_is_left_and_equals_the_local_one(slurm, tmp_path):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint")
    grid = {"method": {"ce": {"distill.method": "ce"},
                       "kd": {"distill.method": "kd", "teacher.arch": "resnet8", "teacher.checkpoint": str(bad)}},
            "seed": [0, 1]}
    spec = _spec(tmp_path, grid)
    assert set(s[1] for s in _states(spec).values()) == {"not"}  # "not started"
    start = time.monotonic()
    sub = run_mixkd("sweep", str(spec), *SLURM)
    submit_s = time.monotonic() - start
    job = _job(sub.stdout)
    assert "4 points, 0 done, 0 queued or running, 4 to submit" in sub.stdout
    assert f"--out {tmp_path / 'out'} --status" in sub.stdout
    # what --status and a rerun say while points are in flight: the test above (these points end too soon)
    wait_s = _wait_gone(slurm, job)
    states = _settled_states(spec)
    assert states["method-ce_seed-0"][1] == "finished" and float(states["method-ce_seed-0"][2]) > 10
    failed = states["method-kd_seed-1"]
    assert failed[1] == "failed" and f"log: {tmp_path / 'out' / 'logs' / 'method-kd_seed-1.log'}" in " ".join(failed)
    assert "checkpoint" in " ".join(failed)  # the point's own error line
    # the rerun submits only the two failed points, as a second array
    rerun = run_mixkd("sweep", str(spec), *SLURM)
    assert "4 points, 2 done, 0 queued or running, 2 to submit" in rerun.stdout, rerun.stdout
    records = [json.loads(ln) for ln in (tmp_path / "out" / "slurm" / "jobs.jsonl").read_text().splitlines()]
    assert records[-1]["units"] == [["method-kd_seed-0"], ["method-kd_seed-1"]]
    _wait_gone(slurm, _job(rerun.stdout))
    start = time.monotonic()
    run_mixkd("sweep", str(spec), "--collect")
    collect_s = time.monotonic() - start
    # the same grid through the local launcher: the same results.csv, bit for bit (but wall time)
    local = _spec(tmp_path, grid, name="local.yaml")
    body = yaml.safe_load(local.read_text()) | {"out": str(tmp_path / "local")}
    local.write_text(yaml.safe_dump(body, sort_keys=False))
    assert run_mixkd("sweep", str(local), "--jobs", "2", check=False).returncode == 1
    ours = _results(tmp_path / "out" / "results.csv")
    assert ours == _results(tmp_path / "local" / "results.csv")
    assert [r["status"] for r in ours] == ["done", "done", "new", "new"]
    print(f"\nslurm sweep of 4 tiny points: submit {submit_s:.1f} s, array ran {wait_s:.1f} s, "
          f"collect {collect_s:.1f} s")


# 40 epochs of 0.25 s: long enough that the signals arrive mid-run whatever the scheduler's latency
LONG = {"data.train_subset": 128, "data.test_subset": 64, "optim.epochs": 40, "optim.milestones": [30]}


def _start_and_wait_for_epochs(slurm, tmp_path: Path, seeds: list[int], epochs: int = 2) -> tuple[Path, str]:
    spec = _spec(tmp_path, {"seed": seeds}, LONG)
    job = _job(run_mixkd("sweep", str(spec), *SLURM).stdout)
    deadline = time.monotonic() + 180
    while not all(_epochs(tmp_path / "out" / f"seed-{i}") >= epochs for i in seeds):
        assert time.monotonic() < deadline, _states(spec)
        time.sleep(0.2)
    return spec, job


def _equals_an_uninterrupted_run(tmp_path: Path, seed: int) -> None:
    ref = _spec(tmp_path, {"seed": [seed]}, LONG, name="ref.yaml")
    ref.write_text(ref.read_text().replace(str(tmp_path / "out"), str(tmp_path / "ref")))
    run_mixkd("sweep", str(ref))
    a, b = (torch.load(d / f"seed-{seed}" / "last.pt", weights_only=False)["model"]
            for d in (tmp_path / "out", tmp_path / "ref"))
    assert all(torch.equal(a[k], b[k]) for k in a), f"seed-{seed}"


def _resumes(log: Path) -> int:
    return sum(1 for ln in log.read_text().splitlines() if " -m mixkd " in ln and "--resume" in ln)


@requires_fmnist
def test_points_in_flight_are_reported_and_left_to_their_tasks_by_every_command(slurm, tmp_path):
    """A task's run lock is its own: a rerun, a local run, --dry-run and --collect leave its point to it, and
    --status says where each point is. Sweep `a` is an array of two tasks, one at a time (one runs, one waits);
    sweep `b` has one point, which submitit submits as a plain job, not an array: in flight all the same."""
    slow = LONG | {"optim.epochs": 400}  # 400 epochs of 0.25 s: still training when the checks are done
    specs, jobs = {}, {}
    for name, seeds, more in (("a", [0, 1], ["launcher.array_parallelism=1"]), ("b", [0], [])):
        (tmp_path / name).mkdir()
        specs[name] = _spec(tmp_path / name, {"seed": seeds}, slow)
        jobs[name] = _job(run_mixkd("sweep", str(specs[name]), *SLURM, *more).stdout)
    deadline = time.monotonic() + 180
    while not all(_epochs(tmp_path / name / "out" / "seed-0") >= 2 for name in specs):
        assert time.monotonic() < deadline, {name: _states(spec) for name, spec in specs.items()}
        time.sleep(0.2)
    a, b = _states(specs["a"]), _states(specs["b"])
    assert a["seed-0"][1:4] == ["running", "job", f"{jobs['a']}_0"] and a["seed-1"][1:4] == [
        "queued", "job", f"{jobs['a']}_1"], a
    assert b["seed-0"][1:4] == ["running", "job", jobs["b"]], b
    for name, n in (("a", 2), ("b", 1)):
        again = run_mixkd("sweep", str(specs[name]), *SLURM).stdout
        assert f"{n} points, 0 done, {n} queued or running, 0 to submit" in again and "nothing to submit" in again
    here = run_mixkd("sweep", str(specs["a"])).stdout  # the local launcher leaves them to the tasks too
    assert "2 points, 0 already done, 2 queued or running elsewhere (skipped), 0 to run" in here, here
    collect = run_mixkd("sweep", str(specs["a"]), "--collect", check=False)
    assert collect.returncode == 2 and "nothing to collect: none of the 2 points" in collect.stderr
    dry = run_mixkd("sweep", str(specs["a"]), *SLURM, "--dry-run").stdout
    assert f"running  seed-0  (job {jobs['a']}_0 on " in dry and f"queued   seed-1  (job {jobs['a']}_1)" in dry, dry
    for name in specs:
        assert _epochs(tmp_path / name / "out" / "seed-0") < 400  # all of that while the tasks were training
    slurm.run("scancel", *jobs.values())
    for job in jobs.values():
        _wait_gone(slurm, job)


@pytest.mark.slow  # 70 s; a killed local point resuming exactly stays in the default set (tests/sweeps/test_sweep.py)
@requires_fmnist
def test_a_task_cancelled_mid_run_stops_cleanly_and_the_rerun_resumes_it_exactly(slurm, tmp_path):
    spec, job = _start_and_wait_for_epochs(slurm, tmp_path, [0])
    slurm.run("scancel", job)  # the user cancels the task: its point stops cleanly, not requeued
    _wait_gone(slurm, job)
    out = tmp_path / "out"
    assert _settled_states(spec)["seed-0"][1] == "stopped"
    assert "mixkd: stopped by SIGTERM" in (out / "logs" / "seed-0.log").read_text()
    assert 2 <= _epochs(out / "seed-0") < 40
    rerun = run_mixkd("sweep", str(spec), *SLURM)
    assert "1 points, 0 done, 0 queued or running, 1 to submit" in rerun.stdout
    _wait_gone(slurm, _job(rerun.stdout))
    assert _resumes(out / "logs" / "seed-0.log") == 1 and _epochs(out / "seed-0") == 40
    _equals_an_uninterrupted_run(tmp_path, 0)
    assert "every point" in run_mixkd("sweep", str(spec), *SLURM).stdout


@pytest.mark.slow  # Slurm holds a requeued task about two minutes before it starts again
@requires_fmnist
def test_slurms_warning_signal_requeues_the_task_which_resumes_exactly(slurm, tmp_path):
    spec, job = _start_and_wait_for_epochs(slurm, tmp_path, [1])
    slurm.run("scancel", "--signal=USR2", job)  # Slurm's warning before a time limit or preemption
    _wait_gone(slurm, job, timeout=400)  # requeued by submitit, then ran to its end
    log = tmp_path / "out" / "logs" / "seed-1.log"
    assert _resumes(log) == 1 and "mixkd: stopped by SIGTERM" in log.read_text(), log.read_text()
    assert _epochs(tmp_path / "out" / "seed-1") == 40
    _equals_an_uninterrupted_run(tmp_path, 1)


def _epochs(run: Path) -> int:
    m = run / "metrics.jsonl"
    return len(m.read_text().splitlines()) if m.exists() else 0


@requires_fmnist
def test_srun_torchrun_two_processes_train_one_step_like_one_process(slurm, tmp_path):
    """docs/cluster.md's way onto several nodes (srun starts torchrun, torchrun's c10d rendezvous joins the
    ranks), here one node of the test cluster running 2 gloo processes: one SGD step lands where one process
    does, to float rounding (the bound of tests/engine/test_distributed.py)."""
    import os
    import socket
    import subprocess
    import sys

    from tests.engine.test_distributed import ARGS, _distance, _weights

    one, two = tmp_path / "one", tmp_path / "two"
    step = ["data.train_subset=32"]
    run_mixkd("train", *ARGS, *step, "--out", str(one), "--quiet")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = ["srun", "--nodes=1", "--ntasks=1", "--cpus-per-task=2", "--time=5", sys.executable, "-m",
           "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"localhost:{port}", "-m", "mixkd", "train", *ARGS, *step, "--out", str(two), "--quiet"]
    env = {**slurm.env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=os.getcwd(), env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((two / "summary.json").read_text())["world_size"] == 2
    assert _distance(_weights(one), _weights(two)) <= 1e-6
