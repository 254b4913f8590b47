"""The frozen teacher: eval mode, no gradient, its own precision and layout, an optional output cache.

It hands a distiller what the method asks for: logits only (then unmixed rows may come from the exact
logit cache), or logits with the penultimate vector, the stage maps and the pre-activation maps (then
every row runs live: the cache never serves features, and logits from it would not match them).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor, nn

from mixkd.models.base import ModelOutput
from mixkd.models.fold import WithFeatures, fold_batchnorm
from mixkd.runtime import autocast, isolate_compile_cache

if TYPE_CHECKING:
    from mixkd.data import Batch
    from mixkd.mixing import MixResult


class LogitCache(Protocol):
    """Stores teacher logits of unmixed rows keyed by (dataset index, augmentation view)."""

    def lookup(self, index: Tensor, view: Tensor) -> tuple[Tensor, Tensor]:
        """Return (logits [n, C] float32, found [n] bool) for the given keys."""
        ...

    def store(self, index: Tensor, view: Tensor, logits: Tensor) -> None:
        """Remember logits, in the teacher's output dtype and unrounded, for the given keys."""
        ...


class FrozenTeacher(nn.Module):
    """Wraps a teacher so that it stays in eval mode, never receives gradients, and can reuse outputs."""

    def __init__(self, model: nn.Module, precision: str = "fp32", cache: LogitCache | None = None,
                 channels_last: bool = False, fold_bn: bool = False, features: bool = False) -> None:
        super().__init__()
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        # the function that computes the logits: the model itself, or a copy with BatchNorm folded in
        self.fast = fold_batchnorm(self.model) if fold_bn else self.model
        # with `features`: x -> ModelOutput with every feature (BatchNorm folded where fx can trace)
        self.features = fold_batchnorm(self.model, return_features=True) if features and fold_bn else None
        if features and not fold_bn:
            self.features = WithFeatures(self.model)
        if channels_last:
            self.fast = self.fast.to(memory_format=torch.channels_last)
            if self.features is not None:
                self.features = self.features.to(memory_format=torch.channels_last)
        if features and cache is not None:
            raise ValueError("the logit cache cannot serve a teacher that hands out features")
        self.precision = precision
        self.cache = cache
        self.channels_last = channels_last
        # forwards of fewer rows run padded to this many (set by the cache's start-up check): some matrix
        # kernels take another path for a few rows and round differently, and padding keeps them off it
        self.min_rows = 1
        self.compiled = False
        self.hits = 0
        self.queries = 0
        # students of a cohort ask for the same batch in turn: the first call computes, the others get copies
        self._last: tuple[object, object, ModelOutput] | None = None
        self._last_second: tuple[object, object, Tensor] | None = None  # the same for a batch's second view
        self._stats: dict[str, float] | None = None  # this epoch's, once read; the next batch clears it

    def train(self, mode: bool = True) -> FrozenTeacher:
        """The teacher ignores train(): its BatchNorm statistics must never change."""
        return super().train(False)

    def compile_logits(self, example: Tensor) -> float:
        """Compile the logits forward: torch.compile, dynamic in the batch size, with inductor freezing (the
        frozen weights become constants, so convolutions are prepacked and fused with their bias, ReLU and
        residual add). Compiles now, on `example`; returns the seconds that took.

        The outputs agree with the eager ones to float rounding (~1e-7 relative in fp32), in the teacher's
        own precision; the cache's start-up check then verifies, bit for bit, that a row's output does not
        depend on its batch, as for an eager teacher.
        """
        eager = self.fast
        isolate_compile_cache()
        self.fast = torch.compile(eager, dynamic=True, options={"freezing": True})
        start = time.perf_counter()
        try:
            self.compute(example)
        except Exception:
            self.fast = eager
            raise
        self.compiled = True
        return time.perf_counter() - start

    def compute(self, x: Tensor) -> Tensor:
        """The teacher's logits for `x`, in its own output dtype (bf16 under bf16 autocast); no cache.

        A batch of fewer than `min_rows` rows runs padded with zero images to `min_rows` rows.
        """
        n = x.shape[0]
        if n < self.min_rows:
            x = torch.cat([x, x.new_zeros((self.min_rows - n, *x.shape[1:]))])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(x.device.type, self.precision):
            out = self.fast(x)
        return out[:n].clone()  # a normal tensor, usable as a target outside inference mode

    def forward(self, x: Tensor, index: Tensor | None = None, view: Tensor | None = None,
                mixed: Tensor | None = None) -> Tensor:
        """Teacher logits (float32) for the batch `x`; unmixed rows come from the cache when possible.

        A hit is the teacher's own output for that (image, view), stored unrounded, widened to float32;
        a miss is computed now (the whole batch when nothing hits, else only the rows that missed).
        """
        if self.cache is None or index is None or view is None:
            return self.compute(x).float()
        b = x.shape[0]
        clean = ~mixed if mixed is not None else torch.ones(b, dtype=torch.bool, device=x.device)
        clean_rows = clean.nonzero().squeeze(1)
        cached, found = self.cache.lookup(index[clean_rows], view[clean_rows])
        hit_rows = clean_rows[found]
        n_hit = int(hit_rows.numel())
        self.queries += int(clean_rows.numel())
        self.hits += n_hit
        if n_hit == 0:  # cold: one forward of the whole batch, no gathers
            out = self.compute(x)
            if clean_rows.numel():
                self.cache.store(index[clean_rows], view[clean_rows], out[clean_rows])
            return out.float()
        need = torch.ones(b, dtype=torch.bool, device=x.device)
        need[hit_rows] = False
        need_rows = need.nonzero().squeeze(1)
        out = torch.empty(b, cached.shape[1], device=x.device)
        out[hit_rows] = cached[found]
        if need_rows.numel():
            fresh = self.compute(x[need_rows])
            out[need_rows] = fresh.float()
            new = clean[need_rows]
            if bool(new.any()):
                rows = need_rows[new]
                self.cache.store(index[rows], view[rows], fresh[new])
        return out

    def outputs(self, batch: Batch, mix: MixResult) -> ModelOutput:
        """What the distiller asked for on the (mixed) batch `mix.x`; the cache keys come from `batch`.

        Asked again for the same `batch` and `mix` objects (the next student of a cohort), it returns copies
        of the first answer: the same values a teacher of that student's own would compute, one forward.
        """
        last = self._last
        if last is not None and last[0] is batch and last[1] is mix:
            return ModelOutput(*(_detach_copy(v) for v in last[2]))
        self._stats = None
        if self.features is None:
            out = ModelOutput(self(mix.x, index=batch.index, view=batch.view, mixed=mix.mixed))
        else:
            x = mix.x.contiguous(memory_format=torch.channels_last) if self.channels_last else mix.x
            with torch.inference_mode(), autocast(x.device.type, self.precision):
                raw = self.features(x)
            # normal float32 tensors, usable as targets outside inference mode
            out = ModelOutput(*(_detach_copy(v) for v in raw))
        self._last = (batch, mix, out)
        return out

    def second_view_logits(self, batch: Batch, mix: MixResult, x: Tensor) -> Tensor:
        """Logits (float32) on `x`, a second view of `batch` mixed as `mix` (e.g. its mixed strong view).

        Always computed live: the cache's key (index, view) names the first view's augmentation, not this
        view's pixels, so a hit would serve the wrong image's output. The next student of a cohort asking for
        the same batch and mix gets a copy, as with `outputs`.
        """
        last = self._last_second
        if last is not None and last[0] is batch and last[1] is mix:
            return last[2].clone()
        out = self.compute(x).float()
        self._last_second = (batch, mix, out)
        return out.clone()

    def epoch_stats(self) -> dict[str, float]:
        """The cache's hit rate over the epoch that just ended (nothing without a cache); every student of a
        cohort that reads it after that epoch gets the same figure."""
        if self.cache is None:
            return {}
        if self._stats is None:
            hits, queries = self.reset_counters()
            self._stats = {"teacher_cache_hit_rate": hits / queries if queries else 0.0}
            self._last = self._last_second = None  # the epoch's last batch need not stay in memory
        return dict(self._stats)

    def reset_counters(self) -> tuple[int, int]:
        """Return (hits, queries) since the last reset and start counting again."""
        counts = (self.hits, self.queries)
        self.hits = self.queries = 0
        return counts


def _detach_copy(v):
    if v is None:
        return None
    if isinstance(v, list):
        return [t.float().clone() for t in v]
    return v.float().clone()
