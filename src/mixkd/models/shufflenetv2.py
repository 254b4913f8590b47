"""ShuffleNet V2 (1x) for CIFAR (the community zoo's `ShuffleV2`: widths 116/232/464, head 1024)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.errors import ConfigError
from mixkd.models.base import ZooModel, init_weights
from mixkd.models.registry import MODELS, describe
from mixkd.models.shufflenetv1 import channel_shuffle


def _conv_bn(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, depthwise: bool = False
) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=in_ch if depthwise else 1, bias=False)
    return conv, nn.BatchNorm2d(out_ch)


class SplitUnit(nn.Module):
    """Keep half the channels, transform the other half (1x1, depthwise 3x3, 1x1), concat and shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.conv1, self.bn1 = _conv_bn(half, half, 1)
        self.conv2, self.bn2 = _conv_bn(half, half, 3, depthwise=True)
        self.conv3, self.bn3 = _conv_bn(half, half, 1)

    def forward(self, x: Tensor) -> Tensor:
        kept, branch = x.chunk(2, dim=1)
        out = F.relu(self.bn1(self.conv1(branch)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return channel_shuffle(torch.cat([kept, out], 1), 2)


class DownUnit(nn.Module):
    """Two strided branches over the whole input, each giving half the output channels."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        half = out_ch // 2
        # left branch: depthwise 3x3 (stride 2), 1x1
        self.conv1, self.bn1 = _conv_bn(in_ch, in_ch, 3, 2, depthwise=True)
        self.conv2, self.bn2 = _conv_bn(in_ch, half, 1)
        # right branch: 1x1, depthwise 3x3 (stride 2), 1x1
        self.conv3, self.bn3 = _conv_bn(in_ch, half, 1)
        self.conv4, self.bn4 = _conv_bn(half, half, 3, 2, depthwise=True)
        self.conv5, self.bn5 = _conv_bn(half, half, 1)

    def forward(self, x: Tensor) -> Tensor:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return channel_shuffle(torch.cat([left, right], 1), 2)


class CifarShuffleNetV2(ZooModel):
    """1x1 stem, three stages (a DownUnit then SplitUnits), 1x1 conv head, `linear` classifier."""

    head_name = "linear"

    def __init__(
        self, arch: str, widths: tuple[int, int, int, int], blocks: tuple[int, int, int], num_classes: int
    ) -> None:
        super().__init__(arch, num_classes)
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        in_ch = 24
        for i, (width, n) in enumerate(zip(widths[:3], blocks, strict=True)):
            units = [DownUnit(in_ch, width), *(SplitUnit(width) for _ in range(n))]
            self.add_module(f"layer{i + 1}", nn.Sequential(*units))
            in_ch = width
        self.conv2 = nn.Conv2d(in_ch, widths[3], 1, bias=False)
        self.bn2 = nn.BatchNorm2d(widths[3])
        self.linear = nn.Linear(widths[3], num_classes)
        init_weights(self)

    def forward_stages(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Outputs of layer1 and layer2, then layer3 after the 1x1 conv head (pre-ReLU: the head's BN output).

        layer1 and layer2 end in a channel shuffle, not a ReLU, so their pre-activation maps are the maps.
        """
        x = F.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        p3 = self.bn2(self.conv2(self.layer3(f2)))
        f3 = F.relu(p3)
        return [f1, f2, f3], [f1, f2, p3]

    def preact_bns(self) -> list[nn.BatchNorm2d]:
        """Not defined: layer1 and layer2 end in a concatenation of an untouched half and a ReLU branch."""
        raise ConfigError("ShuffleV2 has no BatchNorm behind its first two stage maps (they concatenate an "
                          "untouched half), so it cannot be OFD's teacher; as RepDistiller, use it as a student")


@MODELS.register("ShuffleV2")
def shufflev2(num_classes: int) -> CifarShuffleNetV2:
    """ShuffleNet V2 1x, stages of 3, 7 and 3 split units."""
    return CifarShuffleNetV2("ShuffleV2", (116, 232, 464, 1024), (3, 7, 3), num_classes)


describe("ShuffleV2", "shufflenet", "ShuffleNet V2 1×: stages of 3/7/3 units, 116/232/464 channels, 1024 at the head")
