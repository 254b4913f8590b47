"""The documentation is executable: every command example in README.md, docs/, the recipes' headers, the
Makefile and every --help page runs (by the rules in tests/doc_examples.py) and does what it says."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mixkd.cli import parse_args
from tests.conftest import SHARED, requires_fmnist
from tests.doc_examples import (
    EXPECTED_ERRORS,
    OTHER_OPTIONS,
    REPO,
    SUBSTITUTIONS,
    Example,
    collect,
    help_text,
    subparsers,
)
from tests.imagezip import write_cifar10_jpg_zip

EXAMPLES, MENTIONS, RECIPES = collect()
DEPENDED_ON = {id(d) for e in EXAMPLES for d in e.deps}


def _params(kinds: tuple[str, ...], runs: bool = False):
    out = []
    for e in EXAMPLES:
        if e.kind in kinds:
            marks = [pytest.mark.slow] if runs and e.slow else []
            out.append(pytest.param(e, id=e.id, marks=marks))
    return out


# --------------------------------------------------------------------------- running examples


@dataclass
class Result:
    argv: list[str]
    rc: int
    out: str
    err: str
    cwd: Path

    def describe(self) -> str:
        return (f"mixkd {shlex.join(self.argv)} -> exit {self.rc}\n"
                f"stdout:\n{self.out[-2000:]}\nstderr:\n{self.err[-3000:]}")


def run_in_process(argv: list[str], cwd: Path) -> Result:
    """The real `mixkd` entry point in this process (torch is imported once for all examples)."""
    import torch

    from mixkd.cli import main

    out, err, threads, here = io.StringIO(), io.StringIO(), torch.get_num_threads(), Path.cwd()
    torch.set_num_threads(1)  # as TINY's runtime.threads=1 for the analyses too: fast on a shared machine
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    finally:
        os.chdir(here)
        torch.set_num_threads(threads)
    return Result(argv, rc, out.getvalue(), err.getvalue(), cwd)


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


class Workspaces:
    """One scratch copy of the repository per group; examples run in order, each once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.results: dict[int, Result] = {}
        self.memo: dict[tuple[str, ...], Result] = {}

    def dir(self, group: str) -> Path:
        ws = self.root / re.sub(r"[^\w.-]+", "_", group)
        repo = ws / "repo"
        if not repo.exists():
            repo.mkdir(parents=True)
            for name in ("configs", "benchmarks", "docs", "Makefile"):
                (repo / name).symlink_to(REPO / name)
            if SHARED.exists():  # the documentation's ../shared/data/cifar10-jpg.zip
                (ws / "shared").symlink_to(SHARED.resolve())
            else:  # a plain clone: a small zip of the same layout (the examples only dry-run on it)
                write_cifar10_jpg_zip(ws / "shared" / "data" / "cifar10-jpg.zip", train=2, test=1)
        return repo

    def run(self, e: Example) -> Result:
        if id(e) in self.results:
            return self.results[id(e)]
        for d in e.deps:
            r = self.run(d)
            if r.rc != 0 and d.expected_error is None:
                pytest.fail(f"the earlier example {d.id} failed:\n{r.describe()}")
        cwd = self.dir(e.group)
        argv = e.run_argv(cwd)
        # The same command, run before in another document's fresh copy, made the same files: copy them.
        reusable = not e.deps and (e.writes is not None or id(e) not in DEPENDED_ON)
        earlier = self.memo.get(tuple(argv)) if reusable else None
        if earlier is not None and (e.writes is None or (earlier.cwd / e.writes).exists()):
            if e.writes is not None and not (cwd / e.writes).exists():
                shutil.copytree(earlier.cwd / e.writes, cwd / e.writes, symlinks=True)
            result = dataclasses.replace(earlier, cwd=cwd)
        else:
            before = _files(cwd) if e.expected_error else None
            result = run_in_process(argv, cwd)
            if e.expected_error and result.rc == 2:
                assert _files(cwd) == before, f"{e.id}: files changed although it stopped with an error"
            if reusable:
                self.memo[tuple(argv)] = result
        self.results[id(e)] = result
        return result


