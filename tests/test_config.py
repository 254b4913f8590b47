from pathlib import Path

import pytest

from mixkd.config import (
    RunConfig,
    is_cohort_plan,
    is_sweep_spec,
    load_config,
    parse_override,
    read_yaml,
    save_config,
)
from mixkd.errors import ConfigError


def test_defaults_validate_and_round_trip(tmp_path):
    cfg = load_config(None, ["optim.lr=0.1", "data.name=cifar10", "optim.milestones=[2, 4]", "optim.epochs=5"])
    assert cfg.optim.lr == 0.1 and cfg.data.name == "cifar10" and cfg.optim.milestones == [2, 4]
    path = tmp_path / "c.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg


def test_int_is_accepted_for_float_and_converted():
    cfg = load_config(None, ["optim.lr=1"])
    assert isinstance(cfg.optim.lr, float)


@pytest.mark.parametrize(
    "override, words",
    [
        ("optim.lrr=0.1", ["optim.lrr", "optim.lr"]),
        ("optim.lr=-0.1", ["optim.lr", "> 0"]),
        ("optim.lr=fast", ["optim.lr", "number"]),
        ("mixing.fraction=1.5", ["mixing.fraction", "<= 1"]),
        ("optim.milestones=[300]", ["optim.milestones", "300"]),
        ("data.batch_size=true", ["data.batch_size", "integer"]),
        ("runtime.precision=fp64", ["runtime.precision", "bf16"]),
        ("bogus=1", ["bogus"]),
        ("optim=3", ["optim", "mapping"]),
        ("distill.crd.nce_k=0", ["distill.crd.nce_k", ">= 1"]),
        ("distill.dkd.nckd_weigth=2", ["distill.dkd.nckd_weigth", "distill.dkd.nckd_weight"]),
        ("distill.logit_norm=softmax", ["distill.logit_norm", "zscore"]),
        ("distill.ce_weight=-1", ["distill.ce_weight", ">= 0"]),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_key(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_base_recipes_merge(tmp_path):
    (tmp_path / "base.yaml").write_text("optim:\n  lr: 0.2\n  epochs: 10\n  milestones: [5]\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\noptim:\n  epochs: 20\n")
    cfg = load_config(tmp_path / "child.yaml", ["seed=3"])
    assert (cfg.optim.lr, cfg.optim.epochs, cfg.seed) == (0.2, 20, 3)


def test_missing_file_and_bad_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("optim.lr")


def test_every_recipe_in_configs_validates():
    root = Path(__file__).resolve().parents[1] / "configs"
    recipes = [p for p in root.rglob("*.yaml") if not (is_sweep_spec(read_yaml(p)) or is_cohort_plan(read_yaml(p)))]
    assert len(recipes) > 50, "no recipes found"
    for p in recipes:
        assert isinstance(load_config(p), RunConfig), p


def test_a_cohort_plan_given_as_a_recipe_is_one_line_naming_mixkd_cohort():
    plan = Path(__file__).resolve().parents[1] / "configs/cohorts/quickstart.yaml"
    assert is_cohort_plan(read_yaml(plan))
    with pytest.raises(ConfigError, match=r"is a cohort plan, not a run recipe: run it with `mixkd cohort "):
        load_config(plan)


def test_a_sweep_spec_given_as_a_recipe_is_one_line_naming_mixkd_sweep():
    spec = Path(__file__).resolve().parents[1] / "configs/findings/teachers.yaml"
    assert is_sweep_spec(read_yaml(spec))
    with pytest.raises(ConfigError, match=r"is a sweep spec, not a run recipe: run it with `mixkd sweep "):
        load_config(spec)


# --------------------------------------------------------------------------- numbers


def _float_keys() -> list[str]:
    """Every float-typed key of the config, found from the type hints (new sections are covered too)."""
    import dataclasses
    import typing

    keys = []
    for section in dataclasses.fields(RunConfig):
        tp = typing.get_type_hints(RunConfig)[section.name]
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            keys += [f"{section.name}.{f.name}" for f in dataclasses.fields(tp) if float in (hints[f.name],
                     *typing.get_args(hints[f.name]))]
    return keys


def test_every_float_key_rejects_nan_and_inf():
    keys = _float_keys()
    assert {"optim.lr", "mixing.alpha", "mixing.fraction", "distill.temperature"} <= set(keys)
    for key in keys:
        for text in (".nan", ".inf", "-.inf", ".NaN", "1e999", "9" * 400):
            with pytest.raises(ConfigError) as e:
                load_config(None, [f"{key}={text}"])
            msg = str(e.value)
            assert msg.startswith(f"{key}: must be a finite number") and "\n" not in msg and len(msg) < 200, msg


@pytest.mark.parametrize("key, text, value", [
    ("optim.lr", "1e-3", 0.001), ("optim.weight_decay", "5e-4", 0.0005), ("mixing.alpha", "1E5", 1e5),
    ("distill.temperature", "4e0", 4.0), ("optim.lr", "+2.5e-2", 0.025), ("optim.lr", ".5e-1", 0.05),
    ("data.train_subset", "5e3", 5000), ("data.train_subset", "1E4", 10000), ("optim.epochs", "2.0", 2),
    ("seed", "1.8446744073709551615e19", 2**64 - 1), ("optim.milestones", "[1e1, 2E1]", [10, 20]),
])
def test_exponent_numbers_are_numbers_on_the_command_line_and_in_recipes(tmp_path, key, text, value):
    overrides = [f"{key}={text}", "optim.milestones=[1]" if key == "optim.epochs" else "optim.epochs=300"]
    section, _, name = key.rpartition(".")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"{section}:\n  {name}: {text}\n" if section else f"{name}: {text}\n")
    for cfg in (load_config(None, overrides), load_config(recipe, overrides[1:])):
        got = cfg
        for part in key.split("."):
            got = getattr(got, part)
        assert got == value and type(got) is type(value)


def test_exponent_spelling_is_a_number_only_for_number_keys(tmp_path):
    # -1e-2 is a number (so it meets the range check); names and paths that look like numbers stay text
    with pytest.raises(ConfigError, match=r"mixing.alpha: must be > 0.0, got -0.01"):
        load_config(None, ["mixing.alpha=-1e-2"])
    cfg = load_config(None, ["name=1e3", "teacher.checkpoint=5e4", "data.root=1E5"])
    assert (cfg.name, cfg.teacher.checkpoint, cfg.data.root) == ("1e3", "5e4", "1E5")
    for text in ("5e-1", "1.5e0", "64.5", "nan"):
        with pytest.raises(ConfigError, match="data.train_subset: expected an integer or null"):
            load_config(None, [f"data.train_subset={text}"])
    with pytest.raises(ConfigError, match=r"name: expected a string, got 2024 \(YAML read it as a number\); put it"):
        load_config(None, ["name=2024"])


@pytest.mark.parametrize("seed", [0, 7, 2**63, 2**64 - 1])
def test_seed_range_accepts_every_unsigned_64_bit_value(seed):
    assert load_config(None, [f"seed={seed}"]).seed == seed


@pytest.mark.parametrize("seed, words", [(-1, ">= 0, got -1"), (2**64, f"<= {2**64 - 1}, got {2**64}"),
                                         ("1e20", "<= "), ("-1e0", ">= 0")])
def test_seed_out_of_range_is_one_line(seed, words):
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"seed={seed}"])
    assert str(e.value).startswith("seed: must be ") and words in str(e.value) and "64-bit" in str(e.value)


