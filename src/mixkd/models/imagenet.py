"""ImageNet ResNets (resnet18, resnet34) from torchvision, adapted to the mixkd feature API."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchvision import models as tv

from mixkd.models.base import ZooModel
from mixkd.models.registry import MODELS, describe


class TorchvisionResNet(ZooModel):
    """Adopts a torchvision ResNet's modules as its own, so state_dict keys stay torchvision's."""

    def __init__(self, arch: str, net: tv.ResNet, num_classes: int) -> None:
        super().__init__(arch, num_classes)
        for name, module in net.named_children():
            if name != "avgpool":  # pooling is shared in ZooModel.forward
                self.add_module(name, module)

    def forward_stages(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Outputs of layer1 ... layer4, and their last residual sums before the ReLU."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps, preacts = [], []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            blocks = list(stage)
            for block in blocks[:-1]:
                x = block(x)
            pre = _basic_block_preact(blocks[-1], x)
            x = torch.relu(pre)
            maps.append(x)
            preacts.append(pre)
        return maps, preacts

    def preact_bns(self) -> list[nn.BatchNorm2d]:
        """bn2 of each stage's last block."""
        return [stage[-1].bn2 for stage in (self.layer1, self.layer2, self.layer3, self.layer4)]


def _basic_block_preact(block: tv.resnet.BasicBlock, x: Tensor) -> Tensor:
    """torchvision's BasicBlock.forward without its last ReLU."""
    out = block.relu(block.bn1(block.conv1(x)))
    out = block.bn2(block.conv2(out))
    identity = x if block.downsample is None else block.downsample(x)
    return out + identity


def _register(name: str, make: Callable[..., tv.ResNet], about: str) -> None:
    @MODELS.register(name)
    def build(num_classes: int) -> TorchvisionResNet:
        return TorchvisionResNet(name, make(weights=None, num_classes=num_classes), num_classes)

    describe(name, "imagenet", f"torchvision's {about}, 64 to 512 channels")


_register("resnet18", tv.resnet18, "ResNet-18: 4 stages of 2 basic blocks")
_register("resnet34", tv.resnet34, "ResNet-34: 4 stages of 3/4/6/3 basic blocks")
