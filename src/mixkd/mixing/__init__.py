"""Batch mixings, one file each: none, mixup (full and partial), CutMix, mixup-or-CutMix, CutMixPick and
confident-first mixup. Each maps (x, y, num_classes) to a `MixResult` (mixkd.mixing.base)."""

from mixkd.config import MixingConfig, mixing_dict, mixing_unread_keys
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
from mixkd.params import Param, declared
from mixkd.registry import import_all

import_all(__name__, __path__)  # each mixing's module registers it: a new mixing is one new file


def own_params(mixer: type) -> dict[str, Param]:
    """{key: Param} of the mixing.* keys `mixer` declares for itself (its `Params`; none if it has none)."""
    params = getattr(mixer, "Params", None)
    return declared(params) if params is not None else {}


def own_keys() -> tuple[dict[str, Param], dict[str, str]]:
    """The mixing.* keys beyond the shared ones, as the mixers declare them: ({key: Param}, {key: meaning}).

    The keys are flat (mixing.switch_prob), so two mixings that read one key must declare it alike."""
    params: dict[str, Param] = {}
    docs: dict[str, str] = {}
    owner: dict[str, str] = {}
    for name in MIXERS.names():
        mixer = MIXERS.get(name)
        for key, p in own_params(mixer).items():
            if params.setdefault(key, p) != p:
                raise TypeError(f"mixing.{key} is declared differently by {owner[key]} ({params[key]}) and {name} "
                                f"({p}); the mixings share their keys: declare it alike, or give it another name")
            owner.setdefault(key, name)
            docs.setdefault(key, getattr(mixer.Params, "docs", {}).get(key, ""))
    return params, docs


def mixing_settings(cfg: MixingConfig) -> dict:
    """Every parameter the mixing of `cfg` reads, as summary.json records it (the mixing's own keys included)."""
    unread = mixing_unread_keys(cfg.name)
    out = {k: v for k, v in mixing_dict(cfg).items() if k not in unread}
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
    "own_keys",
    "own_params",
    "typed",
]
