"""MobileNetV2 at half width for CIFAR (the community zoo's `MobileNetV2`, a.k.a. mobile_half)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.models.base import ZooModel, init_weights
from mixkd.models.registry import MODELS, describe

# (expansion, output channels at width 1, repeats, first stride) per block group
_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# groups whose outputs are reported as maps: the last one at each resolution (16, 8, 4, 2 px for 32 px input)
_MAP_GROUPS = (1, 2, 4)


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise, linear 1x1 project; residual when shape is kept."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.use_residual = stride == 1 and in_ch == out_ch
        # the expansion conv is kept even when expansion == 1, as in the reference checkpoints
        self.conv = nn.Sequential(
            *_conv_bn_relu(in_ch, hidden, 1, 1),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class CifarMobileNetV2(ZooModel):
    """Strided 3x3 stem, seven inverted-residual groups, a 1x1 conv to 1280 channels, `classifier.0`."""

    head_name = "classifier.0"

    def __init__(self, arch: str, width: float, num_classes: int) -> None:
        super().__init__(arch, num_classes)
        in_ch = int(32 * width)
        self.conv1 = _conv_bn_relu(3, in_ch, 3, 2)
        self.blocks = nn.ModuleList()
        for expansion, channels, repeats, stride in _SETTING:
            out_ch = int(channels * width)
            group = []
            for i in range(repeats):
                group.append(InvertedResidual(in_ch, out_ch, stride if i == 0 else 1, expansion))
                in_ch = out_ch
            self.blocks.append(nn.Sequential(*group))
        last = int(1280 * width) if width > 1.0 else 1280
        self.conv2 = _conv_bn_relu(in_ch, last, 1, 1)
        self.classifier = nn.Sequential(nn.Linear(last, num_classes))
        init_weights(self)

    def forward_stages(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Outputs of block groups 1, 2 and 4, then group 6 after the 1x1 conv head.

        The groups end in a linear projection (no ReLU), so their pre-activation maps are the maps; the
        head's is its BatchNorm output.
        """
        x = self.conv1(x)
        maps = []
        for i, group in enumerate(self.blocks):
            x = group(x)
            if i in _MAP_GROUPS:
                maps.append(x)
        conv, bn, _ = self.conv2  # its ReLU is in-place, which would overwrite `pre`
        pre = bn(conv(x))
        return [*maps, F.relu(pre)], [*maps, pre]

    def preact_bns(self) -> list[nn.BatchNorm2d]:
        """The projection BatchNorm of each reported group's last block, then the head's."""
        return [self.blocks[g][-1].conv[-1] for g in _MAP_GROUPS] + [self.conv2[1]]


@MODELS.register("MobileNetV2")
def mobilenetv2_half(num_classes: int) -> CifarMobileNetV2:
    """MobileNetV2 with expansion 6 and width 0.5."""
    return CifarMobileNetV2("MobileNetV2", 0.5, num_classes)


describe("MobileNetV2", "mobilenet", "half width (×0.5), inverted residuals with expansion 6")