# --------------------------------------------------------------------------- recipes


def _one_line(path, *overrides) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(path, list(overrides))
    msg = str(e.value)
    assert "\n" not in msg and e.value.__cause__ is None
    return msg


def test_base_cycles_and_self_bases_are_one_line(tmp_path):
    (tmp_path / "self.yaml").write_text("base: self.yaml\noptim: {lr: 0.1}\n")
    assert "base: cycle" in _one_line(tmp_path / "self.yaml")
    (tmp_path / "a.yaml").write_text("base: sub/b.yaml\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("base: [c.yaml]\n")
    (tmp_path / "sub" / "c.yaml").write_text("base: ../a.yaml\n")
    msg = _one_line(tmp_path / "a.yaml")
    assert "a.yaml -> " in msg and "b.yaml -> " in msg and "c.yaml -> " in msg and "remove one" in msg
    # a diamond (two bases sharing a base) is not a cycle
    (tmp_path / "d.yaml").write_text("optim: {lr: 0.3}\n")
    (tmp_path / "e.yaml").write_text("base: d.yaml\n")
    (tmp_path / "f.yaml").write_text("base: d.yaml\n")
    (tmp_path / "g.yaml").write_text("base: [e.yaml, f.yaml]\n")
    assert load_config(tmp_path / "g.yaml").optim.lr == 0.3


@pytest.mark.parametrize("base", ["5", "[5]", "{x: 1}", "['']", "true"])
def test_a_base_that_is_not_a_path_is_one_line(tmp_path, base):
    (tmp_path / "r.yaml").write_text(f"base: {base}\n")
    assert "base: must be a recipe file or a list of them, relative to the recipe" in _one_line(tmp_path / "r.yaml")


def test_a_missing_base_names_it(tmp_path):
    (tmp_path / "r.yaml").write_text("base: nope.yaml\n")
    assert "base 'nope.yaml' not found" in _one_line(tmp_path / "r.yaml")


def test_binary_and_unreadable_recipes_are_one_line(tmp_path):
    import torch

    torch.save({"w": torch.arange(100)}, tmp_path / "model.pt")  # a file a user might pass by mistake
    assert "not a text file" in _one_line(tmp_path / "model.pt")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert "not a text file" in _one_line(tmp_path / "image.png")
    (tmp_path / "control.yaml").write_bytes(b"optim:\x00\x01 lr: 1\n")
    assert "not valid YAML" in _one_line(tmp_path / "control.yaml")
    (tmp_path / "date.yaml").write_text("name: 2024-13-45\n")
    assert "not valid YAML" in _one_line(tmp_path / "date.yaml")
    assert "not found" in _one_line(tmp_path / ("x" * 300 + ".yaml"))  # a name too long to stat


def test_packaged_recipes_are_found_outside_a_checkout(tmp_path, monkeypatch):
    from mixkd.config import RECIPE_DIR, find_recipe

    monkeypatch.chdir(tmp_path)
    assert find_recipe("configs/quickstart/teacher.yaml") == RECIPE_DIR / "quickstart" / "teacher.yaml"
    assert load_config("configs/paper/cifar100/resnet56-resnet20/pmu10.yaml").mixing.fraction == 0.1
    (tmp_path / "configs" / "quickstart").mkdir(parents=True)
    (tmp_path / "configs" / "quickstart" / "teacher.yaml").write_text("optim: {lr: 0.7}\n")
    assert load_config("configs/quickstart/teacher.yaml").optim.lr == 0.7  # a file here wins


@pytest.mark.parametrize("key, new", [("distill.gamma", "distill.ce_weight"), ("distill.alpha", "distill.kd_weight")])
def test_old_weight_names_fail_with_one_line_naming_the_new_key(tmp_path, key, new):
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"{key}=0.5"])
    assert "\n" not in str(e.value) and key in str(e.value) and new in str(e.value)
    (tmp_path / "old.yaml").write_text("distill:\n  method: mixkd\n  gamma: 0.1\n  alpha: 0.9\n")
    with pytest.raises(ConfigError, match="distill.gamma was renamed: use distill.ce_weight"):
        load_config(tmp_path / "old.yaml")
    assert load_config(None, ["mixing.alpha=0.4"]).mixing.alpha == 0.4  # the Beta parameter keeps its name