@pytest.fixture(scope="module")  # its MIXKD_DATA stays with the doc examples
def workspaces(tmp_path_factory):
    root = tmp_path_factory.mktemp("doc-examples")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIXKD_DATA", str(root / "no-data"))  # nothing but Fashion-MNIST and named roots is here
        mp.setenv("PYTHONUNBUFFERED", "1")
        yield Workspaces(root)


@requires_fmnist
@pytest.mark.parametrize("example", _params(("mixkd",), runs=True))
def test_example_runs(example: Example, workspaces: Workspaces):
    result = workspaces.run(example)
    expected = example.expected_error
    if expected is not None:
        lines = [ln for ln in result.err.splitlines() if ln.strip()]
        assert result.rc == 2 and len(lines) == 1 and lines[0].startswith("mixkd: error: "), result.describe()
        assert expected[0] in lines[0], f"expected {expected[0]!r}:\n{result.describe()}"
        return
    assert result.rc == 0, result.describe()
    if "--out" in result.argv and "--dry-run" not in result.argv:
        out = result.cwd / result.argv[result.argv.index("--out") + 1]
        assert out.exists(), f"{example.id}: nothing at --out {out}"


# --------------------------------------------------------------------------- static checks


def _static_check(argv: list[str]) -> None:
    """What a command line asks for is valid: it parses; its recipe, overrides and sweep points validate."""
    from mixkd.commands.train import config_from_args
    from mixkd.config import load_config
    from mixkd.quickstart import CONFIG_DIR
    from mixkd.sweeps.points import check_points
    from mixkd.sweeps.runner import command_line
    from mixkd.sweeps.spec import load_spec

    if "--help" in argv or "-h" in argv:
        with pytest.raises(SystemExit) as e:
            parse_args(argv)
        assert e.value.code == 0
        return
    args = parse_args(argv)
    if args.command in ("train", "distill") and not args.resume:
        if not (args.config or "").startswith("runs/"):  # a run an earlier example makes: checked when it runs
            config_from_args(args)
    elif args.command == "quickstart":
        for recipe in ("teacher.yaml", "student.yaml"):
            load_config(CONFIG_DIR / recipe, args.overrides)
    elif args.command == "cohort":
        from mixkd.commands.cohort import read_plan

        read_plan(Path(args.plan), list(args.overrides))
    elif args.command == "sweep":
        from mixkd.commands.sweep import split_overrides

        settings, _, overrides = split_overrides(args.overrides)  # launcher settings: checked when it runs
        spec = load_spec(args.spec, args.out, settings)
        check_points(spec.points(overrides), spec.out, require_teachers=False)
        for text in spec.commands:
            _static_check(command_line(text, spec, overrides)[3:])


@pytest.mark.parametrize("example", _params(("mixkd",)))
def test_example_is_valid(example: Example, monkeypatch):
    """Fast and for every example, slow ones included: renamed files, options or config keys fail here."""
    monkeypatch.chdir(REPO)
    _static_check(example.argv[1:])


@pytest.mark.parametrize("example", _params(("name",)))
def test_named_command_exists(example: Example, capsys):
    words = example.argv[1:]
    try:
        parse_args(words)
    except SystemExit:  # a command named without its required arguments
        err = capsys.readouterr().err
        assert "the following arguments are required" in err, err


def _command_path(words: list[str]) -> tuple[tuple[str, ...], list[str]]:
    paths = dict(subparsers())
    path: tuple[str, ...] = ()
    for w in words:
        if all((*path, alt) in paths for alt in w.split("|")):
            path = (*path, w.split("|")[0])
        else:
            break
    return path, [w for w in words if w.startswith("--")]


@pytest.mark.parametrize("example", _params(("form",)))
def test_form_names_real_commands_and_options(example: Example):
    words = shlex.split(example.text)
    if words[:1] == ["torchrun"]:
        _check_other_options([w for w in words[:words.index("-m")] if w.startswith("--")], "torchrun")
    i = words.index("mixkd")
    path, options = _command_path(words[i + 1:])
    assert path, f"{example.id}: no mixkd command in it"
    parser = dict(subparsers())[path]
    for opt in options:
        assert opt in parser._option_string_actions, f"{example.id}: mixkd {' '.join(path)} has no {opt}"


