"""The contract every mixkd model follows: plain logits by default, named features on request."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ModelOutput(NamedTuple):
    """What `model(x, return_features=True)` returns (a frozen teacher may fill only `logits`)."""

    logits: Tensor
    # the pooled vector fed to the final linear layer, shape (N, classifier.in_features)
    penultimate: Tensor | None = None
    # one map per stage, pre-pooling; penultimate is the global average of maps[-1]
    maps: list[Tensor] | None = None
    # the same stages before their last ReLU (equal to the map where a stage does not end in a ReLU)
    preact_maps: list[Tensor] | None = None


class ZooModel(nn.Module):
    """Base class: a family implements `forward_stages`; pooling and the linear head live here."""

    # dotted name of the final nn.Linear inside the model (kept for checkpoint compatibility)
    head_name: str = "fc"
    # leading maps that come before the first down-sampling stage (VGG's block0): feature distillers
    # skip them, as RepDistiller's feat[1:-1] does
    stem_maps: int = 0

    def __init__(self, arch: str, num_classes: int) -> None:
        super().__init__()
        self.arch = arch
        self.num_classes = num_classes

    def forward_stages(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Run the body: (one map per stage, the last one ready for pooling; the same maps before their last ReLU)."""
        raise NotImplementedError

    def forward_maps(self, x: Tensor) -> list[Tensor]:
        """One feature map per stage, the last one ready for pooling."""
        return self.forward_stages(x)[0]

    def preact_bns(self) -> list[nn.BatchNorm2d]:
        """Per stage, the BatchNorm behind its pre-activation map (before a residual sum or concatenation
        where the block has one), as RepDistiller's get_bn_before_relu; OFD derives its margins from them."""
        raise NotImplementedError

    def get_classifier(self) -> nn.Linear:
        """The final linear layer."""
        head = self.get_submodule(self.head_name)
        assert isinstance(head, nn.Linear)
        return head

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | ModelOutput:
        """Logits, or a ModelOutput with the penultimate vector and per-stage maps (post- and pre-activation)."""
        maps, preact = self.forward_stages(x)
        penultimate = torch.flatten(F.adaptive_avg_pool2d(maps[-1], 1), 1)
        logits = self.get_classifier()(penultimate)
        if return_features:
            return ModelOutput(logits, penultimate, maps, preact)
        return logits


def run_stages(x: Tensor, stages: tuple[nn.Sequential, ...]) -> tuple[list[Tensor], list[Tensor]]:
    """Run stages whose blocks end in ReLU(`block.preact(x)`): (stage outputs, their pre-ReLU values)."""
    maps, preacts = [], []
    for stage in stages:
        blocks = list(stage)
        for block in blocks[:-1]:
            x = block(x)
        pre = blocks[-1].preact(x)
        x = F.relu(pre)
        maps.append(x)
        preacts.append(pre)
    return maps, preacts


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
