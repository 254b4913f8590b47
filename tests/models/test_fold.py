import pytest
import torch
from torch import nn

from mixkd.models import build_model
from mixkd.models.fold import fold_batchnorm
from mixkd.models.weights import load_model
from tests.golden import golden


@pytest.mark.parametrize("arch", ["resnet8", "resnet20"])
def test_folded_reference_checkpoint_computes_the_same_logits(arch):
    # the reference checkpoints have randomised BatchNorm statistics, so folding changes every convolution
    model = load_model(golden(f"checkpoints/{arch}.pth"), arch=arch)
    x = torch.load(golden("checkpoints/input.pt"), weights_only=True)["input"]
    _assert_folding_keeps_logits(model, x, arch)


def _random_bn_model(arch: str, num_classes: int) -> nn.Module:
    """A seeded eval-mode model whose BatchNorm statistics are not the identity (so folding matters)."""
    torch.manual_seed(0)
    model = build_model(arch, num_classes).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("arch", ["resnet8", "resnet20", "wrn_16_2", "ShuffleV1", "MobileNetV2"])
def test_folded_model_computes_the_same_logits(arch):
    _assert_folding_keeps_logits(_random_bn_model(arch, 100), torch.randn(8, 3, 32, 32), arch)


def _assert_folding_keeps_logits(model: nn.Module, x: torch.Tensor, arch: str) -> None:
    folded = fold_batchnorm(model)
    with torch.no_grad():
        ref, out = model(x), folded(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    after = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert after < before and folded.arch == arch
    # the original keeps its BatchNorm layers and weights
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == before


def test_untraceable_models_are_returned_unchanged():
    model = build_model("vgg8", 10).eval()
    assert fold_batchnorm(model) is model


@pytest.mark.parametrize("arch", ["resnet8", "wrn_16_2", "MobileNetV2", "ShuffleV2"])
def test_folded_features_equal_the_models_features(arch):
    model = _random_bn_model(arch, 10)
    folded = fold_batchnorm(model, return_features=True)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) < sum(
        isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref, out = model(x, return_features=True), folded(x)
    for name in ("logits", "penultimate"):
        a, b = getattr(ref, name), getattr(out, name)
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    for name in ("maps", "preact_maps"):
        for a, b in zip(getattr(ref, name), getattr(out, name), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


def test_untraceable_models_still_hand_out_features():
    model = build_model("vgg8", 10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = fold_batchnorm(model, return_features=True)(x)
        assert torch.equal(out.logits, model(x)) and len(out.preact_maps) == 5
