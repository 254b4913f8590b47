"""ShuffleNet V1 for CIFAR (the community zoo's `ShuffleV1`: groups=3, widths 240/480/960)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.models.base import ZooModel, init_weights, run_stages
from mixkd.models.registry import MODELS, describe


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave channels across `groups` (N, g*c, H, W) -> (N, c*g, H, W); works for any memory format."""
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


class ShuffleUnit(nn.Module):
    """Grouped 1x1, shuffle, depthwise 3x3, grouped 1x1; strided units concat an avg-pooled shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, groups: int) -> None:
        super().__init__()
        mid = out_ch // 4
        # the stem has only 24 channels, so the first unit's 1x1 conv is not grouped
        self.first_groups = 1 if in_ch == 24 else groups
        self.stride = stride
        self.conv1 = nn.Conv2d(in_ch, mid, 1, groups=self.first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_ch, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)

    def preact(self, x: Tensor) -> Tensor:
        """The unit's output before its last ReLU."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.first_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            return torch.cat([out, F.avg_pool2d(x, 3, 2, 1)], 1)
        return out + x

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.preact(x))


class CifarShuffleNetV1(ZooModel):
    """1x1 stem (no downsampling), three stages that each halve the resolution, `linear` head."""

    head_name = "linear"

    def __init__(
        self,
        arch: str,
        widths: tuple[int, int, int],
        blocks: tuple[int, int, int],
        groups: int,
        num_classes: int,
    ) -> None:
        super().__init__(arch, num_classes)
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        in_ch = 24
        for i, (width, n) in enumerate(zip(widths, blocks, strict=True)):
            # the strided first unit concatenates its input, so its own branch makes width - in_ch channels
            units = [ShuffleUnit(in_ch, width - in_ch, 2, groups)]
            units += [ShuffleUnit(width, width, 1, groups) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*units))
            in_ch = width
        self.linear = nn.Linear(in_ch, num_classes)
        init_weights(self)

    def forward_stages(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Outputs of layer1, layer2 and layer3 (and their values before the last ReLU)."""
        x = F.relu(self.bn1(self.conv1(x)))
        return run_stages(x, (self.layer1, self.layer2, self.layer3))

    def preact_bns(self) -> list[nn.BatchNorm2d]:
        """bn3 of each stage's last unit."""
        return [stage[-1].bn3 for stage in (self.layer1, self.layer2, self.layer3)]


@MODELS.register("ShuffleV1")
def shufflev1(num_classes: int) -> CifarShuffleNetV1:
    """ShuffleNet V1, 3 groups, stages of 4, 8 and 4 units."""
    return CifarShuffleNetV1("ShuffleV1", (240, 480, 960), (4, 8, 4), 3, num_classes)


describe("ShuffleV1", "shufflenet", "ShuffleNet V1, 3 groups: stages of 4/8/4 units, 240/480/960 channels")
