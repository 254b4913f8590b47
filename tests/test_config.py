import pytest

from mixkd.config import RunConfig, load_config, parse_override, save_config
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
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    recipes = [p for p in root.rglob("*.yaml") if not {"sweeps", "figures"} & set(p.parts)]  # those are sweep specs
    assert recipes, "no recipes found"
    for p in recipes:
        assert isinstance(load_config(p), RunConfig), p
