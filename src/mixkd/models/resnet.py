"""CIFAR ResNets (resnet8 ... resnet110, resnet8x4, resnet32x4): three stages of basic blocks."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.models.base import ZooModel, init_weights, run_stages
from mixkd.models.registry import MODELS, describe


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection, ReLU after the sum."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def preact(self, x: Tensor) -> Tensor:
        """The residual sum before the block's last ReLU."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.preact(x))


class CifarResNet(ZooModel):
    """A 3x3 stem, then three stages at 1, 1/2 and 1/4 resolution, global pooling and `fc`."""

    def __init__(self, arch: str, depth: int, widths: tuple[int, int, int, int], num_classes: int) -> None:
        super().__init__(arch, num_classes)
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1 = _stage(widths[0], widths[1], blocks, stride=1)
        self.layer2 = _stage(widths[1], widths[2], blocks, stride=2)
        self.layer3 = _stage(widths[2], widths[3], blocks, stride=2)
        self.fc = nn.Linear(widths[3], num_classes)
        init_weights(self)

    def forward_stages(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Outputs of layer1, layer2 and layer3 (and their last residual sums before the ReLU)."""
        x = F.relu(self.bn1(self.conv1(x)))
        return run_stages(x, (self.layer1, self.layer2, self.layer3))

    def preact_bns(self) -> list[nn.BatchNorm2d]:
        """bn2 of each stage's last block."""
        return [stage[-1].bn2 for stage in (self.layer1, self.layer2, self.layer3)]


def _stage(in_ch: int, out_ch: int, blocks: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        *(BasicBlock(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1) for i in range(blocks))
    )


_THIN = (16, 16, 32, 64)
_WIDE = (32, 64, 128, 256)  # the "x4" variants
_SPECS: dict[str, tuple[int, tuple[int, int, int, int]]] = {
    **{f"resnet{d}": (d, _THIN) for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": (8, _WIDE),
    "resnet32x4": (32, _WIDE),
}


def _register(name: str, depth: int, widths: tuple[int, int, int, int]) -> None:
    @MODELS.register(name)
    def build(num_classes: int) -> CifarResNet:
        return CifarResNet(name, depth, widths, num_classes)

    n = (depth - 2) // 6
    wide = " (4× wide)" if widths == _WIDE else ""
    describe(name, "resnet", f"{depth} layers: 3 stages of {n} basic block{'s' * (n > 1)}, "
                             f"{widths[1]}/{widths[2]}/{widths[3]} channels{wide}")


for _name, (_depth, _widths) in _SPECS.items():
    _register(_name, _depth, _widths)
