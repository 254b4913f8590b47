"""`mixkd mixings` lists every registered mixing with its source, the keys it reads and its needs; `mixkd methods`
and `--help` of train/distill name them."""

import json

import pytest

from mixkd.cli import main
from mixkd.mixing import MIXERS


def test_mixings_lists_every_registered_mixing_with_source_keys_and_needs(capsys):
    assert main(["mixings", "--json"]) == 0
    rows = {r["mixing"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(MIXERS.names()) >= {"none", "mixup", "cutmix", "mixup-cutmix", "cutmix-pick",
                                                 "confident-mixup"}
    assert all(r["paper"] for r in rows.values())
    assert rows["cutmix-pick"]["reads"]["candidates"] == 2 and rows["cutmix-pick"]["needs"] == ["teacher"]
    assert rows["confident-mixup"]["needs"] == ["teacher"] and rows["cutmix"]["needs"] == []
    assert rows["mixup-cutmix"]["reads"]["switch_prob"] == 0.5 and "sampling" in rows["mixup"]["reads"]
    assert main(["mixings"]) == 0
    assert "Yun et al., CutMix" in capsys.readouterr().out


@pytest.mark.parametrize("verb", ["train", "distill"])
def test_help_and_methods_name_every_mixing(capsys, verb):
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")
    assert all(name in text for name in MIXERS.names() if name not in ("none", "mixup")), text
    assert main(["methods"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith(", ".join(MIXERS.names()))


def test_a_report_labels_runs_by_mixing_and_fraction():
    from mixkd.analysis.report import mixing_label

    assert mixing_label({"mixing": {"name": "none"}}) == "none"
    assert mixing_label({"mixing": {"name": "mixup", "fraction": 0.1, "alpha": 1.0}}) == "PMU 10% α=1"
    assert mixing_label({"mixing": {"name": "mixup", "fraction": 1.0, "alpha": 0.4}}) == "FMU α=0.4"
    assert mixing_label({"mixing": {"name": "cutmix", "fraction": 0.5, "alpha": 1.0}}) == "cutmix 50% α=1"
    assert mixing_label({"mixing": {"name": "mixup-cutmix", "fraction": 1.0, "alpha": 0.8, "switch_prob": 0.5}}) == (
        "mixup-cutmix 100% α=0.8 p=0.5")
    assert mixing_label({"mixing": {"name": "cutmix-pick", "fraction": 0.1, "alpha": 1.0, "candidates": 4}}) == (
        "cutmix-pick 10% α=1 n=4")


@pytest.mark.parametrize("spec_name,methods", [("table1-mixings.yaml", 4), ("table3-mixings-robustness.yaml", 2)])
def test_the_mixing_specs_cover_every_mixing_at_10_50_and_100_percent(spec_name, methods):
    from mixkd.sweeps.spec import load_spec
    from tests.sweeps.test_sweep import FIGURES

    spec = load_spec(FIGURES / spec_name)
    points = spec.points()
    assert len(points) == methods * 16
    seen = {(c.mixing.name, c.mixing.fraction) for c in (p.config() for p in points)}
    assert seen == {("none", 1.0)} | {(m, f) for m in MIXERS.names() if m != "none" for f in (0.1, 0.5, 1.0)}


def test_bench_mixings_refuses_an_unknown_mixing_and_other_benchmarks_in_one_line(capsys):
    assert main(["bench", "step", "--mixings", "mixup,cutmx"]) == 2
    assert "unknown mixing method 'cutmx' (did you mean cutmix" in capsys.readouterr().err
    assert main(["bench", "epoch", "--mixings", "cutmix"]) == 2
    assert "use `mixkd bench step --mixings ...`" in capsys.readouterr().err
