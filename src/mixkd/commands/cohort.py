"""`mixkd cohort PLAN`: train the runs a plan names as one cohort (what `mixkd sweep` runs per cohort)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mixkd.commands import HelpFormatter, add_overrides
from mixkd.config import find_recipe, load_config, read_yaml_mapping
from mixkd.errors import ConfigError, MixkdError

_EXAMPLES = """A plan (YAML) lists the members; each is a new run (a recipe and/or overrides) or a stopped one to \
continue:
    members:
      - {out: runs/c/kd, recipe: configs/quickstart/student.yaml, overrides: [distill.method=kd]}
      - {out: runs/c/at, resume: true}
Members must share the data stream and the teacher (see docs/cohorts.md); each writes its ordinary run folder,
bit-identical to training it alone. A member that fails stops with its own error; the others go on.
KEY=VALUE on the command line applies to every member, after its own overrides.

examples (after `mixkd train configs/quickstart/teacher.yaml --out runs/teacher`):
  mixkd cohort configs/cohorts/quickstart.yaml
  mixkd cohort configs/cohorts/quickstart.yaml --quiet      # again: finished members are skipped
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cohort",
        help="train several students in one process on one data stream and teacher",
        epilog=_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    p.add_argument("plan", help="YAML file listing the members (see below)")
    add_overrides(p, "overrides for every member, such as runtime.device=cuda (after the member's own)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=run_cohort)


def read_plan(path: Path, common: list[str] = ()):
    """The cohort's members, from the plan file at `path`; `common` overrides apply to every member."""
    from mixkd.engine.cohort import Member

    path = find_recipe(path)
    body = read_yaml_mapping(path, "name the plan file `mixkd cohort` should run")
    entries = body.get("members")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: needs `members:`, a list of {{out: DIR, recipe/overrides | resume: true}}")
    members = []
    for k, e in enumerate(entries):
        if not isinstance(e, dict) or not e.get("out"):
            raise ConfigError(f"{path}: member {k + 1} needs `out: DIR`")
        out, overrides = Path(e["out"]), [*(str(o) for o in e.get("overrides") or []), *common]
        try:
            if e.get("resume"):
                cfg = load_config(out / "config.yaml", overrides)
            else:
                recipe = e.get("recipe")
                cfg = load_config(find_recipe(recipe) if recipe else None, overrides)
        except ConfigError as err:
            raise ConfigError(f"{path}: member {out}: {err}") from None
        members.append(Member(cfg, out, bool(e.get("resume"))))
    return members


def run_cohort(args: argparse.Namespace) -> int:
    from mixkd.engine.cohort import Cohort

    members = read_plan(Path(args.plan), list(args.overrides))
    results = Cohort(members, quiet=args.quiet).fit()
    failed = 0
    internal = False  # a failure that is not mixkd's one-line kind (exit 1, as a run alone gives)
    for m, r in zip(members, results, strict=True):
        if isinstance(r, BaseException):
            failed += 1
            internal = internal or not isinstance(r, MixkdError)
            why = str(r) if isinstance(r, MixkdError) else f"{type(r).__name__}: {r}"
            print(f"mixkd: error: {m.out}: {why}", file=sys.stderr)
        elif not args.quiet:
            print(json.dumps({"out": str(m.out), **{k: r[k] for k in ("best_top1", "best_epoch", "last_top1")}}))
    return (1 if internal else 2) if failed else 0  # the exit code a member alone would give