@pytest.mark.parametrize("example", _params(("make",)))
def test_make_target_exists(example: Example):
    target = example.text.split()[1]
    assert target in RECIPES, f"{example.id}: the Makefile has no target {target!r}"


@pytest.mark.parametrize("example", _params(("pip",)))
def test_pip_install_is_this_projects_way(example: Example):
    words = shlex.split(example.text)
    target = next((w for w in words[words.index("install") + 1:] if not w.startswith("-")), "")
    extras = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", target)
    assert extras, f"{example.id}: mixkd is installed from its checkout ('.' or '.[EXTRA]'), got {target!r}"
    declared = _extras()
    for extra in (extras.group(1) or "").split(","):
        assert not extra or extra in declared, f"{example.id}: pyproject.toml has no extra {extra!r}"


@pytest.mark.parametrize("example", _params(("script",)))
def test_script_and_its_options_exist(example: Example):
    words = example.argv
    script = REPO / words[1]
    assert script.is_file(), f"{example.id}: no {words[1]}"
    _check_other_options([w for w in words[2:] if w.startswith("--")], f"python {words[1]}")


def _extras() -> set[str]:
    """The optional-dependency extras pyproject.toml declares."""
    text = (REPO / "pyproject.toml").read_text().split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([\w-]+)\s*=", text, re.M))


_HELP_OF: dict[str, str] = {}


def _check_other_options(options: list[str], program: str) -> None:
    """Options of another program appear in its --help (run in this process: torch is imported already)."""
    import runpy

    if program not in _HELP_OF:
        words = shlex.split(program)
        out, argv = io.StringIO(), sys.argv
        sys.argv = [words[-1], "--help"]
        try:
            if program == "torchrun":
                from torch.distributed.run import get_args_parser

                out.write(get_args_parser().format_help())
            else:
                with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
                    runpy.run_path(str(REPO / words[1]), run_name="__main__")
        finally:
            sys.argv = argv
        _HELP_OF[program] = out.getvalue()
    for opt in options:
        assert opt.rstrip("*") in _HELP_OF[program], f"{program} --help does not list {opt}"


# --------------------------------------------------------------------------- the rules' tables stay honest


def test_every_rule_is_used():
    texts = [e.text for e in EXAMPLES]
    for key in SUBSTITUTIONS:
        assert key in texts, f"SUBSTITUTIONS: no documented example is {key!r} any more"
    for key in EXPECTED_ERRORS:
        assert any(key in t for t in texts), f"EXPECTED_ERRORS: no documented example contains {key!r}"


def test_no_default_example_waits_for_a_slow_one():
    for e in EXAMPLES:
        if e.kind == "mixkd" and not e.slow:
            assert not any(d.slow for d in e.deps), e.id


_COMMAND_WORDS = "|".join(sorted({p[0] for p, _ in subparsers() if p}))


def test_no_command_is_left_out_of_the_extraction():
    """Every line of the documentation that names a mixkd command is part of an extracted example or span."""
    covered: dict[str, set[int]] = {}
    for e in EXAMPLES:
        if ":" in e.source and not e.source.startswith("mixkd"):
            f, line = e.source.rsplit(":", 1)
            if line.strip().isdigit():
                covered.setdefault(f, set()).add(int(line))
    for src, _ in MENTIONS:
        f, line = src.rsplit(":", 1)
        covered.setdefault(f, set()).add(int(line))
    pattern = re.compile(rf"(?<![\w/.-])mixkd ({_COMMAND_WORDS})\b")
    missed = []
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "configs").rglob("*.yaml"))]
    for path in files:
        rel = str(path.relative_to(REPO))
        lines = path.read_text().splitlines()
        in_block, cont = False, False
        for n, line in enumerate(lines, 1):
            if rel.endswith(".yaml") and not line.startswith("#"):
                break  # only the header comment of a recipe; its `commands:` run with the sweep
            if line.strip().startswith("```"):
                in_block = not in_block
            started = n in covered.get(rel, set())
            if pattern.search(line) and not started and not cont:
                missed.append(f"{rel}:{n}: {line.strip()}")
            cont = line.rstrip().endswith("\\") and (started or cont)
    assert not missed, "documented commands the doc test does not extract:\n" + "\n".join(missed)


