"""Wide ResNets (wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2): pre-activation blocks, widths 16k/32k/64k."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.models.base import ZooModel, init_weights
from mixkd.models.registry import MODELS, describe


class WideBlock(nn.Module):
    """BN-ReLU-conv twice; a 1x1 projection on the shortcut when the width changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        # the attribute name is the community checkpoints' key
        self.convShortcut = None if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x: Tensor, pre: Tensor | None = None) -> Tensor:
        """`pre` is bn1(x) when the caller has computed it already (the stage's pre-activation map)."""
        act = F.relu(self.bn1(x) if pre is None else pre)
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        # the projection sees the pre-activated input, the identity the raw one (as the reference does)
        shortcut = x if self.convShortcut is None else self.convShortcut(act)
        return out + shortcut


class WideStage(nn.Module):
    """A group of wide blocks; the inner `layer` name matches the community keys."""

    def __init__(self, blocks: int, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *(WideBlock(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1) for i in range(blocks))
        )

    def forward(self, x: Tensor, pre: Tensor | None = None) -> Tensor:
        """`pre`: the first block's bn1(x), if already computed."""
        blocks = list(self.layer)
        x = blocks[0](x, pre)
        for block in blocks[1:]:
            x = block(x)
        return x

    def entry_bn(self) -> nn.BatchNorm2d:
        """The BatchNorm the stage applies to its input first (pre-activation blocks)."""
        return self.layer[0].bn1


class WideResNet(ZooModel):
    """3x3 stem, three wide stages, a final BN-ReLU, global pooling and `fc`."""

    def __init__(self, arch: str, depth: int, widen: int, num_classes: int) -> None:
        super().__init__(arch, num_classes)
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.block1 = WideStage(n, widths[0], widths[1], 1)
        self.block2 = WideStage(n, widths[1], widths[2], 2)
        self.block3 = WideStage(n, widths[2], widths[3], 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        init_weights(self)

    def forward_stages(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Outputs of block1 and block2, then block3 after the final BN-ReLU.

        Pre-activation maps (as RepDistiller's preact): the BatchNorm output that the next ReLU reads, i.e.
        the next stage's first bn1 applied to block1/block2 (computed once and handed to that block) and the
        final bn1 for block3.
        """
        x = self.conv1(x)
        f1 = self.block1(x)
        p1 = self.block2.entry_bn()(f1)
        f2 = self.block2(f1, p1)
        p2 = self.block3.entry_bn()(f2)
        p3 = self.bn1(self.block3(f2, p2))
        return [f1, f2, F.relu(p3)], [p1, p2, p3]

    def preact_bns(self) -> list[nn.BatchNorm2d]:
        """The BatchNorms that produce the pre-activation maps: block2's and block3's first bn1, then bn1."""
        return [self.block2.entry_bn(), self.block3.entry_bn(), self.bn1]


def _register(depth: int, widen: int) -> None:
    name = f"wrn_{depth}_{widen}"

    @MODELS.register(name)
    def build(num_classes: int) -> WideResNet:
        return WideResNet(name, depth, widen, num_classes)

    describe(name, "wrn", f"depth {depth}, width ×{widen}: 3 stages of {(depth - 4) // 6} pre-activation blocks, "
                          f"{16 * widen}/{32 * widen}/{64 * widen} channels")


for _depth, _widen in ((16, 1), (16, 2), (40, 1), (40, 2)):
    _register(_depth, _widen)
