"""KDSVD: self-supervised KD with singular value decomposition (Lee, Kim & Song, ECCV 2018)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from mixkd.distill.terms.adapt import pool_to_smaller
from mixkd.distill.terms.base import FeatureTerm, register
from mixkd.errors import ConfigError
from mixkd.params import Count

FORMS = ("mdistiller", "paper")


def _finite(x: Tensor) -> Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


class _RightSVD(torch.autograd.Function):
    """(S, V) of a batch of matrices X [B, M, N] (reduced SVD), with a backward that stays finite.

    The exact gradient divides by λ_i − λ_j (λ = σ², the eigenvalues of XᵀX), which is infinite for
    repeated singular values, e.g. the zero ones of a rank-deficient post-ReLU map. As the authors' own
    custom SVD gradient does, pairs closer than float rounding (|λ_i − λ_j| <= 10·eps·max λ) and the null
    directions (λ_i <= 10·eps·max λ) contribute nothing; elsewhere this is the exact gradient.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> tuple[Tensor, Tensor]:
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        v = vh.transpose(-2, -1)
        ctx.save_for_backward(x, u, s, v)
        return s, v

    @staticmethod
    def backward(ctx, g_s: Tensor, g_v: Tensor) -> Tensor:
        x, u, s, v = ctx.saved_tensors
        lam = s * s  # [B, k]
        tol = 10 * torch.finfo(lam.dtype).eps * lam.amax(-1, keepdim=True).clamp_min(torch.finfo(lam.dtype).tiny)
        diff = lam.unsqueeze(-2) - lam.unsqueeze(-1)  # [b, j, i] = λ_i − λ_j
        f = torch.where(diff.abs() > tol.unsqueeze(-1), 1.0 / torch.where(diff == 0, 1.0, diff), 0.0)
        inv = torch.where(lam > tol, 1.0 / lam.clamp_min(torch.finfo(lam.dtype).tiny), 0.0)
        vt = v.transpose(-2, -1)
        g_a = v @ (f * (vt @ g_v)) @ vt
        # directions outside span(V) (when M < N): (I − VVᵀ) dA v_i / λ_i
        g_a = g_a + (g_v - v @ (vt @ g_v)) * inv.unsqueeze(-2) @ vt
        g_x = x @ (g_a + g_a.transpose(-2, -1))
        return g_x + (u * g_s.unsqueeze(-2)) @ vt


def leading_svd(feat: Tensor, n: int, form: str) -> tuple[Tensor, Tensor]:
    """(V [B, D, n], S [B, n]): the n leading right singular vectors and values of each sample's map, each
    vector and the values L2-normalised, NaNs zeroed. `mdistiller` takes the map as a (C·H) x W matrix (D = W),
    `paper` as an (H·W) x C matrix (D = C). Signs are fixed so that each vector's largest entry is positive."""
    b, c, h, w = feat.shape
    x = feat.reshape(b, c * h, w) if form == "mdistiller" else feat.permute(0, 2, 3, 1).reshape(b, h * w, c)
    s, v = _RightSVD.apply(x)
    v = _finite(v)[:, :, :n]
    s = _finite(s)[:, :n]
    # SVD's signs are arbitrary (LAPACK and cuSOLVER differ) and the loss depends on them: fix one
    top = v.abs().argmax(1, keepdim=True)
    v = v * torch.where(v.gather(1, top) < 0, -1.0, 1.0)
    return F.normalize(v, dim=1), F.normalize(s, dim=1)


def align(vs: Tensor, vt: Tensor) -> Tensor:
    """For each teacher vector, the student vector of largest |cosine| with it, signed to agree: [B, D, k]."""
    cosine = vs.transpose(-2, -1) @ vt  # [B, k_s, k_t]
    best = cosine.abs().amax(1, keepdim=True)
    mask = torch.where(cosine.abs() == best, torch.sign(cosine), torch.zeros_like(cosine))
    return vs @ mask


@register("kdsvd")
class KDSVD(FeatureTerm):
    """Σ over consecutive stage pairs of Σ_{i,j,k} (G_s − G_t)² / B, G = exp(−(v_l[i,k] − v_{l−1}[j,k])² / 8).

    Per stage, the teacher's k leading right singular vectors V_t and the student's k + 3 are taken
    (`leading_svd`); each teacher vector picks the student vector of largest |cosine| (sign-aligned), both
    are scaled by the teacher's normalised singular values, and the RBF kernel G relates each stage's
    vectors to the previous stage's, entry by entry, for the student and for the teacher. Non-finite
    entries of the squared difference are zeroed, as published. The published code (mdistiller, after
    the authors' TensorFlow code) uses every stage map after the stem, as here.

    `form` picks the matrix whose SVD is taken. `mdistiller` (default; what mdistiller's published runs
    compute): an NCHW map viewed as (C·H) x W, so the vectors run over the map's width and students and
    teachers of other channel counts compare. `paper`: the (H·W) x C matrix of the paper and the authors'
    NHWC code, vectors over channels, which needs equal channel counts at every paired stage. Larger maps
    are average-pooled to the smaller one's size first. Departure from both: SVD's arbitrary signs (the
    loss depends on them, and CPU and GPU libraries choose differently) are fixed by making each vector's
    largest entry positive.
    """

    reads = "maps"
    stages = "all"
    paper = ("Lee, Kim & Song, Self-supervised Knowledge Distillation Using Singular Value Decomposition, "
             "ECCV 2018")
    default_weight = 1.0

    def __init__(self, student_shapes, teacher_shapes, *, k: Count = 1,
                 form: Literal["mdistiller", "paper"] = "mdistiller") -> None:
        super().__init__(student_shapes, teacher_shapes)
        if form not in FORMS:
            raise ConfigError(f"distill.kdsvd.form must be one of {', '.join(FORMS)}, got {form!r}")
        if int(k) < 1:
            raise ConfigError(f"distill.kdsvd.k must be >= 1, got {k}")
        if form == "paper":
            bad = [(s[0], t[0]) for s, t in self.pairs if s[0] != t[0]]
            if bad:
                raise ConfigError(f"distill.kdsvd.form=paper compares singular vectors over channels and needs "
                                  f"equal channel counts, got student/teacher channels {bad}; use form=mdistiller")
        self.k, self.form = int(k), form

    def compute(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        losses, prev = [], None
        for fs, ft in zip(s, t, strict=True):
            fs, ft = pool_to_smaller(fs, ft)
            vt, st = leading_svd(ft, self.k, self.form)
            vs, _ = leading_svd(fs, self.k + 3, self.form)
            vs = align(vs, vt)
            scale = st.unsqueeze(1)
            vs, vt = vs * scale, vt * scale
            if prev is not None:
                g_s = torch.exp(-(vs.unsqueeze(2) - prev[0].unsqueeze(1)).pow(2) / 8)
                g_t = torch.exp(-(vt.unsqueeze(2) - prev[1].unsqueeze(1)).pow(2) / 8)
                losses.append(_finite((g_s - g_t).pow(2)).sum() / fs.shape[0])
            prev = (vs, vt)
        if not losses:  # one paired stage: no consecutive pair to relate
            return s[0].sum() * 0.0
        return torch.stack(losses).sum()
