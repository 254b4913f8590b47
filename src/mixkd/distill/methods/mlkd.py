"""MLKD: Multi-Level Logit Distillation (Jin, Wang & Lin, CVPR 2023).

The student is aligned with the teacher at three levels, each at several temperatures T ∈ 𝒯 = {T₀, 2, 3, 5, 6}
(T₀ = `distill.temperature`, 4 by default, as the authors' cfg.KD.TEMPERATURE; the other four are literals of
their code), with P_T = softmax(f / T) the [B, C] predictions:

    instance_T = T² · mean_i KL(P_T(t)[i] ‖ P_T(s)[i])                   (KD at temperature T)
    class_T    = ‖P_T(s)ᵀ P_T(s) − P_T(t)ᵀ P_T(t)‖²_F / C               (C × C class correlation)
    batch_T    = ‖P_T(s) P_T(s)ᵀ − P_T(t) P_T(t)ᵀ‖²_F / B               (B × B sample correlation)

on a weak view w (the usual crop + flip) and a strong view s (`data.strong_view=randaugment`, its own crop +
flip + RandAugment) of every image, the student and the teacher each seeing both; the loss is

    γ · (CE(w) + CE(s)) + β · Σ_T [ m_b · instance_T(w) + instance_T(s) ]     ("ce", "mlkd_instance")
                        + β · m_c · Σ_T class_T(w)                            ("mlkd_class")
                        + β · m_b · Σ_T batch_T(w)                            ("mlkd_batch")

with γ = `distill.ce_weight` (0.1) and β = `distill.mlkd.weight` (0.9), the authors' CE_WEIGHT and
KD_WEIGHT, and the confidence factors m_b, m_c of the authors' code: m_b is the share of rows whose weak-view
teacher confidence (max softmax at T = 1) is at most its `confidence_percentile`-th percentile (linear
interpolation, as np.percentile), m_c the share of classes whose batch-summed weak-view teacher probability is
at most its percentile. At the published 50 they are ½ for distinct values (even B, and C).

Source: the authors' code (Jin-Ying/Multi-Level-Logit-Distillation, mdistiller/distillers/KD_ours.py, its
configs/cifar100/ours/*.yaml and mdistiller/engine/cfg.py; the logit-standardization variant in
sunshangquan/logit-standardization-KD, mdistiller/distillers/MLKD.py; the strong view's transform as the fork
peanutshu11/Multi-Level-Logit-Distillation carries it, see mixkd.data.randaugment). mixkd follows that code's
arithmetic,
with these departures (docs/methods.md):

- the confidence "masks" there multiply a loss already reduced to a scalar, so each only scales its term by
  the kept share (and the rows kept are the *less* confident ones, `le`): mixkd computes that share directly,
  which gives the published numbers without pretending to select rows;
- the published strong-view KD takes T = 2 and 6 on the weak view (a copy-paste slip: those two weak terms
  count twice); mixkd takes all five on the strong view, as the formula says;
- the published code computes strong-view class and batch terms and never returns them; mixkd does not
  compute them.

Logit normalisation: as in the logit-standardization variant, `distill.logit_norm` acts on the instance terms
only: each T divides the normalisation's logits before a temperature (f, f/σ(f) or the z-score), KL × T²
(`distill.base_temperature` is not read), and the CE takes the normalisation's CE logits; the Gram terms
always take f / T. CTKD's learned temperature is refused (MLKD's temperatures are its own).
Mixing: both views are mixed with the same partners, λ and boxes (`MixResult.remix`), so the soft target is
the same for both CE terms. The teacher's weak-view outputs may come from the logit cache (unmixed rows); its
strong-view outputs are always computed (the cache's key names the weak view's augmentation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor

from mixkd.distill import ctkd
from mixkd.distill.base import Distiller, register
from mixkd.distill.losses import kl_rows, soft_cross_entropy
from mixkd.errors import ConfigError
from mixkd.models import ModelOutput
from mixkd.params import NonNegative, Range

# the temperatures the authors' code adds to cfg.KD.TEMPERATURE, in its order
EXTRA_TEMPERATURES = (3.0, 5.0, 2.0, 6.0)

Percentile = Annotated[float, Range(0.0, 100.0)]


def kept_share(scores: Tensor, percentile: float) -> Tensor:
    """The share of `scores` at most their `percentile`-th percentile (linear interpolation, as np.percentile)."""
    scores = scores.detach().double()
    threshold = torch.quantile(scores, percentile / 100.0)
    return (scores <= threshold).double().mean().float()


def confidence_shares(teacher_weak: Tensor, percentile: float) -> tuple[Tensor, Tensor]:
    """(m_b, m_c): the kept shares of rows by the teacher's confidence and of classes by their summed probability."""
    p = teacher_weak.detach().float().softmax(1)
    return kept_share(p.amax(1), percentile), kept_share(p.sum(0), percentile)


