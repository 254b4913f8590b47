"""FT: factor transfer through a paraphraser (teacher side) and a translator (student side)."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.distill.terms.adapt import pool_to_smaller
from mixkd.distill.terms.base import FeatureTerm, register
from mixkd.errors import ConfigError
from mixkd.params import Positive, Range
from mixkd.runtime import autocast


def _chain(channels: list[int], transposed: bool, bn: bool) -> nn.Sequential:
    """3x3 (transposed) convs through `channels`, each followed by [BatchNorm] and LeakyReLU(0.1)."""
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
        layers.append(conv(c_in, c_out, kernel_size=3, stride=1, padding=1))
        if bn:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.LeakyReLU(0.1))
    return nn.Sequential(*layers)


class Paraphraser(nn.Module):
    """Autoencoder of a teacher map: its encoder's output is the teacher factor (no BatchNorm)."""

    def __init__(self, channels: int, rate: float) -> None:
        super().__init__()
        mid = int(channels * rate)
        self.encoder = _chain([channels, channels, mid, mid], transposed=False, bn=False)
        self.decoder = _chain([mid, mid, channels, channels], transposed=True, bn=False)

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction of x."""
        return self.decoder(self.encoder(x))


def factor(f: Tensor, p: float) -> Tensor:
    """RepDistiller's factor: the L2-normalised channel mean of f^p, flattened (AT-style)."""
    return F.normalize(f.pow(p).mean(dim=1).flatten(1), dim=1)


@register("ft")
class FactorTransfer(FeatureTerm):
    """Σ_pairs mean |factor(translator(s)) - factor(encoder(t))|^p2 (published p2 = 1: mean absolute).

    Init stage (`init_stage="teacher-side modules"`): the paraphraser learns to reconstruct the
    teacher's map, `paraphraser_loss(t)` = MSE(decoder(encoder(t)), t). Main stage: the
    translator (3x3 convs student -> student -> rate·C_t -> rate·C_t, each with BatchNorm and
    LeakyReLU 0.1) is trained, the paraphraser frozen (`stage_parameters`); factors of different
    spatial sizes are average-pooled to the smaller one. Departure from the paper, kept for the
    published β 200: the paper's factor is the whole encoder output L2-normalised as one vector;
    RepDistiller's is the AT-style map above (channel mean of f^p1, p1 = 2). RepDistiller trains
    the paraphraser at lr 0.01 for ResNet/WRN students.
    """

    reads = "maps"
    stages = "last"
    paper = ("Kim, Park & Kwak, Paraphrasing Complex Network: Network Compression via Factor Transfer, "
             "NeurIPS 2018")
    default_weight = 200.0
    init_stage = "teacher-side modules"

    def __init__(self, student_shapes, teacher_shapes, *, rate: Annotated[float, Range(0.0, 1.0, open_lo=True)] = 0.5,
                 p1: Positive = 2.0,
                 p2: Positive = 1.0) -> None:
        super().__init__(student_shapes, teacher_shapes)
        if not 0 < rate <= 1 or any(int(t[0] * rate) < 1 for _, t in self.pairs):
            raise ConfigError(f"distill term 'ft': rate must be in (0, 1] and leave >= 1 channel, got {rate}")
        if p1 <= 0 or p2 <= 0:
            raise ConfigError(f"distill term 'ft': p1 and p2 must be positive, got {p1}, {p2}")
        self.p1, self.p2 = float(p1), float(p2)
        self.paraphrasers = nn.ModuleList(Paraphraser(t[0], rate) for _, t in self.pairs)
        self.translators = nn.ModuleList(
            _chain([s[0], s[0], int(t[0] * rate), int(t[0] * rate)], transposed=False, bn=True)
            for s, t in self.pairs)

    def paraphraser_loss(self, t: list[Tensor]) -> Tensor:
        """The init-stage loss: how well each paraphraser reconstructs its teacher map."""
        t = self._teacher(t)
        with autocast(t[0].device.type, "fp32"):
            return self._reconstruction(t)

    def _reconstruction(self, t: list[Tensor]) -> Tensor:
        return torch.stack([F.mse_loss(para(ft), ft) for para, ft in zip(self.paraphrasers, t, strict=True)]).sum()

    def compute_init(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        return self._reconstruction(t)

    def compute(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        losses = []
        for para, trans, fs, ft in zip(self.paraphrasers, self.translators, s, t, strict=True):
            with torch.no_grad():  # the paraphraser is frozen after its stage
                factor_t = para.encoder(ft)
            fs, ft = pool_to_smaller(trans(fs), factor_t)
            diff = factor(fs, self.p1) - factor(ft, self.p1)
            losses.append(diff.abs().pow(self.p2).mean())
        return torch.stack(losses).sum()

    def stage_parameters(self, stage: str) -> list[nn.Parameter]:
        """Init: the paraphrasers; main: the translators."""
        super().stage_parameters(stage)  # validates the name
        return list((self.paraphrasers if stage == "init" else self.translators).parameters())
