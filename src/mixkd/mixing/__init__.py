"""Batch mixings, one file each: none, mixup (full and partial), CutMix, mixup-or-CutMix, CutMixPick and
confident-first mixup. Each maps (x, y, num_classes) to a `MixResult` (mixkd.mixing.base)."""

import dataclasses

from mixkd.config import MixingConfig, mixing_unread_keys
from mixkd.mixing.base import (
    LAMBDA_EPS,
    MIXERS,
    Mixer,
    MixResult,
    exact_mixed_rows,
    mixing_needs_teacher,
    official_mixed_share,
    official_unmixed_draws,
    typed,
)
from mixkd.registry import import_all

import_all(__name__, __path__)  # each mixing's module registers it: a new mixing is one new file


def mixing_settings(cfg: MixingConfig) -> dict:
    """Every parameter the mixing of `cfg` reads, as summary.json records it (the mixing's own keys included)."""
    unread = mixing_unread_keys(cfg.name)
    out = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in unread}
    if cfg.name == "mixup-cutmix" and out["cutmix_alpha"] is None:
        out["cutmix_alpha"] = cfg.alpha
    return out


def build_mixer(cfg: MixingConfig, seed: int = 0) -> Mixer:
    """The mixer named by `cfg.name`, seeded (a teacher-guided one still needs `attach_teacher`)."""
    return MIXERS.get(cfg.name)(cfg, seed)


__all__ = [
    "LAMBDA_EPS",
    "MIXERS",
    "MixResult",
    "Mixer",
    "build_mixer",
    "exact_mixed_rows",
    "mixing_needs_teacher",
    "mixing_settings",
    "official_mixed_share",
    "official_unmixed_draws",
    "typed",
]
