"""ImageNet ResNets (resnet18, resnet34) from torchvision, adapted to the mixkd feature API."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor
from torchvision import models as tv

from mixkd.models.base import ZooModel
from mixkd.models.registry import MODELS


class TorchvisionResNet(ZooModel):
    """Adopts a torchvision ResNet's modules as its own, so state_dict keys stay torchvision's."""

    def __init__(self, arch: str, net: tv.ResNet, num_classes: int) -> None:
        super().__init__(arch, num_classes)
        for name, module in net.named_children():
            if name != "avgpool":  # pooling is shared in ZooModel.forward
                self.add_module(name, module)

    def forward_maps(self, x: Tensor) -> list[Tensor]:
        """Outputs of layer1 ... layer4."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            maps.append(x)
        return maps


def _register(name: str, make: Callable[..., tv.ResNet]) -> None:
    @MODELS.register(name)
    def build(num_classes: int) -> TorchvisionResNet:
        return TorchvisionResNet(name, make(weights=None, num_classes=num_classes), num_classes)


_register("resnet18", tv.resnet18)
_register("resnet34", tv.resnet34)
