"""Contrastive Representation Distillation (Tian, Krishnan, Isola, ICLR 2020), as RepDistiller trains it.

Student and teacher penultimate vectors are embedded (linear, then L2-normalised) into `feat_dim`
dimensions. Two memory banks [n_data, feat_dim] hold a momentum average of each training row's student
and teacher embedding. For every row, the positive is its own dataset index and `nce_k` negatives are
dataset indices of other classes (RepDistiller's "exact" mode); the student embedding is scored against
the teacher bank and the teacher embedding against the student bank, exp(v·m / nce_t) / Z with Z fixed
from the first batch (mean score × n_data), and each side gets the NCE loss with a uniform noise
distribution 1/n_data. The banks are then updated at the batch's indices with momentum `nce_m`.

Mixed rows: a mixed row x̃ = λ x_i + (1 − λ) x_j (i the row itself) keeps row i's identity: its positive
and its bank slot are index i (so the indices of a batch stay distinct and the update is deterministic),
and its negatives are drawn from the classes other than row i's own label, as the published loader draws
them for the sample before any mixing. Its embedding is a mixed one, so under mixup the banks average
mixed embeddings — what RepDistiller + mixup computes.

Departures from RepDistiller: negatives are drawn with replacement on the training device (RepDistiller
draws them without replacement per sample in its data-loader workers; with 16384 of ~49,500 candidates
the expected loss is the same); CRD's loss is computed in float32 whatever the autocast precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mixkd.distill.base import Distiller, register
from mixkd.errors import ConfigError
from mixkd.params import Count, NonNegative, Positive, Share

_EPS = 1e-7


class Embed(nn.Module):
    """Linear projection followed by L2 normalisation."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        """[B, dim_in] -> [B, dim_out], unit rows."""
        x = self.linear(x.flatten(1).float())
        return x / x.pow(2).sum(1, keepdim=True).sqrt()


def nce_loss(scores: Tensor, n_data: int) -> Tensor:
    """NCE loss of [B, 1 + K] scores (positive in column 0) under the uniform noise distribution 1/n_data."""
    b, m = scores.shape[0], scores.shape[1] - 1
    mpn = m / n_data
    log_d1 = torch.log(scores[:, 0] / (scores[:, 0] + mpn + _EPS))
    log_d0 = torch.log(mpn / (scores[:, 1:] + mpn + _EPS))
    return -(log_d1.sum() + log_d0.sum()) / b


def bank_scores(memory: Tensor, v: Tensor, idx: Tensor) -> Tensor:
    """[B, K+1] dot products memory[idx[b, j]] · v[b] (the bank is never differentiated)."""
    if memory.shape[0] <= 4 * idx.shape[1]:
        # a small bank (a CIFAR-size dataset): one matmul reads it once instead of gathering B·(K+1) rows;
        # the copy keeps backward's operand intact when the bank is updated in place after this step
        return (v @ memory.detach().clone().T).gather(1, idx)
    b, k1 = idx.shape
    return torch.bmm(memory.detach()[idx.view(-1)].view(b, k1, -1), v.unsqueeze(2)).squeeze(2)


class NegativeSampler:
    """Draws dataset indices of classes other than a given one, uniformly, with replacement."""

    def __init__(self, labels: Tensor) -> None:
        labels = labels.long()
        self.order = torch.argsort(labels, stable=True)  # dataset indices grouped by class
        counts = torch.bincount(labels)
        self.start = torch.cumsum(counts, 0) - counts
        self.count = counts
        self.n = len(labels)

    def draw(self, y: Tensor, k: int) -> Tensor:
        """[B, k] indices, row r drawn from the rows whose label is not y[r]."""
        y = y.to(self.order.device)
        pool = (self.n - self.count[y]).view(-1, 1)
        if bool((pool == 0).any()):
            raise ConfigError("distill.method=crd needs training rows of at least two classes")
        r = (torch.rand(len(y), k, device=self.order.device) * pool).long().clamp_max_(pool - 1)
        # skip the block of the row's own class in the class-sorted order
        r = r + (r >= self.start[y].view(-1, 1)) * self.count[y].view(-1, 1)
        return self.order[r]


@register("crd")
class CRD(Distiller):
    """CE + weight · (NCE of the student side + NCE of the teacher side) on embedded penultimate vectors."""

    paper = "Tian, Krishnan, Isola: Contrastive Representation Distillation (ICLR 2020)"
    needs_index = True
    teacher_features = True
    student_features = True
    reads = "penultimate"
    default_ce_weight = 1.0
    default_kd_weight = 0.0

    @dataclass
    class Params:
        weight: NonNegative = 0.8
        feat_dim: Count = 128
        nce_k: Count = 16384
        nce_t: Positive = 0.07
        nce_m: Share = 0.5

    def __init__(self, student, teacher, cfg, ctx) -> None:
        super().__init__(student, teacher, cfg, ctx)
        if ctx.train_labels is None:
            raise ConfigError("distill.method=crd needs the training labels in index order (a mixkd loader)")
        if ctx.world_size > 1:  # each process would update its own copy of the banks
            raise ConfigError("distill.method=crd keeps its memory banks in one process; run it without torchrun")
        s_dim, t_dim = probe_penultimate(student, ctx), probe_penultimate(teacher.model, ctx)
        p, n = self.params, ctx.num_samples
        self.embed_s = Embed(s_dim, p["feat_dim"])
        self.embed_t = Embed(t_dim, p["feat_dim"])
        stdv = 1.0 / math.sqrt(p["feat_dim"] / 3)
        self.register_buffer("memory_s", torch.rand(n, p["feat_dim"]).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("memory_t", torch.rand(n, p["feat_dim"]).mul_(2 * stdv).add_(-stdv))
        # normalising constants of the student and teacher scores, fixed at the first call (-1: not yet)
        self.register_buffer("z", torch.full((2,), -1.0))
        self.sampler = NegativeSampler(ctx.train_labels.to(ctx.device))

    def method_terms(self, s, t, batch, mix):
        if self.params["weight"] == 0:
            return {}
        with torch.autocast(s.penultimate.device.type, enabled=False):
            loss = self.contrast(s.penultimate, t.penultimate, batch.index, batch.y)
        return {"crd": self.params["weight"] * loss}

    def contrast(self, f_s: Tensor, f_t: Tensor, index: Tensor, y: Tensor) -> Tensor:
        """Both NCE losses for the batch, then the momentum update of the banks at `index`."""
        p, n = self.params, self.ctx.num_samples
        v_s, v_t = self.embed_s(f_s), self.embed_t(f_t)
        idx = torch.cat([index.view(-1, 1), self.sampler.draw(y, p["nce_k"])], dim=1)  # positive in column 0
        out_s = torch.exp(bank_scores(self.memory_t, v_s, idx) / p["nce_t"])  # student vs teacher bank
        out_t = torch.exp(bank_scores(self.memory_s, v_t, idx) / p["nce_t"])  # teacher vs student bank
        if float(self.z[0]) < 0:
            self.z.copy_(torch.stack([out_s.mean(), out_t.mean()]).detach() * n)
        z_s, z_t = float(self.z[0]), float(self.z[1])
        loss = nce_loss(out_s / z_s, n) + nce_loss(out_t / z_t, n)
        with torch.no_grad():
            self._update(self.memory_s, v_s, index)
            self._update(self.memory_t, v_t, index)
        return loss

    def _update(self, memory: Tensor, v: Tensor, index: Tensor) -> None:
        m = self.params["nce_m"]
        pos = memory[index] * m + v.detach() * (1 - m)
        memory.index_copy_(0, index, pos / pos.pow(2).sum(1, keepdim=True).sqrt())


def probe_penultimate(model: nn.Module, ctx) -> int:
    """The width of a model's penultimate vector, from one eval-mode forward of a zero batch."""
    from mixkd.distill.shapes import probe

    return probe(model, ctx.input_shape, ctx.device).penultimate[0]
