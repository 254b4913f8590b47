"""The training loop: one epoch of one stage for one or many students on one data stream.

Per batch: one loader step, one mixing draw, then each student's step (the teacher answers the students'
identical requests with one forward). The loop knows nothing about any method: a student's distiller turns
(batch, mix) into logits and named loss terms.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from mixkd.data.seeding import seed32
from mixkd.engine import distributed as D
from mixkd.engine.assembly import Shared, Student


class Diverged(Exception):
    """A student's loss became non-finite at (0-based) `step` of the epoch."""

    def __init__(self, value: float, step: int) -> None:
        super().__init__(f"the loss became {value} at step {step}")
        self.value, self.step = value, step


class _Meter:
    """A student's running sums over one epoch."""

    def __init__(self, device: torch.device) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.correct = torch.zeros((), device=device)
        self.seen = 0
        self.error: BaseException | None = None

    def add(self, mix, logits, terms, batch) -> None:
        with torch.no_grad():
            for k, v in terms.items():
                self.sums[k] = self.sums.get(k, 0.0) + v.detach().float()
            if logits is not None:
                self.correct += mix.correct(logits)
        self.seen += batch.y.numel()


def train_epoch(shared: Shared, students: Sequence[Student], epoch: int, init: bool = False, *,
                label: str = "", quiet: bool = False, max_batches: int | None = None) -> list[dict | BaseException]:
    """Train `students` for epoch `epoch` (0-based) of the main stage, or of their init stage (`init`).

    Returns one row of epoch figures per student, or the exception that stopped that student (the others
    go on). The data order and the mixing draw depend only on (seed, stage, epoch), so a student trains on
    the same batches whichever students train beside it.
    """
    rt, loader = shared.rt, shared.data.train
    loader.set_epoch(-1 - epoch if init else epoch)
    shared.mixer.reseed(seed32(shared.cfg.seed, 2 if init else 1, epoch, rt.dist.rank))
    for s in students:
        s.begin_epoch(epoch, init)
    meters = [_Meter(rt.device) for _ in students]
    bar = tqdm(total=len(loader), desc=label, leave=False, dynamic_ncols=True,
               disable=quiet or not rt.dist.is_main or not sys.stderr.isatty())
    start = time.perf_counter()
    for step, batch in enumerate(loader):
        if max_batches is not None and step >= max_batches:
            break
        mix = shared.mixer(rt.prepare(batch.x), batch.y, shared.num_classes)
        for s, m in zip(students, meters, strict=True):
            if m.error is not None:
                continue
            try:
                with s.streams.active():
                    logits, terms, loss = s.step(batch, mix, rt, init)
                m.add(mix, logits, terms, batch)
                if step % 20 == 0 or step == len(loader) - 1:
                    value = float(loss.detach())
                    if not np.isfinite(value):
                        raise Diverged(value, step)
            except Exception as e:  # this student stops; the others train on
                m.error = e
        bar.update(1)
        if len(students) == 1 and meters[0].error is None:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}",
                            img_s=f"{meters[0].seen * rt.dist.world_size / (time.perf_counter() - start):.0f}")
        if all(m.error is not None for m in meters):
            break
    bar.close()
    seconds = time.perf_counter() - start
    steps = max(1, min(len(loader), max_batches or len(loader)))
    return [m.error if m.error is not None else _row(s, m, rt, steps, seconds, init)
            for s, m in zip(students, meters, strict=True)]


def _row(student: Student, m: _Meter, rt, steps: int, seconds: float, init: bool) -> dict:
    totals = torch.stack([m.correct, torch.tensor(float(m.seen), device=rt.device)]
                         + [m.sums[k] for k in sorted(m.sums)])
    D.all_reduce_sum(totals, rt.dist)
    w = rt.dist.world_size
    out = {"train_loss": float(totals[2:].sum()) / (steps * w)}
    if not init:
        out["train_top1"] = 100.0 * float(totals[0] / totals[1])
    out.update({f"train_{k}": float(v) / (steps * w) for k, v in zip(sorted(m.sums), totals[2:], strict=True)})
    out["train_seconds"] = seconds
    out["images_per_s"] = float(totals[1]) / seconds
    out.update(student.distiller.epoch_stats())
    return out