# --------------------------------------------------------------------------- --help pages


HELP_PAGES = [pytest.param(path, id="mixkd " + " ".join(path)) for path, _ in subparsers()]


@pytest.mark.parametrize("path", HELP_PAGES)
def test_help_page_has_examples_and_shows_defaults(path):
    text = help_text(path)
    assert "examples" in text and any(e.source == f"mixkd {' '.join(path)} --help".replace("  ", " ")
                                      for e in EXAMPLES), f"mixkd {' '.join(path)} --help has no examples"
    parser = dict(subparsers())[path]
    for a in parser._actions:
        if a.option_strings and a.default not in (None, False, [], argparse_suppress()) and a.help:
            assert "default" in a.help, f"mixkd {' '.join(path)} {a.option_strings[0]}: help hides its default"


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


def test_seed_help_says_what_each_command_seeds():
    for path, parser in subparsers():
        action = parser._option_string_actions.get("--seed")
        if action is None:
            continue
        mentions_tsne = "t-SNE" in action.help or "k-means" in action.help
        assert mentions_tsne == (path == ("analyze", "features")), f"mixkd {' '.join(path)} --seed: {action.help}"


# --------------------------------------------------------------------------- inline mentions


_SECTIONS = ("data", "model", "teacher", "mixing", "distill", "optim", "runtime")
_KEY = re.compile(rf"^(seed|name|({'|'.join(_SECTIONS)})\.(\*|[a-z_]+))(=\S*)?$")


def _config_fields() -> dict[str, set[str]]:
    """{section: its keys} as a config file writes them: distill's keys include the method sections
    (distill.dkd, ...), mixing's the mixings' own keys (mixing.switch_prob, ...), not the fields holding them."""
    from mixkd.config import RunConfig, to_dict

    saved = to_dict(RunConfig())
    return {"": {k for k in saved if k not in _SECTIONS}, **{s: set(saved[s]) for s in _SECTIONS}}


def _config_mentions() -> list[tuple[str, str]]:
    files = (".json", ".jsonl", ".yaml", ".pt", ".png", ".csv", ".md", ".py")
    return [(src, m) for src, m in MENTIONS
            if m.split() and all(_KEY.match(t) and not t.endswith(files) for t in m.split())]


@pytest.mark.parametrize("src, span", [pytest.param(s, m, id=f"{s}: {m}") for s, m in _config_mentions()])
def test_config_key_mentions_are_real(src, span):
    from mixkd.config import load_config

    if (src, span) in _MISTAKES:
        return  # test_mistakes_table_prints_what_it_says
    fields = _config_fields()
    for tok in span.split():
        key = tok.split("=", 1)[0]
        section, _, name = key.rpartition(".")
        assert name == "*" or name in fields[section], f"{src}: `{span}`: no config key {key}"
    values = [t for t in span.split() if "=" in t]
    if values and not re.search(r"=(N|PATH|DIR|NAME|VALUE)$|\|", span):
        load_config(None, values)


MISTAKES_PAGE = "docs/errors.md"  # the Common mistakes table (it was the README's until issue 23)


def _mistake_rows() -> dict[tuple[str, str], str]:
    """{(source, `KEY=VALUE` mistake): the error docs/errors.md says mixkd prints} of the Common mistakes table."""
    rows = {}
    lines = (REPO / MISTAKES_PAGE).read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if re.match(r"#+ Common mistakes", ln))
    for n, line in enumerate(lines[start + 1:], start + 2):
        if line.startswith("#"):
            break
        cells = line.split(" | ")
        # "| a typo in a key: `optim.lrr=0.1` | `the error` |": the override after the colon is the mistake
        spans = [m for m in re.findall(r": `([^`]+)`$", cells[0]) if all(_KEY.match(t) for t in m.split())]
        if len(cells) == 2 and len(spans) == 1 and "=" in spans[0]:
            printed = re.findall(r"`(.+)` \|$", cells[1])
            rows[(f"{MISTAKES_PAGE}:{n}", spans[0])] = printed[0] if printed else ""
    return rows