def test_unset_weights_mean_the_methods_published_defaults():
    from mixkd.distill import method_class

    cfg = load_config(None, ["distill.method=crd", "distill.crd.nce_k=4096"])
    assert cfg.distill.ce_weight is None and cfg.distill.crd.weight is None
    params = method_class("crd").resolved_params(cfg.distill)
    assert params == {"weight": 0.8, "feat_dim": 128, "nce_k": 4096, "nce_t": 0.07, "nce_m": 0.5}


def test_saved_config_holds_only_the_method_section_that_applies(tmp_path):
    import yaml

    from mixkd.config import compact_config, from_dict, method_sections, to_dict, to_saved_dict
    from mixkd.distill import DISTILLERS

    sections = set(method_sections())
    assert len(sections) == 20 and {"dkd", "crd", "at", "ofd", "dist", "kdsvd", "reviewkd", "ctkd", "mlkd"} <= sections
    for method in DISTILLERS.names():  # every method: the file reads back as the config it was made from
        cfg = load_config(None, [f"distill.method={method}"])
        saved = to_saved_dict(cfg)
        assert set(saved["distill"]) & sections == ({method} & sections), method
        assert from_dict(saved) == cfg and to_dict(from_dict(saved)) == to_dict(cfg)
    # the chosen method's section stays even when all null; another method's stays when it holds a value
    cfg = load_config(None, ["distill.method=dkd", "distill.at.p=3"])
    assert set(to_saved_dict(cfg)["distill"]) & sections == {"dkd", "at"}
    assert to_saved_dict(cfg)["distill"]["at"] == {"weight": None, "p": 3.0}
    # an old config.yaml (every section, null) and a section written as `crd: null` compact the same way
    full = to_dict(load_config(None, ["distill.method=kd"]))
    assert compact_config({**full, "distill": {**full["distill"], "crd": None}}) == compact_config(full)
    assert compact_config({"seed": 1}) == {"seed": 1}  # no distill section: nothing to drop
    path = tmp_path / "c.yaml"
    save_config(cfg, path)
    assert "crd:" not in path.read_text() and yaml.safe_load(path.read_text())["distill"]["dkd"]["weight"] is None
    assert load_config(path) == cfg
