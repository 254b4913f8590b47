"""The table of published teacher figures and the check against it."""

import re

import pytest

from mixkd.models import list_models
from mixkd.models.published import MARGIN, PUBLISHED, check_teacher, dataset_key, published
from tests.conftest import SHARED


def test_every_row_names_a_registered_architecture_and_a_source():
    assert len({(p.arch, p.dataset) for p in PUBLISHED}) == len(PUBLISHED)
    for p in PUBLISHED:
        assert p.arch in list_models() and p.source and 0 < p.top1 < 100


def test_cifar100_teachers_match_the_reference_table():
    doc = SHARED / "docs" / "kd-methods.md"
    if not doc.is_file():
        pytest.skip("the project's shared docs are not on this machine")
    rows = re.finditer(r"^\| (\w+)→\w+ \| ([\d.]+) \|", doc.read_text(), re.M)
    teachers = {m.group(1): float(m.group(2)) for m in rows}
    assert teachers and all(published(a, "cifar100").top1 == t for a, t in teachers.items())


def test_imagenet_rows_are_torchvisions_metadata():
    from torchvision import models as tv

    pairs = (("resnet18", tv.ResNet18_Weights.IMAGENET1K_V1), ("resnet34", tv.ResNet34_Weights.IMAGENET1K_V1))
    for arch, weights in pairs:
        assert published(arch, "imagenet").top1 == weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert dataset_key("imagefolder", 1000) == "imagenet" and dataset_key("imagefolder", 10) == "imagefolder"


def test_warns_only_past_the_margin_on_the_full_split():
    # RepDistiller issue #29: a downloaded ResNet110 testing at 70.27 %
    bad = check_teacher("resnet110", "cifar100", 100, 10_000, 70.27)
    assert bad.below and bad.warning().startswith("teacher resnet110 tests at 70.27% top-1 on the full cifar100 "
                                                  "test split, 4.04 points below its published 74.31% (RepDistiller")
    assert bad.to_json() == {"published_top1": 74.31, "published_source": bad.ref.source, "full_test_split": True,
                             "below_published": True}
    assert not check_teacher("resnet110", "cifar100", 100, 10_000, 74.31 - MARGIN + 0.01).below
    subset = check_teacher("resnet110", "cifar100", 100, 1_000, 50.0)
    assert not subset.below and subset.warning() is None and "not compared" in subset.line()
    assert check_teacher("resnet8", "cifar100", 100, 10_000, 1.0) is None  # nothing published