_MISTAKES = _mistake_rows()


@pytest.mark.parametrize("src, span", [pytest.param(s, m, id=f"{s}: {m}") for s, m in _MISTAKES])
def test_mistakes_table_prints_what_it_says(src, span):
    from mixkd.config import load_config
    from mixkd.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config(None, span.split())
    said = _MISTAKES[(src, span)].split("...")[0].rstrip(" (")
    assert said and str(e.value).startswith(said), f"{src}: the page says `{_MISTAKES[(src, span)]}`, mixkd: {e.value}"


def test_mistakes_table_is_found():
    """The table the test above checks row by row is where it is looked for, with its `KEY=VALUE` rows."""
    assert len(_MISTAKES) >= 4, f"{MISTAKES_PAGE}: only {len(_MISTAKES)} `KEY=VALUE` rows in Common mistakes"


def _option_mentions() -> list[tuple[str, str]]:
    return [(src, m) for src, m in MENTIONS if m.startswith("--")]


@pytest.mark.parametrize("src, span", [pytest.param(s, m, id=f"{s}: {m}") for s, m in _option_mentions()])
def test_option_mentions_are_real(src, span):
    ours = {o for _, p in subparsers() for o in p._option_string_actions}
    for opt in re.findall(r"--[\w*-]+", span):
        if opt in ours:
            continue
        assert opt in OTHER_OPTIONS, f"{src}: `{span}`: no mixkd command has {opt} (nor does OTHER_OPTIONS say whose)"
        _check_other_options([opt], OTHER_OPTIONS[opt])


_PATH = re.compile(r"^(configs|src|docs|tests|benchmarks)/[\w./*-]*$")


@pytest.mark.parametrize("src, span", [pytest.param(s, m, id=f"{s}: {m}") for s, m in MENTIONS
                                       if _PATH.match(m) and "..." not in m])
def test_path_mentions_exist(src, span):
    base = (REPO / src.rsplit(":", 1)[0]).parent
    hits = list(REPO.glob(span)) + list(base.glob(span))
    assert hits, f"{src}: `{span}` does not exist"


CONFIG_PAGE = "docs/configuration.md"  # the configuration table (it was the README's until issue 23)


def test_configuration_table_lists_every_key():
    text = (REPO / CONFIG_PAGE).read_text()
    assert text.count("<!-- begin: configuration table -->") == 1
    assert text.count("<!-- end: configuration table -->") == 1
    block = text.split("<!-- begin: configuration table -->", 1)[1].split("<!-- end: configuration table -->", 1)[0]
    fields = _config_fields()
    listed: dict[str, set[str]] = {}
    for key, cell in re.findall(r"^\| `([\w.<>*]+)` \| (.+) \|$", block, re.M):
        if key == "distill.<method>.*":  # the per-method sections, named in the row's first cell
            listed.setdefault("distill", set()).update(re.findall(r"`(\w+)`", cell.split(" | ")[0]))
            continue
        section, _, name = key.rpartition(".")
        listed.setdefault(section, set()).add(name)
    for name, keys in fields.items():
        assert listed.get(name) == keys, f"{CONFIG_PAGE} configuration table, section {name or 'top level'}: " \
                                         f"lists {sorted(listed.get(name, ()))}, the config has {sorted(keys)}"
    extra = set(listed) - set(fields)
    assert set(listed) == set(fields), f"{CONFIG_PAGE} configuration table: no such sections {extra}"


# --------------------------------------------------------------------------- figures name their machine

