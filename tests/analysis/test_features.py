import json

import pytest

from mixkd.analysis.features import CLASS_PRESETS, analyze_features, resolve_classes
from mixkd.analysis.loading import load_models
from mixkd.errors import ConfigError
from tests.conftest import requires_fmnist, run_mixkd

pytestmark = requires_fmnist

FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def test_resolve_classes_names_indices_and_presets():
    assert resolve_classes(["trouser", "8", "Sneaker"], FASHION) == [1, 8, 7]
    cifar_like = tuple(sorted({*CLASS_PRESETS["cifar100-similar"], *CLASS_PRESETS["cifar100-dissimilar"], "bus"}))
    idx = resolve_classes(["cifar100-similar"], cifar_like)
    assert [cifar_like[i] for i in idx] == ["baby", "boy", "girl", "man", "woman"]
    with pytest.raises(ConfigError, match="'Boot' is not a class.*presets: cifar100-similar"):
        resolve_classes(["Bag", "Boot"], FASHION)
    with pytest.raises(ConfigError, match="at least two"):
        resolve_classes(["Bag"], FASHION)
    with pytest.raises(ConfigError, match="twice"):
        resolve_classes(["Bag", "8"], FASHION)


def test_trained_features_cluster_by_class_and_random_ones_do_not(trained_run, untrained_ckpt):
    models, data = load_models([trained_run[0], untrained_ckpt], arch="resnet8", device="cpu")
    assert [m.label for m in models] == ["resnet8", "untrained"]
    classes = [1, 8, 7]  # trouser, bag, sneaker: easy to tell apart
    results = analyze_features(models, data, classes, ["test"], per_class=25, seed=0)
    by = {r.model: r for r in results}
    assert all(len(r.labels) == 75 and r.embedding.shape == (75, 2) for r in results)
    assert sorted(set(by["resnet8"].labels.tolist())) == sorted(classes)
    assert by["resnet8"].v_raw > 0.6 and by["resnet8"].v_tsne > 0.6
    assert by["untrained"].v_raw < by["resnet8"].v_raw - 0.3
    again = analyze_features(models[:1], data, classes, ["test"], per_class=25, seed=0)[0]
    assert (again.v_raw, again.v_tsne) == (by["resnet8"].v_raw, by["resnet8"].v_tsne)
    assert (again.embedding == by["resnet8"].embedding).all()


def test_features_command(trained_run, untrained_ckpt, tmp_path):
    proc = run_mixkd("analyze", "features", str(trained_run[0]), str(untrained_ckpt), "--arch", "resnet8",
                     "--classes", "Trouser", "Bag", "Sneaker", "--per-class", "15", "--device", "cpu",
                     "--out", str(tmp_path))
    assert "V-score (features)" in proc.stdout
    out = json.loads((tmp_path / "features.json").read_text())
    assert out["classes"] == ["Trouser", "Bag", "Sneaker"] and set(out["models"]) == {"resnet8", "untrained"}
    assert len(out["results"]) == 4  # 2 models x 2 splits
    for r in out["results"]:
        assert r["per_class"] == {"Trouser": 15, "Bag": 15, "Sneaker": 15}
        assert 0 <= r["v_score_features"] <= 1 and 0 <= r["v_score_tsne"] <= 1
    for split in ("train", "test"):
        assert (tmp_path / f"features-{split}.png").stat().st_size > 10_000
    bad = run_mixkd("analyze", "features", str(untrained_ckpt), "--arch", "resnet8", "--classes", "Bag", "Coat",
                    "--out", str(tmp_path), check=False)
    assert bad.returncode == 2 and "--data NAME" in bad.stderr
