"""VGG with BatchNorm for CIFAR (vgg8, vgg11, vgg13, vgg16, vgg19): five conv blocks, no FC stack."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.models.base import ZooModel, init_weights
from mixkd.models.registry import MODELS, describe

# output channels of the 3x3 convs in each of the five blocks
_CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


def _block(in_ch: int, widths: tuple[int, ...]) -> nn.Sequential:
    """conv-BN-ReLU repeated, without the last ReLU (applied in forward so the block ends pre-activation)."""
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(in_ch, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        in_ch = w
    return nn.Sequential(*layers[:-1])


class CifarVGG(ZooModel):
    """Blocks 0-3 are each followed by a 2x2 max-pool (block 3's only for inputs of 64 px or more)."""

    head_name = "classifier"
    stem_maps = 1  # block0 runs at full resolution, before the first pooling

    def __init__(self, arch: str, config: tuple[tuple[int, ...], ...], num_classes: int) -> None:
        super().__init__(arch, num_classes)
        in_ch = 3
        for i, widths in enumerate(config):
            self.add_module(f"block{i}", _block(in_ch, widths))
            in_ch = widths[-1]
        self.classifier = nn.Linear(in_ch, num_classes)
        init_weights(self)

    def forward_stages(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Outputs (after ReLU) of block0 ... block4, and the same before the ReLU."""
        # the reference keeps block4 at 1/8 resolution for 32 px inputs, 1/16 for 64 px (TinyImageNet)
        pool_before_last = x.shape[-2] >= 64
        blocks = (self.block0, self.block1, self.block2, self.block3, self.block4)
        maps, preacts = [], []
        for i, block in enumerate(blocks):
            if i > 0 and (i < 4 or pool_before_last):
                x = F.max_pool2d(x, 2, 2)
            pre = block(x)
            x = F.relu(pre)
            maps.append(x)
            preacts.append(pre)
        return maps, preacts

    def preact_bns(self) -> list[nn.BatchNorm2d]:
        """The last BatchNorm of each block."""
        return [getattr(self, f"block{i}")[-1] for i in range(5)]


def _register(name: str) -> None:
    @MODELS.register(name)
    def build(num_classes: int) -> CifarVGG:
        return CifarVGG(name, _CONFIGS[name], num_classes)

    convs = sum(len(block) for block in _CONFIGS[name])
    describe(name, "vgg", f"{convs} 3×3 conv layers with BatchNorm in 5 blocks, 64 to 512 channels, one linear head")


for _name in _CONFIGS:
    _register(_name)