_MACHINE = re.compile(r"AMD|Intel|EPYC|Xeon|NVIDIA|Apple M\d|Graviton")
# Figures that do not yet say which machine produced them (reported to the lead; remove when fixed).
FIGURES_WITHOUT_MACHINE = {
    "docs/images/analysis-features.png", "docs/images/analysis-logits.png", "docs/images/analysis-attack.png",
    "docs/images/analysis-sweep-heatmap.png", "docs/images/analysis-report-curves.png", "attack.md table",
}


# The README and the pages that took its reference material (issue 23): their figures were checked in the README.
FIGURE_PAGES = ("README.md", "docs/analyses.md", "docs/commands.md", "docs/errors.md", "docs/mixing-and-losses.md",
                "docs/run-folders.md", "docs/speed.md")


def test_readme_figures_name_their_machine():
    unnamed = set()
    for page in FIGURE_PAGES:
        text = (REPO / page).read_text()
        chapters = re.split(r"^## ", text, flags=re.M)
        for chapter in chapters:
            named = bool(_MACHINE.search(chapter))
            for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", chapter):
                if not named:
                    unnamed.add(str((REPO / page).parent.joinpath(image).resolve().relative_to(REPO)))
            if not named and re.search(r"^\| .*\d+\.\d+ \|", chapter, re.M):
                unnamed.add("attack.md table" if "attack.md" in chapter else f"{page}: {chapter.splitlines()[0]}")
    assert unnamed == FIGURES_WITHOUT_MACHINE, (
        f"figures without their machine: {sorted(unnamed - FIGURES_WITHOUT_MACHINE)}; now named, remove from "
        f"FIGURES_WITHOUT_MACHINE: {sorted(FIGURES_WITHOUT_MACHINE - unnamed)}")


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading line, the text up to the next heading of any level) of a Markdown page, code blocks skipped."""
    out, heading, body, in_code = [], "", [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("#"):
            out.append((heading, "\n".join(body)))
            heading, body = line, []
        else:
            body.append(line)
    return out + [(heading, "\n".join(body))]


# Tables whose machine was not recorded with them (reported to the lead; remove when fixed).
SPEED_TABLES_WITHOUT_MACHINE = {"#### bf16 drift of teacher outputs (benchmarks/precision_check.py)"}


def test_speed_tables_name_their_machine():
    """docs/speed.md is a reference of results per machine: every table of figures names its CPU in its own
    section or in one of the headings above it."""
    unnamed, above = [], {}
    for heading, body in _sections((REPO / "docs/speed.md").read_text()):
        level = len(heading) - len(heading.lstrip("#"))
        above = {k: v for k, v in above.items() if k < level} | {level: heading}
        context = "\n".join(above.values()) + "\n" + body
        has_figures = any(re.search(r"\d", row) for row in re.findall(r"^\|.*\|$", body, re.M)
                          if not re.match(r"^\|[-| ]+\|$", row))
        tables = re.findall(r"^\| .*\d+(?:\.\d+)?(?:x|×|%)? \|", body, re.M)
        if has_figures and tables and not _MACHINE.search(context):
            unnamed.append(heading)
    assert set(unnamed) == SPEED_TABLES_WITHOUT_MACHINE, (
        f"docs/speed.md: tables without their machine under {sorted(set(unnamed) - SPEED_TABLES_WITHOUT_MACHINE)}; "
        f"now named, remove from SPEED_TABLES_WITHOUT_MACHINE: {sorted(SPEED_TABLES_WITHOUT_MACHINE - set(unnamed))}")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.lstrip("#").strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading, _ in _sections(path.read_text())[1:]:
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


DOC_PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", [pytest.param(p, id=str(p.relative_to(REPO))) for p in DOC_PAGES])
def test_relative_links_resolve(page: Path):
    """Every relative link of the README and docs/ names a file that exists, and its #anchor a heading there."""
    broken = []
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s):, mailto:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: broken links:\n" + "\n".join(broken)


def test_examples_were_found():
    """The extraction itself works: each source contributes examples."""
    groups = {e.group for e in EXAMPLES}
    assert {"README.md", "docs/speed.md", "configs/paper/figures", "help: mixkd train", "Makefile"} <= groups
    assert len([e for e in EXAMPLES if e.kind == "mixkd"]) > 80
