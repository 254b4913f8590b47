"""`mixkd models`: every architecture is described, by input size and family, with its parameter count."""

from __future__ import annotations

import pytest

from mixkd.cli import main
from mixkd.models import list_models
from mixkd.models.registry import CARDS, FAMILIES, describe, model_catalogue, parameter_count
from tests.models.test_zoo import IMAGENET, ZOO


def test_every_architecture_has_a_card_in_one_listed_family() -> None:
    assert sorted(CARDS) == list_models()
    listed = [c.name for _, _, families in model_catalogue() for _, cards in families for c in cards]
    assert sorted(listed) == list_models() and len(listed) == len(set(listed))
    assert {c.family for c in CARDS.values()} <= set(FAMILIES)
    with pytest.raises(ValueError, match="model family 'resnett'"):
        describe("x", "resnett", "a typo")


def test_parameter_count_on_the_meta_device_is_the_reference_count(zoo_spec) -> None:
    for name in ZOO:
        assert parameter_count(name, 100) == zoo_spec[name]["num_parameters"], name
    assert parameter_count("resnet18", 1000) == 11_689_512  # torchvision's published ResNet-18 figure


def test_models_prints_each_family_with_sizes_and_names_alone(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("    ")}
    assert sorted(rows) == sorted(ZOO + IMAGENET)
    assert "0.28M" in rows["resnet20"] and "3 basic blocks" in rows["resnet20"]
    assert out.index("CIFAR-size") < out.index("wrn_40_2") < out.index("ImageNet-size") < out.index("resnet34")
    assert main(["models", "--names"]) == 0
    assert capsys.readouterr().out.split() == list_models()
