"""The findings study: the committed sweeps of configs/findings/, the analyses of their runs, and their numbers.

`Study.run` runs (or resumes) teachers.yaml, then students.yaml (seed s of a student learns from the teachers
of seed s); `Study.analyse` measures the finished runs seed by seed — softmax entropy, V-scores of penultimate
features, accuracy under FGSM / I-FGSM — and caches each result next to the runs, keyed by the checkpoints it
read, so rerunning only measures what changed. docs/findings.md is written from these numbers by
`mixkd.studies.findings_doc`.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

from mixkd.analysis.tables import write_json
from mixkd.config import RECIPE_DIR, read_yaml_mapping
from mixkd.errors import ConfigError, MixkdError
from mixkd.io import cpu_info
from mixkd.sweeps.points import status
from mixkd.sweeps.runner import run_sweep
from mixkd.sweeps.spec import SweepSpec, load_spec

FINDINGS_DIR = RECIPE_DIR / "findings"  # shipped with mixkd, like the other recipes
SPEC_FILES = ("teachers.yaml", "students.yaml")  # in the order they run: the students read the teachers
DEFAULT_DATA = "../shared/data/cifar10-jpg.zip"

TEACHERS = ("teachers/T", "teachers/Mix-T")
SCENARIOS = ("students/T-S-T4", "students/MixT-S-T4", "students/MixT-MixS-T4", "students/T-MixS-T4")
MIXKD = ("students/MixKD-none", "students/MixKD-PMU10", "students/MixKD-PMU50", "students/MixKD-FMU")
STUDENTS = ("students/no-KD", *SCENARIOS, "students/T-S-T1", "students/MixT-S-T1", *MIXKD)
# summary.json's calibration of the test pass at the best and the last epoch (mixkd.engine.calibration)
CALIBRATION = ("best_ece", "last_ece", "best_mce", "best_nll", "best_brier")


@dataclass(frozen=True)
class AnalysisPlan:
    """Which run groups each analysis reads, and how much data it uses (fixed for the study)."""

    logits: tuple[str, ...] = (*TEACHERS, *STUDENTS)
    features: tuple[str, ...] = TEACHERS
    attack: tuple[str, ...] = ("students/T-S-T4", "students/T-MixS-T4", *MIXKD)
    feature_per_class: int = 100  # per class and split: 4 classes -> 400 points (the whole test slice), exact t-SNE
    attack_per_class: int = 20  # test images per class attacked (the same images for every model of a seed)
    attack_eps: tuple[str, ...] = ("0", "1/255", "2/255", "4/255")
    attack_steps: int = 10


def machine() -> dict:
    """What this process runs on: CPU model, cores, bf16 support, torch and Python versions."""
    import torch

    model, flags = cpu_info()
    cpu = model or platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_tile" in flags,
            "gpu": gpu, "torch": torch.__version__, "python": platform.python_version()}


@dataclass
class Study:
    """The study's specs, run folders and analyses under one root folder."""

    root: Path
    data: str = DEFAULT_DATA
    overrides: tuple[str, ...] = ()  # KEY=VALUE applied to every run (scales the study down in tests)
    settings: tuple[str, ...] = ()  # vars.NAME=VALUE and grid.AXIS=[...] of the specs
    plan: AnalysisPlan = field(default_factory=AnalysisPlan)
    spec_dir: Path = FINDINGS_DIR

    def __post_init__(self) -> None:
        # absolute paths, so the saved configs (and with them the skip/resume checks) do not depend on the cwd
        self.root = Path(os.path.abspath(self.root))
        self.data = os.path.abspath(self.data) if self.data and not Path(self.data).is_absolute() else self.data

    @cached_property
    def specs(self) -> dict[str, SweepSpec]:
        """The sweeps, by name (teachers, students), with the study's root, data and settings."""
        specs, used = {}, set()
        for file in SPEC_FILES:
            path = self.spec_dir / file
            axes = set(read_yaml_mapping(path, "the findings specs ship with mixkd").get("grid") or {})
            mine = [s for s in self.settings if not s.startswith("grid.") or s.split("=", 1)[0][5:] in axes]
            used |= set(mine)
            base = [f"vars.data={self.data}", f"vars.teachers={self.root / 'teachers'}"]
            specs[path.stem] = load_spec(path, self.root / path.stem, base + mine)
        unused = [s for s in self.settings if s not in used]
        if unused:
            raise ConfigError(f"{unused[0]!r}: no findings spec has that axis; axes: "
                              + ", ".join(sorted({a.name for s in specs.values() for a in s.axes})))
        return specs

    def runs(self) -> dict[tuple[str, int], Path]:
        """(group, seed) -> run directory of every point, e.g. ('students/T-S-T4', 0)."""
        out = {}
        for name, spec in self.specs.items():
            for p in spec.points(self.overrides):
                label = next(v for k, v in p.coords.items() if k != "seed")
                out[(f"{name}/{label}", int(p.coords.get("seed", 0)))] = spec.out / p.name
        return out

    def seeds(self) -> list[int]:
        """The seeds of the study, sorted."""
        return sorted({s for _, s in self.runs()})

    def finished(self, group: str, seed: int) -> Path | None:
        """The run directory of (group, seed) if it finished with a best.pt, else None."""
        run = self.runs().get((group, seed))
        return run if run is not None and status(run) == "done" and (run / "best.pt").is_file() else None

    # ------------------------------------------------------------------ running

    def run(self, jobs: int = 2, say: Callable[[str], None] = print) -> None:
        """Run or resume every sweep, teachers first; a session line (machine, load, time) goes to sessions.jsonl."""
        start, load0 = time.time(), _loadavg()
        todo = {name: [p for p in spec.points(self.overrides) if status(spec.out / p.name) != "done"]
                for name, spec in self.specs.items()}
        try:
            for name, spec in self.specs.items():
                _, failed = run_sweep(spec, self.overrides, jobs, say)
                if failed:
                    raise MixkdError(f"{failed} {name} run(s) failed (logs in {spec.out / 'logs'}); fix them and "
                                     "run the same command again: finished runs are skipped")
        finally:
            ran = {k: [p.name for p in v if status(self.specs[k].out / p.name) == "done"] for k, v in todo.items()}
            if any(ran.values()):
                self.root.mkdir(parents=True, exist_ok=True)
                with (self.root / "sessions.jsonl").open("a") as f:
                    f.write(json.dumps({
                        "started": datetime.fromtimestamp(start, timezone.utc).isoformat(timespec="seconds"),
                        "wall_s": round(time.time() - start, 1), "jobs": jobs, "loadavg_start": load0,
                        "loadavg_end": _loadavg(), "runs_finished": sum(map(len, ran.values())),
                        "machine": machine()}) + "\n")

    def sessions(self) -> list[dict]:
        """Every recorded session of running the sweeps."""
        path = self.root / "sessions.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []

    # ------------------------------------------------------------------ analyses

    def analyse(self, say: Callable[[str], None] = print,
                kinds: Sequence[str] = ("logits", "features", "attack")) -> dict[str, dict[int, dict]]:
        """{kind: {seed: result}} of the logits, features and attack analyses (cached per seed)."""
        plan = asdict(self.plan)
        every = {"logits": (self.plan.logits, self._logits, {}),
                 "features": (self.plan.features, self._features, {"per_class": self.plan.feature_per_class}),
                 "attack": (self.plan.attack, self._attack, {k: v for k, v in plan.items() if k.startswith("attack_")})}
        out: dict[str, dict[int, dict]] = {k: {} for k in every}
        for seed in self.seeds():
            for kind, (groups, fn, params) in every.items():
                if kind not in kinds:
                    continue
                result = self._cached(kind, seed, groups, fn, params, say)
                if result is not None:
                    out[kind][seed] = result
        return out

    def _cached(self, kind: str, seed: int, groups: Sequence[str], fn, params: dict, say) -> dict | None:
        runs = [(g, d) for g in groups if (d := self.finished(g, seed)) is not None]
        if not runs:
            return None
        # what the result depends on: its settings and the checkpoints it read (JSON-normalised for comparison)
        key = json.loads(json.dumps({"params": params,
                                     "runs": [[g, str(d), *_stamp(d / "best.pt")] for g, d in runs]}))
        path = self.root / "analysis" / f"{kind}-seed{seed}.json"
        if path.is_file():
            cached = json.loads(path.read_text())
            if cached.get("key") == key:
                return cached["results"]
        say(f"findings: {kind} analysis of seed {seed} ({len(runs)} runs)")
        t0 = time.perf_counter()
        results = fn(runs)
        write_json(path, {"key": key, "seconds": round(time.perf_counter() - t0, 1), "results": results})
        return results

    @staticmethod
    def _load(runs: Sequence[tuple[str, Path]]):
        from mixkd.analysis.loading import load_models

        models, data = load_models([d for _, d in runs])
        # no runtime.threads here: the analyses run alone after the sweeps, so they take every core
        return [(g, m) for (g, _), m in zip(runs, models, strict=True)], data

    def _logits(self, runs: Sequence[tuple[str, Path]]) -> dict:
        from mixkd.analysis.logits import collect_logits, logit_stats

        models, data = self._load(runs)
        out: dict[str, dict] = {}
        for split in ("train", "test"):
            loader = data.loader(split)
            for group, m in models:
                s = logit_stats(*collect_logits(m.model, loader, f"{group} {split}"))
                out.setdefault(group, {})[split] = {"top1": s["top1"], "entropy": s["entropy"],
                                                    "confidence": s["confidence"]}
        return out

    def _features(self, runs: Sequence[tuple[str, Path]]) -> dict:
        from mixkd.analysis.features import analyze_features, resolve_classes
        from mixkd.analysis.presets import preset_for

        models, data = self._load(runs)
        names = data.spec.classes
        out: dict[str, dict] = {}
        for kind in ("similar", "dissimilar"):
            preset = preset_for(kind, names)
            if preset is None:
                continue
            classes = resolve_classes([preset], names)
            results = analyze_features([m for _, m in models], data, classes, ("train", "test"),
                                       self.plan.feature_per_class, seed=0)
            group_of = {m.label: g for g, m in models}
            for r in results:
                out.setdefault(kind, {"preset": preset, "classes": [names[c] for c in classes]}).setdefault(
                    group_of[r.model], {})[r.split] = {
                    "v_features": r.v_raw, "v_tsne": r.v_tsne, "labels": r.labels.tolist(),
                    "embedding": [[round(float(x), 3) for x in row] for row in r.embedding]}
        return out

    def _attack(self, runs: Sequence[tuple[str, Path]]) -> dict:
        from mixkd.analysis.robustness import AttackSettings, accuracy_under_attack, parse_eps

        models, data = self._load(runs)
        eps = parse_eps(self.plan.attack_eps)
        loader = data.loader("test", data.select("test", None, self.plan.attack_per_class, 0))
        settings = AttackSettings(self.plan.attack_steps)
        return {"eps": eps, "images": loader.num_samples,
                "top1": {g: accuracy_under_attack(m.model, loader, data.spec, eps, ("fgsm", "ifgsm"), settings,
                                                  desc=f"attack {g}") for g, m in models}}

    # ------------------------------------------------------------------ numbers

    def results(self) -> list[dict]:
        """One row per point: group, seed, status and the numbers of its summary.json (None until it finished)."""
        rows = []
        for (group, seed), run in self.runs().items():
            row = {"group": group, "seed": seed, "status": status(run), "run": str(run)}
            if row["status"] == "done":
                s = json.loads((run / "summary.json").read_text())
                row.update({k: s.get(k) for k in ("best_top1", "best_epoch", "last_top1", "epochs",
                                                  "wall_time_s", "precision", "device", "model", "dataset",
                                                  *CALIBRATION)})
                row["teacher_top1"] = (s.get("teacher") or {}).get("top1")
            rows.append(row)
        return rows


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
