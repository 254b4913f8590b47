"""The generic feature distiller: every term has a registered method, stages are
paired by the documented rule, and every feature method works on the heterogeneous pairs of the paper."""

from __future__ import annotations

from functools import cache

import pytest
import torch

from mixkd.config import DistillConfig
from mixkd.data import Batch
from mixkd.distill import DISTILLERS, DistillContext, FrozenTeacher, build_distiller
from mixkd.distill.features import FeatureDistiller, select_stages
from mixkd.distill.shapes import paired_stages, probe
from mixkd.distill.terms import TERMS
from mixkd.mixing import MixResult
from mixkd.models import build_model

FEATURE_METHODS = [m for m in DISTILLERS.names() if issubclass(DISTILLERS.get(m), FeatureDistiller)]
HETEROGENEOUS = [("vgg13", "MobileNetV2"), ("resnet32x4", "ShuffleV1"), ("ResNet50", "vgg8"),
                 ("wrn_40_2", "ShuffleV1"), ("ResNet50", "MobileNetV2")]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_term_is_a_method():
    assert sorted(FEATURE_METHODS) == TERMS.names()
    for name in TERMS.names():
        assert DISTILLERS.get(name).term_cls is TERMS.get(name)


def test_stage_pairing_rule():
    assert paired_stages(3, 3) == ([0, 1, 2], [0, 1, 2])
    assert paired_stages(4, 5, 0, 1) == ([0, 1, 2, 3], [1, 2, 3, 4])  # MobileNetV2 <- vgg13: stem dropped
    assert paired_stages(5, 4, 1, 0) == ([1, 2, 3, 4], [0, 1, 2, 3])  # vgg8 <- ResNet50
    assert paired_stages(3, 4) == ([0, 1, 2], [1, 2, 3])  # the last k of the deeper one
    assert select_stages("last", 5, 4, 1, 0) == ([4], [3])
    assert select_stages("hint", 3, 3, 0, 0) == ([1], [1])  # RepDistiller's hint_layer 2: the second stage
    assert select_stages("hint", 5, 5, 1, 1) == ([2], [2])  # vgg: block2


@cache
def _models(teacher: str, student: str):
    torch.manual_seed(0)
    return build_model(student, 10), build_model(teacher, 10)


def _step(method: str, teacher_arch: str, student_arch: str) -> dict:
    student, teacher_model = _models(teacher_arch, student_arch)
    ctx = DistillContext(num_classes=10, input_shape=(3, 32, 32), num_samples=4, train_labels=torch.arange(4) % 2,
                         device=torch.device("cpu"))
    d = build_distiller(DistillConfig(method=method), student, FrozenTeacher(teacher_model, features=True), ctx)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    batch = Batch(x, torch.arange(4) % 2, torch.arange(4), None)
    mix = MixResult(x=x, target=torch.eye(10)[batch.y], lam=torch.ones(4), partner=torch.arange(4),
                    mixed=torch.zeros(4, dtype=torch.bool))
    d.train_stage(init=False)
    _, terms = d(batch, mix)
    if d.init_stage() is not None:
        d.train_stage(init=True)
        terms.update(d.init_terms(batch, mix))
    sum(terms.values()).backward()
    assert all(torch.isfinite(v) for v in terms.values()), terms
    return terms


@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_every_feature_method_on_a_heterogeneous_pair(method):
    terms = _step(method, "wrn_40_2", "ShuffleV1")  # 2x different sizes and other channels at every stage
    assert method in terms or f"{method}_init" in terms


@pytest.mark.slow
@pytest.mark.parametrize("pair", HETEROGENEOUS, ids="->".join)
@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_every_feature_method_on_every_heterogeneous_pair_of_the_paper(method, pair):
    _step(method, *pair)


@pytest.mark.parametrize("pair", HETEROGENEOUS, ids="->".join)
def test_the_paper_pairs_pair_stages_by_the_rule(pair):
    with torch.device("meta"):  # shapes only
        student, teacher = build_model(pair[1], 10), build_model(pair[0], 10)
    s, t = probe(student, (3, 32, 32)), probe(teacher, (3, 32, 32))
    s_idx, t_idx = paired_stages(len(s.maps), len(t.maps), student.stem_maps, teacher.stem_maps)
    assert len(s_idx) == len(t_idx) == min(len(s.maps) - student.stem_maps, len(t.maps) - teacher.stem_maps)
    # paired maps shrink together: each pair is at most one pooling step apart
    for i, j in zip(s_idx, t_idx, strict=True):
        assert max(s.maps[i][1], t.maps[j][1]) <= 2 * min(s.maps[i][1], t.maps[j][1]), (pair, s.maps, t.maps)


@pytest.mark.parametrize("method", ["ab", "fsp", "crd"])
def test_methods_that_cannot_run_under_ddp_say_so_in_one_line(method):
    from mixkd.errors import ConfigError

    student, teacher = _models("resnet8", "resnet8")
    ctx = DistillContext(num_classes=10, input_shape=(3, 32, 32), num_samples=4, train_labels=torch.arange(4) % 2,
                         device=torch.device("cpu"), world_size=2)
    with pytest.raises(ConfigError, match="without torchrun") as e:
        build_distiller(DistillConfig(method=method), student, FrozenTeacher(teacher, features=True), ctx)
    assert "\n" not in str(e.value)
