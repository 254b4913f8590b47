"""How good a mixing is for distillation, read from the teacher alone (Wang et al., NeurIPS 2022).

Wang et al. ("What Makes a 'Good' Data Augmentation in Knowledge Distillation - A Statistical Perspective")
show that an augmentation helps KD more the lower the variance of the teacher's mean probability over the
augmented samples it produces, and measure it as "T. stddev": the samples are split into groups, each group's
mean softmax vector is taken, and the standard deviation of those means across groups, averaged over classes,
is the statistic. mixkd computes it for each mixing on the training rows (unaugmented, in the loader's fixed
order, so every mixing sees the same images), with the mixing's own rows, partners and λ as a run would draw
them. Lower is better by their finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mixkd.analysis.loading import EvalData, LoadedModel
from mixkd.analysis.logits import entropy
from mixkd.config import MixingConfig
from mixkd.errors import ConfigError
from mixkd.mixing import build_mixer, mixing_needs_teacher
from mixkd.progress import progress


def default_group(samples: int) -> int:
    """640 samples per group (10 batches of 64), or a tenth of the samples when there are fewer than 6400."""
    return max(1, min(640, samples // 10))


def teacher_stddev(probs: Tensor, group: int | None = None) -> float:
    """Wang et al.'s T. stddev of `probs` [N, C]: std (population) over consecutive groups of `group` rows
    (default: `default_group`) of each group's mean probability vector, averaged over classes. A last,
    incomplete group is left out."""
    group = group or default_group(probs.shape[0])
    groups = probs.shape[0] // group
    if groups < 2:
        raise ConfigError(f"--group {group}: {probs.shape[0]} samples make fewer than 2 groups; lower --group or "
                          "raise --passes")
    means = probs[: groups * group].double().view(groups, group, -1).mean(dim=1)  # [G, C]
    return float(means.std(dim=0, unbiased=False).mean())


@dataclass
class AugmentationStats:
    """One teacher under one mixing."""

    model: str
    mixing: str
    samples: int
    stddev: float  # Wang et al.'s T. stddev
    entropy: float  # mean entropy of the teacher's softmax on the mixed samples, nats

    def to_json(self) -> dict:
        return {"model": self.model, "mixing": self.mixing, "samples": self.samples, "t_stddev": self.stddev,
                "mean_entropy": self.entropy}


@torch.no_grad()
def teacher_probs(model: LoadedModel, data: EvalData, cfg: MixingConfig, passes: int, seed: int) -> Tensor:
    """[N, C] the teacher's softmax over `passes` passes of the training rows, each batch mixed by `cfg`."""
    mixer = build_mixer(cfg, seed)
    if mixing_needs_teacher(cfg):
        mixer.attach_teacher(lambda x: model.model(x).float())
    out = []
    for p in range(passes):
        mixer.reseed(seed + p)
        for batch in progress(data.loader("train"), f"{model.label} {cfg.name}", unit="batch"):
            mix = mixer(batch.x, batch.y, data.spec.num_classes)
            out.append(torch.softmax(model.model(mix.x).float(), dim=1).cpu())
    return torch.cat(out)


def analyze_augmentation(models: Sequence[LoadedModel], data: EvalData, mixings: Sequence[MixingConfig], *,
                         group: int | None = None, passes: int = 1, seed: int = 0) -> list[AugmentationStats]:
    """T. stddev and mean entropy of every model (as a teacher) under every mixing."""
    for m in models:
        m.model.eval()
    out = []
    for m in models:
        for cfg in mixings:
            probs = teacher_probs(m, data, cfg, passes, seed)
            out.append(AugmentationStats(m.label, mixing_name(cfg), probs.shape[0], teacher_stddev(probs, group),
                                         float(entropy(probs).mean())))
    return out


def mixing_name(cfg: MixingConfig) -> str:
    """`cutmix 50%`: the mixing and the share of rows it mixes."""
    return "none" if cfg.name == "none" else f"{cfg.name} {100 * cfg.fraction:g}%"
