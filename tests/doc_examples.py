"""Every command example of the documentation, and the rules by which tests/test_docs.py runs it.

Sources: README.md and docs/*.md (fenced and indented code blocks, inline `code`), the header comments of
every recipe and sweep spec under configs/, every `--help` page of `mixkd`, and the Makefile's targets.
Each example belongs to a group (its document; all of configs/paper/figures/ is one group, every --help page
another); a group's examples run in one scratch copy of the repository, in document order, so that an example
that reads runs/X finds what an earlier example of its group wrote there.

How an example runs (the rules docs/development.md summarises):
- as written when it is cheap (listings, --help, --dry-run, analyses, reports);
- when it trains (train, distill, quickstart, cohort, a sweep), with TINY appended: a few dozen Fashion-MNIST images,
  one epoch, fp32 on the CPU. Its data becomes Fashion-MNIST unless it names a data.root that exists here
  (CIFAR-100 and ImageNet cannot exist here; the CIFAR-10 zip exists on the project's machine);
- a sweep on data that cannot exist here (the paper's full-scale grids), and a sweep through the Slurm
  launcher (tests/sweeps submits to a real Slurm), is checked with --dry-run: every point's config, the
  spec's figures and commands (and the launcher's settings) are validated, nothing is trained;
- `mixkd findings` (the findings study: hours of runs, and it rewrites docs/findings.md) always runs with
  --dry-run: its specs, data and every run's command are checked, nothing is trained or written;
- a benchmark runs with 1 round of 2 steps (or 2 batches);
- the few examples that need what cannot exist here (a published teacher .pth, an ImageNet teacher) must fail
  with the one-line error named in EXPECTED_ERRORS, before touching anything on disk;
- placeholders (RUN, ARCH, T.pt) are replaced as SUBSTITUTIONS says; forms with `...`, `|` or `{}` are
  checked for their command and options only.
Sweeps that train, benchmarks, the CIFAR-10 zip (60,000 JPEGs to decode) and whatever reads their output are
slow (pytest -m slow); everything else runs in the default suite. Every example also gets a static check in
the default suite: its command line parses and its recipe, overrides and sweep points validate.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = ("mixkd", "make", "torchrun", "python", "flock", "pip")

# Appended to every example that trains (later overrides win).
TINY = [
    "data.train_subset=64", "data.test_subset=64", "data.batch_size=32", "data.eval_batch_size=64",
    "data.loader=auto", "optim.epochs=1", "optim.milestones=[]", "optim.warmup_epochs=0",
    "runtime.device=cpu", "runtime.precision=fp32", "runtime.threads=1", "runtime.tensorboard=false",
]
DATA_HERE = ["data.name=fashion-mnist", "data.root=null"]
BENCH_TINY = {"--rounds": "1", "--steps": "2", "--batches": "2"}

# Documented text -> what runs instead, and why.
SUBSTITUTIONS = {
    "mixkd train RUN/config.yaml": ("mixkd train runs/t/config.yaml",
                                    "RUN: the run docs/run-folders.md trained before"),
    "mixkd train configs/paper/cifar100/teachers/ARCH.yaml --out runs/paper/cifar100/teachers/ARCH":
        ("mixkd train configs/paper/cifar100/teachers/resnet56.yaml --out runs/paper/cifar100/teachers/resnet56",
         "ARCH: one of the teachers"),
    "mixkd train configs/paper/cifar100/teachers/ARCH.yaml --mixup --out runs/paper/cifar100/teachers-mixup/ARCH":
        ("mixkd train configs/paper/cifar100/teachers/resnet56.yaml --mixup "
         "--out runs/paper/cifar100/teachers-mixup/resnet56", "ARCH: one of the teachers"),
    "mixkd reference --write": ("mixkd reference --check", "--write rewrites the checkout's pages (the scratch "
                                "copy links docs/); --check reads the same blocks and fails if they are behind"),
    "python benchmarks/precision_check.py --teacher T.pt":
        ("python benchmarks/precision_check.py --teacher T.pt", "T.pt: a teacher; its options are checked"),
}

# Substring of a documented example -> (the one-line error it must stop with, why it cannot run here).
EXPECTED_ERRORS = {
    "save/models/resnet110_vanilla/ckpt_epoch_240.pth":
        ("teacher.checkpoint: no file at save/models/resnet110_vanilla", "a published teacher .pth"),
    "--teacher resnet110.pth": ("teacher.checkpoint: no file at resnet110.pth", "a published teacher .pth"),
    "mixkd analyze features resnet56.pth": ("resnet56.pth: no such run directory", "a published checkpoint"),
    "mixkd attack resnet20.pth": ("resnet20.pth: no such run directory", "a published checkpoint"),
    "mixkd teacher-check resnet110.pth": ("resnet110.pth: no such run directory", "a published checkpoint"),
    "configs/paper/imagenet/resnet34-resnet18-pmu10.yaml":
        ("teacher.checkpoint: no file at runs/paper/imagenet/teacher-resnet34/best.pt", "an ImageNet teacher"),
}

# Options of other programs that the documentation mentions, and the command whose --help lists them.
OTHER_OPTIONS = {
    "--nnodes": "torchrun", "--rdzv-*": "torchrun", "--nproc_per_node": "torchrun",
    "--epochs": "python benchmarks/precision_check.py", "--subset": "python benchmarks/precision_check.py",
    "--teacher": "python benchmarks/precision_check.py",
}


@dataclass
class Example:
    """One documented command, where it is written, and how it is run."""

    source: str  # file:line, or the --help page
    text: str  # as written (continuation lines joined, trailing comment dropped)
    group: str
    order: int
    inline: bool = False
    deps: list[Example] = field(default_factory=list, repr=False)
    _slow: bool | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return f"{self.source}: {self.text[:70]}"

    @property
    def argv(self) -> list[str]:
        """The command line that runs, after substitution (program first)."""
        return _strip_wrappers(shlex.split(SUBSTITUTIONS.get(self.text, (self.text,))[0]))

    @property
    def kind(self) -> str:
        """name (a command's name), form (placeholders), make, pip, script, or mixkd."""
        words = shlex.split(self.text)
        if self.text not in SUBSTITUTIONS and ("..." in self.text or "|" in self.text or "{" in self.text):
            return "form"
        prog = program(self.text)
        if prog == "make":
            return "make"
        if prog == "pip" or (prog == "python" and words[1:3] == ["-m", "pip"]):
            return "pip"
        if prog == "python" and words[1:2] != ["-m"]:
            return "script"
        argv = self.argv
        if argv[0] != "mixkd":
            return "form"
        if self.inline and _is_name(argv[1:]):
            return "name"
        return "mixkd"

    @property
    def expected_error(self) -> tuple[str, str] | None:
        hits = [v for k, v in EXPECTED_ERRORS.items() if k in self.text]
        return hits[0] if hits else None

    @property
    def verb(self) -> str:
        return self.argv[1] if len(self.argv) > 1 else ""

    @property
    def trains(self) -> bool:
        a = self.argv
        if self.kind != "mixkd" or "--help" in a or "-h" in a or "--resume" in a:
            return False
        return self.verb in ("train", "distill", "quickstart", "cohort") or (
            self.verb == "sweep" and not {"--dry-run", "--collect", "--status"} & set(a) and not self.on_slurm)

    @property
    def on_slurm(self) -> bool:
        """A sweep through the Slurm launcher (checked with --dry-run: tests/sweeps submits to a real Slurm)."""
        a = self.argv
        return self.verb == "sweep" and "--launcher" in a and a[a.index("--launcher") + 1:][:1] == ["slurm"]

    def run_argv(self, workdir: Path) -> list[str]:
        """What the test runs for this example in `workdir` (without the program name)."""
        a = list(self.argv[1:])
        if self.verb == "findings" and "--help" not in a and "--dry-run" not in a:
            return a + ["--dry-run"]
        if self.verb == "bench" and "--help" not in a:
            a = [BENCH_TINY.get(prev, tok) for prev, tok in zip(["", *a[:-1]], a, strict=True)]
        if self.on_slurm and "--help" not in a and "--dry-run" not in a:
            return a + ["--dry-run"]
        if not self.trains:
            return a
        extra = list(TINY)
        if not self.data_here(workdir):
            if self.verb == "sweep":
                return a + ["--dry-run"]
            extra = DATA_HERE + extra
        return a + extra

    def data_here(self, workdir: Path) -> bool:
        """Whether the example's data exists here: Fashion-MNIST (its recipe's or named), or a data.root here."""
        data = _resolved_data(tuple(self.argv[1:]))
        if data is None:  # a recipe an earlier example writes (runs/t/config.yaml): the data it was made with
            return True
        name, root = data
        if root is not None:
            return (workdir / root).exists()
        return name == "fashion-mnist"

    @property
    def writes(self) -> str | None:
        """The runs/... folder this example writes (its --out, or its command's default)."""
        a = self.argv
        if "--out" in a:
            return _norm(a[a.index("--out") + 1])
        if "--resume" in a:
            return _norm(a[a.index("--resume") + 1])
        if self.kind != "mixkd":
            return None
        if self.verb == "sweep" and len(a) > 2:
            import yaml

            spec = REPO / a[2]
            return _norm((yaml.safe_load(spec.read_text()) or {}).get("out", "")) if spec.is_file() else None
        return {"quickstart": "runs/quickstart", "report": "runs/report", "attack": "runs/analysis/attack"}.get(
            self.verb)

    @property
    def reads(self) -> list[str]:
        """The runs/... paths this example reads."""
        out = []
        for tok in self.argv[1:]:
            for part in tok.split("="):
                if part.startswith("runs/"):
                    out.append(_norm(part))
        return out

    @property
    def slow(self) -> bool:
        """Sweeps that train, benchmarks, the CIFAR-10 zip, and what reads their output."""
        if self._slow is None:
            own = self.kind == "mixkd" and "--help" not in self.argv and self.expected_error is None and (
                (self.trains and not self.data_here(REPO) and self.verb != "sweep")  # paper recipes, tiny
                or (self.verb == "sweep" and self.trains and self.data_here(REPO))
                or self.verb == "bench"
                or (self.trains and any(t.startswith("data.root=") and t.endswith(".zip") for t in self.argv)))
            self._slow = own or any(d.slow for d in self.deps)
        return self._slow


@cache
def _resolved_data(argv: tuple[str, ...]) -> tuple[str, str | None] | None:
    """(data.name, data.root) a train/distill/quickstart/sweep command line resolves to (None if invalid)."""
    import os

    from mixkd.cli import parse_args
    from mixkd.errors import MixkdError

    here = os.getcwd()
    os.chdir(REPO)
    try:
        args = parse_args(list(argv))
        if args.command == "sweep":
            from mixkd.commands.sweep import split_overrides
            from mixkd.sweeps.spec import load_spec

            settings, _, overrides = split_overrides(args.overrides)
            spec = load_spec(args.spec, args.out, settings)
            cfg = spec.points(overrides)[0].config()
        elif args.command == "cohort":  # the plan's first member (members share their data)
            from mixkd.commands.cohort import read_plan

            cfg = read_plan(Path(args.plan), list(args.overrides))[0].cfg
        elif args.command == "quickstart":
            from mixkd.config import load_config

            cfg = load_config(REPO / "configs" / "quickstart" / "teacher.yaml", args.overrides)
        else:
            from mixkd.commands.train import config_from_args

            cfg = config_from_args(args)
    except (MixkdError, SystemExit):
        return None
    finally:
        os.chdir(here)
    return cfg.data.name, cfg.data.root


def _norm(path: str) -> str:
    return path.rstrip("/")


def _strip_wrappers(words: list[str]) -> list[str]:
    """`flock LOCK cmd`, `torchrun [opts] -m mixkd ...` and `$(VENV)/bin/mixkd` -> the command they run."""
    if words[:1] == ["flock"]:
        return _strip_wrappers(words[2:])
    if words[:1] == ["torchrun"] and "-m" in words:
        i = words.index("-m")
        return ["mixkd", *words[i + 2:]] if words[i + 1:i + 2] == ["mixkd"] else words
    if words and words[0].endswith("/bin/mixkd"):
        return ["mixkd", *words[1:]]
    return words


@cache
def parser() -> argparse.ArgumentParser:
    from mixkd.cli import build_parser

    return build_parser()


def subparsers(p: argparse.ArgumentParser | None = None, path: tuple[str, ...] = ()):
    """(command words, parser) of `mixkd` and every (sub)command, in registration order."""
    p = p or parser()
    yield path, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from subparsers(sp, (*path, name))


def _is_name(words: list[str]) -> bool:
    """Command words and positional choices only, e.g. `train`, `analyze features`, `bench step`."""
    paths = {path for path, _ in subparsers()}
    i = 0
    while i < len(words) and tuple(words[:i + 1]) in paths:
        i += 1
    if i == 0:
        return not words  # `mixkd` alone names the program
    p = dict(subparsers())[tuple(words[:i])]
    choices = {c for a in p._actions if not a.option_strings and a.choices for c in a.choices}
    return all(w in choices for w in words[i:])


# --------------------------------------------------------------------------- extraction


def _join(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Join `\\` continuation lines; drop `$ ` prompts and trailing `# comments`; keep commands."""
    out, buf, start = [], "", 0
    for n, line in lines:
        text = line.strip()
        if not buf:
            start = n
            text = text[2:] if text.startswith("$ ") else text
        if text.endswith("\\"):
            buf += text[:-1].rstrip() + " "
            continue
        buf += text
        cmd = _drop_comment(buf.strip())
        buf = ""
        if program(cmd):
            out.append((start, cmd))
    return out


def _drop_comment(text: str) -> str:
    """A command without its trailing `# comment` (a # inside quotes stays)."""
    quote = None
    for k, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and k > 0 and text[k - 1].isspace():
            return text[:k].rstrip()
    return text


def program(text: str) -> str:
    """The program a command line starts with (`.venv/bin/python` -> python), or ''."""
    word = text.split(" ", 1)[0]
    name = word.rsplit("/", 1)[-1]
    return name if name in PROGRAMS else ""


def from_markdown(path: Path) -> tuple[list[Example], list[tuple[str, str]]]:
    """(command examples, inline mentions (source, text)) of a Markdown file."""
    rel = str(path.relative_to(REPO))
    lines = path.read_text().splitlines()
    examples: list[tuple[int, str, bool]] = []
    mentions: list[tuple[str, str]] = []
    block: list[tuple[int, str]] = []
    fenced = False
    for n, line in enumerate(lines, 1):
        if line.strip().startswith(("```", "~~~")):
            if fenced:
                examples += [(k, t, False) for k, t in _join(block)]
                block = []
            fenced = not fenced
            continue
        if fenced:
            block.append((n, line))
            continue
        if line.startswith("    ") and (block or program(line.strip())):
            block.append((n, line))
            continue
        if block:
            examples += [(k, t, False) for k, t in _join(block)]
            block = []
        for span in re.findall(r"`([^`]+)`", line):
            if program(span):
                examples.append((n, span, True))
            else:
                mentions.append((f"{rel}:{n}", span))
        for target in re.findall(r"\]\(([^)#]+)\)", line):
            if not target.startswith("http"):
                mentions.append((f"{rel}:{n}", target))
    examples = sorted(set(examples))
    return [Example(f"{rel}:{n}", t, rel, i, inline) for i, (n, t, inline) in enumerate(examples)], mentions


def from_yaml_header(path: Path, group: str, base: int) -> list[Example]:
    """Commands in the leading comment block of a recipe or sweep spec."""
    rel = str(path.relative_to(REPO))
    lines = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.startswith("#"):
            break
        text = line[1:]
        label = re.match(r"\s*[^`]*?:\s+(mixkd .*)", text)  # "# Standard teachers: mixkd train ..."
        lines.append((n, label.group(1) if label else text))
    found = [(n, t) for n, t in _join(lines)]
    for n, line in lines:  # `mixkd ...` in backticks inside prose
        found += [(n, span) for span in re.findall(r"`(mixkd [^`]+)`", line)]
    seen, out = set(), []
    for n, t in sorted(found):
        if t not in seen:
            seen.add(t)
            out.append(Example(f"{rel}:{n}", t, group, base + len(out)))
    return out


def help_text(path: tuple[str, ...]) -> str:
    """The --help page of `mixkd PATH` as the user sees it."""
    p = dict(subparsers())[path]
    return p.format_help()


def from_help() -> list[Example]:
    """The examples section of every --help page, in command order.

    A page whose examples run "after `CMD`" gets CMD as its first example; pages with the same prerequisite
    share one workspace (as a user would run them one after the other), the others get one each.
    """
    out = []
    for path, _ in subparsers():
        text = help_text(path)
        m = re.search(r"^examples.*:$", text, re.M)
        if m is None:
            continue
        header, lines = m.group(0), text[m.end():].splitlines()
        after = re.findall(r"`(mixkd [^`]+)`", header)
        page = " ".join(("mixkd", *path))
        group = f"help after {' and '.join(after)}" if after else f"help: {page}"
        start = len([e for e in out if e.group == group])
        cmds = [] if start else [(f"{page} --help (prerequisite)", c) for c in after]
        cmds += [(f"{page} --help", c) for _, c in _join([(k, ln) for k, ln in enumerate(lines)
                                                          if ln.startswith("  ")])]
        for k, (source, cmd) in enumerate(cmds):
            out.append(Example(source, cmd, group, start + k))
    return out


def from_makefile() -> tuple[list[Example], dict[str, list[str]]]:
    """The mixkd commands of every Makefile target, and each target's recipe lines."""
    recipes: dict[str, list[str]] = {}
    target = None
    for line in (REPO / "Makefile").read_text().splitlines():
        m = re.match(r"^([\w.-]+):", line)
        if m:
            target = m.group(1)
            recipes.setdefault(target, [])
        elif line.startswith("\t") and target:
            recipes[target].append(line.strip())
    out = []
    for t, cmds in recipes.items():
        for c in cmds:
            words = _strip_wrappers(c.split())
            if words[:1] == ["mixkd"]:
                out.append(Example(f"Makefile: {t}", " ".join(words), "Makefile", len(out)))
    return out, recipes


FIGURE_ORDER = ["teachers.yaml"]  # the other specs read the teachers this one trains


def collect() -> tuple[list[Example], list[tuple[str, str]], dict[str, list[str]]]:
    """Every example (with its dependencies), every inline mention, and the Makefile's recipes."""
    examples: list[Example] = []
    mentions: list[tuple[str, str]] = []
    make_examples, recipes = from_makefile()
    for md in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        ex, men = from_markdown(md)
        mentions += men
        for e in ex:  # a `make X` block runs the target's mixkd commands at that point of the document
            if e.kind == "make" and not e.inline:
                target = e.text.split()[1]
                for m in make_examples:
                    if m.source == f"Makefile: {target}":
                        examples.append(Example(e.source, m.text, e.group, 0))
            examples.append(e)
    figures = sorted((REPO / "configs" / "paper" / "figures").glob("*.yaml"),
                     key=lambda p: (p.name not in FIGURE_ORDER, p.name))
    for spec in figures:
        examples += from_yaml_header(spec, "configs/paper/figures", len(examples))
    for recipe in sorted((REPO / "configs").rglob("*.yaml")):
        if "figures" not in recipe.parts:
            examples += from_yaml_header(recipe, str(recipe.relative_to(REPO)), 0)
    examples += from_help() + make_examples
    by_group: dict[str, list[Example]] = {}
    for e in examples:
        by_group.setdefault(e.group, []).append(e)
    for group in by_group.values():
        for i, e in enumerate(group):
            e.order = i
            touched = e.reads + ([e.writes] if e.writes else [])
            for d in group[:i]:
                w = d.writes
                if w and d.kind == "mixkd" and any(r == w or r.startswith(w + "/") or w.startswith(r + "/")
                                                   for r in touched):
                    e.deps.append(d)
    return examples, mentions, recipes
