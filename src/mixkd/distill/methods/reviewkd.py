"""ReviewKD: Distilling Knowledge via Knowledge Review (Chen, Liu, Zhao & Jia, CVPR 2021), as mdistiller trains it.

The student's stage maps and its pooled vector (as a 1x1 map) are reviewed from deep to shallow by one
attention-based fusion (ABF) module per level: a 1x1 conv + BN to `mid` channels; except at the deepest
level, the fused result of the level below (nearest-upsampled to this level's size) is mixed in with two
per-pixel attention maps (a 1x1 conv over both, sigmoid); the result is resized (nearest) to the
teacher's map size, and a 3x3 conv + BN gives the teacher's channels. Each level's output is compared
with the teacher's *pre-activation* stage map (its pooled vector at the deepest level) by the
hierarchical context loss (HCL): the MSE of the maps plus the MSEs of their 4x4, 2x2 and 1x1 average
poolings (those smaller than the map), weighted 1, 1/2, 1/4, 1/8 and normalised by the weights' sum,
summed over levels. Total = ce_weight · CE + weight · min(epoch / warmup_epochs, 1) · HCL (epochs
counted from 1).

Stages are paired by the rule of the other feature methods (mixkd.distill.shapes: stem dropped, the last
k stages of each network), and the ABF modules are built from the probed shapes, so heterogeneous pairs
need no per-pair shape lists: mdistiller's SHAPES are the student's map sizes, OUT_SHAPES the teacher's,
IN/OUT_CHANNELS the student's and teacher's channels, here read from the models. The modules are the
method's own (they train with the student and are saved in every checkpoint).

Defaults (mdistiller): CE 1, weight 5 (its CIFAR-100 config; its code's default is 1), 20 warm-up
epochs, mid = min(max_mid_channel, the student's pooled width) with max_mid_channel 512. Departures
from the published code: mdistiller reads MAX_MID_CHANNEL but uses a literal 512 (same for the default);
non-square maps are resized to (H, W) rather than (S, S); the loss runs in float32 under any autocast.
Mixing: the loss reads no target; the teacher sees the same mixed batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.distill.base import Distiller, register
from mixkd.distill.shapes import paired_stages, probe, stem_maps
from mixkd.params import Count, Epochs, NonNegative
from mixkd.runtime import autocast

Shape = tuple[int, ...]


class ABF(nn.Module):
    """One attention-based fusion level: student map (+ the level below) -> the teacher's (C, H, W)."""

    def __init__(self, c_in: int, mid: int, c_out: int, fuse: bool) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(c_in, mid, kernel_size=1, bias=False), nn.BatchNorm2d(mid))
        self.conv2 = nn.Sequential(nn.Conv2d(mid, c_out, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(c_out))
        self.att_conv = nn.Sequential(nn.Conv2d(2 * mid, 2, kernel_size=1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(self, x: Tensor, below: Tensor | None, out_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """(this level's output, the fused map handed to the level above)."""
        x = self.conv1(x)
        if self.att_conv is not None:
            below = F.interpolate(below, x.shape[-2:], mode="nearest")
            z = self.att_conv(torch.cat([x, below], 1))
            x = x * z[:, :1] + below * z[:, 1:]
        if tuple(x.shape[-2:]) != out_hw:
            x = F.interpolate(x, out_hw, mode="nearest")
        return self.conv2(x), x


class Review(nn.Module):
    """The ABF modules of every level, run from the deepest (the pooled vector) to the shallowest."""

    def __init__(self, s_shapes: list[Shape], t_shapes: list[Shape], max_mid_channel: int) -> None:
        super().__init__()
        mid = min(max_mid_channel, s_shapes[-1][0])
        n = len(s_shapes)
        self.out_hw = [tuple(t[1:]) for t in t_shapes]
        self.abfs = nn.ModuleList(
            ABF(s[0], mid, t[0], fuse=i < n - 1) for i, (s, t) in enumerate(zip(s_shapes, t_shapes, strict=True))
        )

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """Student features (shallow to deep) -> one output per level, shallow to deep."""
        out: list[Tensor] = []
        below = None
        for i in reversed(range(len(feats))):
            y, below = self.abfs[i](feats[i], below, self.out_hw[i])
            out.insert(0, y)
        return out


def hcl(fs: list[Tensor], ft: list[Tensor]) -> Tensor:
    """Hierarchical context loss: per level, MSE + Σ_{l in 4,2,1; l < H} 2^-j · MSE of l x l poolings, / Σ weights."""
    total = fs[0].new_zeros(())
    for a, b in zip(fs, ft, strict=True):
        loss, w, tot = F.mse_loss(a, b), 1.0, 1.0
        for size in (4, 2, 1):
            if size >= a.shape[2]:
                continue
            w /= 2.0
            loss = loss + w * F.mse_loss(F.adaptive_avg_pool2d(a, size), F.adaptive_avg_pool2d(b, size))
            tot += w
        total = total + loss / tot
    return total


def _as_map(v: Tensor) -> Tensor:
    return v.reshape(v.shape[0], -1, 1, 1)


@register("reviewkd")
class ReviewKD(Distiller):
    """CE + weight · warm-up · HCL(ABF review of the student's stages, the teacher's pre-activation stages)."""

    paper = "Chen, Liu, Zhao & Jia: Distilling Knowledge via Knowledge Review (CVPR 2021)"
    teacher_features = True
    student_features = True
    reads = "maps"
    default_ce_weight = 1.0
    default_kd_weight = 0.0

    @dataclass
    class Params:
        weight: NonNegative = 5.0
        warmup_epochs: Epochs = 20
        max_mid_channel: Count = 512

    def __init__(self, student, teacher, cfg, ctx) -> None:
        super().__init__(student, teacher, cfg, ctx)
        s, t = probe(student, ctx.input_shape, ctx.device), probe(teacher.model, ctx.input_shape, ctx.device)
        self.s_idx, self.t_idx = paired_stages(
            len(s.maps), len(t.preact_maps), stem_maps(student), stem_maps(teacher.model)
        )
        s_in = [s.maps[i] for i in self.s_idx] + [(s.penultimate[0], 1, 1)]
        t_in = [t.preact_maps[j] for j in self.t_idx] + [(t.penultimate[0], 1, 1)]
        self.review = Review(s_in, t_in, int(self.params["max_mid_channel"]))

    @classmethod
    def needs(cls) -> list[str]:
        return ["teacher pre-activation maps and penultimate", "student maps and penultimate"]

    def warmup_factor(self) -> float:
        """mdistiller's min(epoch / warmup, 1) with 1-based epochs."""
        w = self.params["warmup_epochs"]
        return 1.0 if w == 0 else min((self.epoch + 1) / w, 1.0)

    def levels(self, s, t) -> tuple[list[Tensor], list[Tensor]]:
        """(student maps + pooled vector, teacher pre-activation maps + pooled vector), shallow to deep."""
        fs = [s.maps[i] for i in self.s_idx] + [_as_map(s.penultimate)]
        ft = [t.preact_maps[j] for j in self.t_idx] + [_as_map(t.penultimate)]
        return fs, ft

    def method_terms(self, s, t, batch, mix):
        p = self.params
        if p["weight"] == 0:
            return {}
        fs, ft = self.levels(s, t)
        with autocast(fs[0].device.type, "fp32"):
            out = self.review([x.float() if x.dtype in (torch.float16, torch.bfloat16) else x for x in fs])
            target = [(x.clone() if x.is_inference() else x).detach().to(out[0].dtype) for x in ft]
            loss = hcl(out, target)
        return {"reviewkd": (p["weight"] * self.warmup_factor()) * loss}
