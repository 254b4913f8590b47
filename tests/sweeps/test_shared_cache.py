"""The sweep tells its points that share a teacher where their disk cache is through a config key,
`teacher.shared_cache_dir`, which each point's config.yaml records (no environment variable); the key cannot
change a run's numbers, so sweep point folders written before it existed are still skipped or resumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from mixkd.cli import main
from mixkd.config import load_config, to_dict, to_saved_dict
from mixkd.engine.rundir import RESULT_NEUTRAL, config_differences, inspect_run, reuse_problem
from mixkd.models import build_model
from mixkd.sweeps import points as points_module
from mixkd.sweeps.points import SHARED_CACHE_FOLDER, command_for
from mixkd.sweeps.spec import Point
from mixkd.sweeps.units import WorkUnit, cohort_command
from tests.conftest import TINY, requires_fmnist


def test_the_key_defaults_to_none_is_recorded_and_is_result_neutral(tmp_path):
    plain = load_config(None, TINY)
    shared = load_config(None, [*TINY, f"teacher.shared_cache_dir={tmp_path / 'c d'}"])
    assert plain.teacher.shared_cache_dir is None and shared.teacher.shared_cache_dir == str(tmp_path / "c d")
    assert to_saved_dict(shared)["teacher"]["shared_cache_dir"] == str(tmp_path / "c d")
    assert "teacher.shared_cache_dir" in RESULT_NEUTRAL
    assert config_differences(to_dict(plain), to_dict(shared)) == {}


def _point(*extra: str) -> Point:
    return Point("p", {}, None, (*TINY, "distill.method=kd", "teacher.arch=resnet8", "teacher.checkpoint=t.pt",
                                 *extra))


def test_the_point_commands_carry_the_shared_cache_as_an_override(tmp_path, monkeypatch):
    p, cache = _point(), tmp_path / "out" / SHARED_CACHE_FOLDER
    new = command_for(p, tmp_path / "out" / "p", cache)
    assert new[3] == "distill" and f"teacher.shared_cache_dir={cache}" in new and new[-3:-1] == ["--out", str(
        tmp_path / "out" / "p")]
    assert not any("shared_cache_dir" in a for a in command_for(p, tmp_path / "out" / "p"))
    monkeypatch.setattr(points_module, "status", lambda run: "partial")  # a stopped point: resumed with it too
    resumed = command_for(p, tmp_path / "out" / "p", cache)
    assert resumed[4:] == ["--resume", str(tmp_path / "out" / "p"), f"teacher.shared_cache_dir={cache}", "--quiet"]


def test_a_cohort_plan_gives_every_member_the_shared_cache(tmp_path):
    a, b, cache = _point("seed=0"), _point("seed=1"), tmp_path / "cache"
    b = Point("q", {}, None, b.overrides)
    cmd, log = cohort_command([a, b], tmp_path, cache)
    plan = yaml.safe_load(Path(cmd[4]).read_text())
    assert all(m["overrides"][-1] == f"teacher.shared_cache_dir={cache}" for m in plan["members"])
    assert log == tmp_path / "logs" / "cohort-p.log"
    plain = yaml.safe_load(Path(cohort_command([a, b], tmp_path)[0][4]).read_text())
    assert not any("shared_cache_dir" in o for m in plain["members"] for o in m["overrides"])


def test_a_slurm_unit_shares_a_cache_per_host_only_for_its_sharing_points(tmp_path):
    p = _point()
    assert WorkUnit((p,), tmp_path, tmp_path)._shared_cache([p]) is None
    folder = WorkUnit((p,), tmp_path, tmp_path, frozenset({"p"}))._shared_cache([p])
    assert folder.parent == tmp_path / SHARED_CACHE_FOLDER and folder.name and "." not in folder.name


@requires_fmnist
def test_points_record_the_shared_cache_and_folders_from_before_the_key_are_reused(tmp_path, capsys):
    teacher = tmp_path / "t.pt"
    torch.save({"model": build_model("resnet8", 10).state_dict()}, teacher)
    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in TINY)} | {
        "optim.epochs": 1, "optim.milestones": [], "distill.method": "kd", "data.augment": False,
        "teacher.arch": "resnet8", "teacher.checkpoint": str(teacher)}
    out = tmp_path / "out"
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"out": str(out), "overrides": overrides, "grid": {"T": {"key": "distill.temperature", "values": [4, 2]}}}
        )
    )
    assert main(["sweep", str(spec), "--cohorts", "off"]) == 0
    assert "2 points share a teacher" in capsys.readouterr().out
    cache = (out / SHARED_CACHE_FOLDER).absolute()
    assert len(list(cache.glob("*/identity.json"))) == 1
    for name in ("T-4", "T-2"):  # the config records where the point's teacher cache was
        saved = yaml.safe_load((out / name / "config.yaml").read_text())
        assert saved["teacher"]["shared_cache_dir"] == str(cache)
        # as mixkd wrote the point before the key existed (the sweep told it through the environment)
        del saved["teacher"]["shared_cache_dir"]
        (out / name / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    asked = load_config(
        None,
        [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in overrides.items()]
        + ["distill.temperature=4"],
    )
    assert reuse_problem(inspect_run(out / "T-4"), to_dict(asked)) is None
    assert main(["sweep", str(spec), "--cohorts", "off"]) == 0
    said = capsys.readouterr().out
    assert "2 points, 2 already done, 0 to run" in said, said
    assert main(["sweep", str(spec), "--dry-run"]) == 0
    dry = capsys.readouterr().out.splitlines()
    assert all(line.startswith("done") for line in dry[:-1:2])
    # the listed commands are the ones the sweep runs: with the shared cache's folder
    commands = [line for line in dry if line.strip().startswith("mixkd ")]
    assert len(commands) == 2 and all(f"teacher.shared_cache_dir={cache}" in c for c in commands), dry


@pytest.mark.parametrize("value", ["teacher-cache", "123"])
def test_the_override_text_parses_back_to_the_folder(value):
    from mixkd.config import parse_override

    (text,) = points_module.shared_cache_overrides(Path(value))
    assert parse_override(text) == {"teacher": {"shared_cache_dir": value}}
