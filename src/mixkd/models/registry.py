"""The model registry: every architecture is built by name through `build_model`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from mixkd.errors import ConfigError
from mixkd.registry import Registry

# each entry is a factory `(num_classes: int) -> nn.Module` whose result has `arch` and `num_classes`
MODELS: Registry[Callable[[int], nn.Module]] = Registry("model")


# `mixkd models` lists the families in this order: CIFAR-size models first, then ImageNet's.
FAMILIES = {
    "resnet": ("cifar", "ResNet, CIFAR variant (He et al. 2016; community KD zoo)"),
    "wrn": ("cifar", "Wide ResNet (Zagoruyko & Komodakis 2016)"),
    "vgg": ("cifar", "VGG with BatchNorm, CIFAR variant (Simonyan & Zisserman 2015)"),
    "resnet50": ("cifar", "ResNet50, CIFAR bottleneck variant"),
    "mobilenet": ("cifar", "MobileNetV2, CIFAR variant (Sandler et al. 2018)"),
    "shufflenet": ("cifar", "ShuffleNet, CIFAR variants (Zhang et al. 2018; Ma et al. 2018)"),
    "imagenet": ("imagenet", "ResNet, torchvision's ImageNet models"),
}
SCALES = {"cifar": ("CIFAR-size models: 32×32 images (Fashion-MNIST is padded to that)", 100),
          "imagenet": ("ImageNet-size models: 224×224 images", 1000)}


@dataclass(frozen=True)
class ModelCard:
    """What `mixkd models` says of one architecture: its family and a line on its depth and width."""

    name: str
    family: str  # a key of FAMILIES
    about: str


CARDS: dict[str, ModelCard] = {}  # in registration order, which each family file keeps sensible (by depth)


def describe(name: str, family: str, about: str) -> None:
    """Record the family and one-line description of the architecture registered as `name`."""
    if family not in FAMILIES:
        raise ValueError(f"model family {family!r} is not one of {', '.join(FAMILIES)}")
    CARDS[name] = ModelCard(name, family, about)


def parameter_count(name: str, num_classes: int) -> int:
    """Parameters of architecture `name` with a `num_classes`-way classifier (built on the meta device: no memory)."""
    import torch

    with torch.device("meta"):
        model = build_model(name, num_classes)
    return sum(p.numel() for p in model.parameters())


def model_catalogue() -> list[tuple[str, int, list[tuple[str, list[ModelCard]]]]]:
    """[(scale heading, classes its parameters are counted with, [(family title, its cards)])] in listing order."""
    out = []
    for scale, (heading, classes) in SCALES.items():
        families = [(title, [c for c in CARDS.values() if c.family == key])
                    for key, (where, title) in FAMILIES.items() if where == scale]
        out.append((heading, classes, [(t, cards) for t, cards in families if cards]))
    return out


def build_model(name: str, num_classes: int) -> nn.Module:
    """Build the registered architecture `name` with a fresh `num_classes`-way classifier."""
    factory = MODELS.get(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    return factory(num_classes)


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    return MODELS.names()
