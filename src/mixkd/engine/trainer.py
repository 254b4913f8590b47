"""Train one run: a cohort of one student (engine/cohort.py), assembled from its config (engine/assembly.py),
trained epoch by epoch by the loop (engine/loop.py) into its run folder (engine/session.py)."""

from __future__ import annotations

from pathlib import Path

from mixkd.config import RunConfig
from mixkd.engine.cohort import Cohort, Member
from mixkd.engine.session import check_finished_run_inputs, default_out_dir, read_summary

__all__ = ["check_finished_run_inputs", "read_summary", "train"]


def train(cfg: RunConfig, out: str | Path | None = None, *, config_path: str | None = None,
          resume: bool = False, quiet: bool = False) -> dict:
    """Run (or resume) one training/distillation run; returns its summary.

    The run folder is locked for the whole run; Ctrl-C and SIGTERM stop it with a note naming the command
    that continues it, and whatever a stop or kill interrupts, `--resume` continues from the last epoch.
    """
    run_dir = Path(out) if out else default_out_dir(cfg, config_path)
    return Cohort([Member(cfg, run_dir, resume)], quiet=quiet).fit()[0]
