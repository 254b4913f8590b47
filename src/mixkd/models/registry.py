"""The model registry: every architecture is built by name through `build_model`."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from mixkd.errors import ConfigError
from mixkd.registry import Registry

# each entry is a factory `(num_classes: int) -> nn.Module` whose result has `arch` and `num_classes`
MODELS: Registry[Callable[[int], nn.Module]] = Registry("model")


def build_model(name: str, num_classes: int) -> nn.Module:
    """Build the registered architecture `name` with a fresh `num_classes`-way classifier."""
    factory = MODELS.get(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    return factory(num_classes)


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    return MODELS.names()