def class_correlation(ps: Tensor, pt: Tensor) -> Tensor:
    """‖PsᵀPs − PtᵀPt‖²_F / C for [B, C] predictions."""
    return (ps.t() @ ps - pt.t() @ pt).square().sum() / ps.shape[1]


def batch_correlation(ps: Tensor, pt: Tensor) -> Tensor:
    """‖PsPsᵀ − PtPtᵀ‖²_F / B for [B, C] predictions."""
    return (ps @ ps.t() - pt @ pt.t()).square().sum() / ps.shape[0]


@register("mlkd")
class MultiLevelKD(Distiller):
    """γ · (CE weak + CE strong) + β · (instance, class and batch alignment at five temperatures), the authors'
    CIFAR-100 weights; needs `data.strong_view`."""

    paper = "Jin, Wang & Lin: Multi-Level Logit Distillation (CVPR 2023)"
    default_ce_weight = 0.1
    default_kd_weight = 0.0
    logit_term = True
    needs_strong_view = True

    @dataclass
    class Params:
        weight: NonNegative = 0.9  # β: the authors' KD_WEIGHT, on every term
        confidence_percentile: Percentile = 50.0

    @classmethod
    def min_batch(cls) -> int:
        return 2

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        if ctkd.resolve(cfg.ctkd, cls.default_ctkd_mode)["mode"] != "off":
            raise ConfigError(f"distill.method=mlkd distils at its own temperatures ({cfg.temperature:g}, 3, 5, 2, 6); "
                              f"CTKD's learned temperature does not apply: set distill.ctkd.mode=off")

    def temperatures(self) -> tuple[float, ...]:
        """𝒯: distill.temperature, then the authors' four."""
        return (float(self.cfg.temperature), *EXTRA_TEMPERATURES)

    def settings(self) -> dict:
        out = super().settings()
        out.pop("base_temperature", None)
        out["temperature"] = self.cfg.temperature
        return out

    def forward(self, batch, mix):
        if batch.strong is None:
            raise ConfigError("distill.method=mlkd needs the batch's strong view: set data.strong_view=randaugment")
        strong_x = mix.remix(batch.strong)
        sw = self.student_outputs(mix.x)
        ss = self.student_outputs(strong_x)
        tw = self.teacher_outputs(batch, mix)
        ts = ModelOutput(self.teacher.second_view_logits(batch, mix, strong_x))
        terms = self.logit_terms(sw.logits, tw.logits, mix)  # γ · CE(weak) (and α · KD if kd_weight > 0)
        if self.ce_weight > 0:
            terms["ce"] = terms["ce"] + self.ce_weight * soft_cross_entropy(self.norm.ce_logits(ss.logits),
                                                                            mix.target)
        terms.update(self.alignment(sw.logits, tw.logits, ss.logits, ts.logits))
        return sw.logits, terms

    def alignment(self, s_weak: Tensor, t_weak: Tensor, s_strong: Tensor, t_strong: Tensor) -> dict[str, Tensor]:
        """β-weighted instance, class and batch terms over 𝒯 (both views' instance terms; the weak view's others)."""
        p = self.params
        if p["weight"] == 0:
            return {}
        m_b, m_c = confidence_shares(t_weak, p["confidence_percentile"])
        unit = self.norm.unit
        instance = class_ = batch_ = 0.0
        for t in self.temperatures():
            kd_weak = kl_rows(unit(s_weak) / t, unit(t_weak) / t).mean()
            kd_strong = kl_rows(unit(s_strong) / t, unit(t_strong) / t).mean()
            instance = instance + (t * t) * (m_b * kd_weak + kd_strong)
            ps, pt = (s_weak.float() / t).softmax(1), (t_weak.float() / t).softmax(1)
            class_ = class_ + class_correlation(ps, pt)
            batch_ = batch_ + batch_correlation(ps, pt)
        w = p["weight"]
        return {"mlkd_instance": w * instance, "mlkd_class": w * m_c * class_, "mlkd_batch": w * m_b * batch_}
