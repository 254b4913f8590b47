"""The contract every mixkd model follows: plain logits by default, named features on request."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ModelOutput(NamedTuple):
    """What `model(x, return_features=True)` returns."""

    logits: Tensor
    # the pooled vector fed to the final linear layer, shape (N, classifier.in_features)
    penultimate: Tensor
    # one map per stage, pre-pooling; penultimate is the global average of maps[-1]
    maps: list[Tensor]


class ZooModel(nn.Module):
    """Base class: a family implements `forward_maps`; pooling and the linear head live here."""

    # dotted name of the final nn.Linear inside the model (kept for checkpoint compatibility)
    head_name: str = "fc"

    def __init__(self, arch: str, num_classes: int) -> None:
        super().__init__()
        self.arch = arch
        self.num_classes = num_classes

    def forward_maps(self, x: Tensor) -> list[Tensor]:
        """Run the body and return one feature map per stage, the last one ready for pooling."""
        raise NotImplementedError

    def get_classifier(self) -> nn.Linear:
        """The final linear layer."""
        head = self.get_submodule(self.head_name)
        assert isinstance(head, nn.Linear)
        return head

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | ModelOutput:
        """Logits, or a ModelOutput with the penultimate vector and per-stage maps."""
        maps = self.forward_maps(x)
        penultimate = torch.flatten(F.adaptive_avg_pool2d(maps[-1], 1), 1)
        logits = self.get_classifier()(penultimate)
        if return_features:
            return ModelOutput(logits, penultimate, maps)
        return logits


def init_weights(model: nn.Module) -> None:
    """He-normal (fan-out) convolutions and unit/zero BatchNorm, as the CIFAR zoo initialises."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
