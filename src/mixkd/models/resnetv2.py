"""ResNet50 for CIFAR: four stages of bottleneck blocks behind a 3x3 stem (no max-pool)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.models.base import ZooModel, init_weights, run_stages
from mixkd.models.registry import MODELS, describe

_EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand; ReLU after the residual sum."""

    def __init__(self, in_ch: int, planes: int, stride: int) -> None:
        super().__init__()
        out_ch = planes * _EXPANSION
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        # an empty Sequential is the identity and adds no state_dict keys
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def preact(self, x: Tensor) -> Tensor:
        """The residual sum before the block's last ReLU."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.preact(x))


class CifarBottleneckResNet(ZooModel):
    """Stages of 64, 128, 256 and 512 planes (x4 outputs), global pooling, `linear` head."""

    head_name = "linear"

    def __init__(self, arch: str, blocks: tuple[int, int, int, int], num_classes: int) -> None:
        super().__init__(arch, num_classes)
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_ch = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            stride = 1 if i == 0 else 2
            stage = [
                Bottleneck(in_ch if j == 0 else planes * _EXPANSION, planes, stride if j == 0 else 1)
                for j in range(n)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            in_ch = planes * _EXPANSION
        self.linear = nn.Linear(512 * _EXPANSION, num_classes)
        init_weights(self)

    def forward_stages(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Outputs of layer1 ... layer4 (and their last residual sums before the ReLU)."""
        x = F.relu(self.bn1(self.conv1(x)))
        return run_stages(x, (self.layer1, self.layer2, self.layer3, self.layer4))

    def preact_bns(self) -> list[nn.BatchNorm2d]:
        """bn3 of each stage's last block."""
        return [stage[-1].bn3 for stage in (self.layer1, self.layer2, self.layer3, self.layer4)]


@MODELS.register("ResNet50")
def resnet50(num_classes: int) -> CifarBottleneckResNet:
    """The CIFAR bottleneck ResNet50 of the community zoo."""
    return CifarBottleneckResNet("ResNet50", (3, 4, 6, 3), num_classes)


describe("ResNet50", "resnet50", "50 layers: 4 stages of 3/4/6/3 bottleneck blocks, 256 to 2048 channels")
