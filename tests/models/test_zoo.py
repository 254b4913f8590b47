"""The CIFAR zoo matches the community checkpoints; every model honours the feature API."""

from __future__ import annotations

import pytest
import torch
import torchvision

from mixkd.errors import ConfigError
from mixkd.models import MODELS, ModelOutput, ZooModel, build_model, list_models
from tests.golden import golden, reference_checkpoint

ZOO = [
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4",
    "resnet32x4", "ResNet50", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2",
    "vgg8", "vgg11", "vgg13", "vgg16", "vgg19", "MobileNetV2", "ShuffleV1", "ShuffleV2",
]  # fmt: skip
IMAGENET = ["resnet18", "resnet34"]
# one per family, for the checks that do not depend on depth
FAMILIES = ["resnet8", "resnet8x4", "ResNet50", "wrn_16_2", "vgg8", "MobileNetV2", "ShuffleV1", "ShuffleV2"]


def cifar_batch(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_registry_lists_every_architecture() -> None:
    assert sorted(ZOO + IMAGENET) == list_models()


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ConfigError, match="resnet8"):
        build_model("resnet9", 10)


@pytest.mark.parametrize("num_classes", [0, -3, 2.5, True])
def test_bad_num_classes_is_a_config_error(num_classes: object) -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("resnet8", num_classes)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ZOO)
def test_state_dict_keys_and_shapes_match_reference(name, zoo_spec, built) -> None:
    got = [[k, list(v.shape)] for k, v in built(name, 100).state_dict().items()]
    assert got == zoo_spec[name]["state_dict"]


@pytest.mark.parametrize("name", ZOO)
def test_parameter_count_matches_reference(name, zoo_spec, built) -> None:
    assert sum(p.numel() for p in built(name, 100).parameters()) == zoo_spec[name]["num_parameters"]


def test_reference_checkpoint_reproduces_logits(checkpoint_arch, reference_input) -> None:
    expected = torch.load(golden(f"checkpoints/{checkpoint_arch}.expected.pt"), weights_only=True)["logits"]
    model = build_model(checkpoint_arch, 100).eval()
    model.load_state_dict(torch.load(reference_checkpoint(checkpoint_arch), weights_only=True)["model"])
    with torch.no_grad():
        logits = model(reference_input)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ZOO + IMAGENET)
def test_features_are_consistent_with_logits(name, built) -> None:
    model = built(name, 10)
    assert isinstance(model, ZooModel) and model.arch == name and model.num_classes == 10
    x = cifar_batch(size=64 if name in IMAGENET else 32)
    with torch.no_grad():
        plain = model(x)
        out = model(x, return_features=True)
    assert isinstance(out, ModelOutput)
    assert plain.shape == (2, 10)
    torch.testing.assert_close(out.logits, plain, atol=0, rtol=0)
    assert out.penultimate.shape == (2, model.get_classifier().in_features)
    assert out.maps and all(m.ndim == 4 and m.shape[0] == 2 for m in out.maps)
    torch.testing.assert_close(out.maps[-1].mean((2, 3)), out.penultimate)


@pytest.mark.parametrize("name", FAMILIES)
def test_channels_last_gives_the_same_logits(name) -> None:
    model = build_model(name, 10).eval()
    x = cifar_batch()
    with torch.no_grad():
        ref = model(x)
        model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_train_step_backpropagates_through_features(name) -> None:
    # also proves no in-place op overwrites a returned map that autograd still needs
    torch.manual_seed(0)
    model = build_model(name, 10).train()
    out = model(cifar_batch(4), return_features=True)
    loss = out.logits.logsumexp(1).mean() + sum(m.pow(2).mean() for m in out.maps)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ["resnet8", "ShuffleV2"])
def test_cpu_construction_and_forward_are_deterministic(name) -> None:
    torch.manual_seed(0)
    a = build_model(name, 10).eval()
    torch.manual_seed(0)
    b = build_model(name, 10).eval()
    x = cifar_batch()
    with torch.no_grad():
        assert torch.equal(a(x), b(x)) and torch.equal(a(x), a(x))


def test_vgg_pools_before_last_block_for_64px_inputs(built) -> None:
    with torch.no_grad():
        maps = built("vgg8", 10)(cifar_batch(size=64), return_features=True).maps
    assert [m.shape[-1] for m in maps] == [64, 32, 16, 8, 4]


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_resnets_keep_torchvision_keys(name, built) -> None:
    reference = getattr(torchvision.models, name)(weights=None, num_classes=10).state_dict()
    ours = built(name, 10).state_dict()
    assert [(k, v.shape) for k, v in ours.items()] == [(k, v.shape) for k, v in reference.items()]


def test_imagenet_resnet18_features() -> None:
    model = build_model("resnet18", 1000).eval()
    with torch.no_grad():
        out = model(cifar_batch(size=64), return_features=True)
    assert out.logits.shape == (2, 1000) and out.penultimate.shape == (2, 512)
    assert [tuple(m.shape[1:]) for m in out.maps] == [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]


def test_registry_entries_build_their_own_arch() -> None:
    for name in MODELS:
        with torch.device("meta"):  # no memory, no init cost
            assert build_model(name, 3).arch == name


@pytest.mark.parametrize("name", FAMILIES + ["resnet18"])
def test_preact_maps_are_the_stage_maps_before_their_last_relu(name, built) -> None:
    model = built(name, 10)
    with torch.no_grad():
        out = model(cifar_batch(size=64 if name == "resnet18" else 32), return_features=True)
    assert len(out.preact_maps) == len(out.maps)
    assert any(bool((p < 0).any()) for p in out.preact_maps)  # really before a ReLU
    for i, (pre, post) in enumerate(zip(out.preact_maps, out.maps, strict=True)):
        assert pre.shape == post.shape
        if name.startswith("wrn") and i < 2:
            # pre-activation blocks: the next stage's first BatchNorm reads the map (RepDistiller's preact)
            stage = (model.block2, model.block3)[i]
            torch.testing.assert_close(pre, stage.entry_bn()(post))
        elif torch.equal(pre, post):  # a stage that does not end in a ReLU (MobileNetV2, ShuffleV2 groups)
            assert name in ("MobileNetV2", "ShuffleV2") and i < len(out.maps) - 1
        else:
            assert torch.equal(torch.relu(pre), post)


def test_vgg_block0_is_a_stem_map(built) -> None:
    assert built("vgg8", 10).stem_maps == 1 and built("resnet8", 10).stem_maps == 0


@pytest.mark.parametrize("name", FAMILIES + ["resnet18"])
def test_preact_bns_are_the_batchnorms_behind_the_preact_maps(name, built) -> None:
    model = built(name, 10)
    if name == "ShuffleV2":  # its first stages end in a concatenation: no such BatchNorm (RepDistiller neither)
        with pytest.raises(ConfigError, match="OFD"):
            model.preact_bns()
        return
    bns = model.preact_bns()
    with torch.no_grad():
        out = model(cifar_batch(size=64 if name == "resnet18" else 32), return_features=True)
    assert len(bns) == len(out.preact_maps)
    for bn, pre in zip(bns, out.preact_maps, strict=True):
        assert isinstance(bn, torch.nn.BatchNorm2d) and bn.num_features == pre.shape[1]
