"""The findings page (docs/findings.md in a checkout) from the study's numbers: a verdict per claim, its
tables and figures, CSV files.

Everything on the page is computed from the run folders (summary.json, metrics.jsonl) and the cached
analyses of `Study.analyse`; nothing is typed in by hand, so the page can be regenerated at any time and a
half-finished study gives a page that says which claims are not measured yet.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from mixkd.analysis.tables import markdown_table, write_csv, write_text
from mixkd.analysis.verdict import HOLDS, MIN_SEEDS, NOT_MEASURED, Comparison, compare, headline, overall
from mixkd.engine.rundir import RunDir
from mixkd.studies.findings import CALIBRATION, MIXKD, SCENARIOS, TEACHERS, AnalysisPlan, Study

LABELS = {
    "teachers/T": "T", "teachers/Mix-T": "Mix-T",
    "students/no-KD": "S without KD", "students/T-S-T4": "T&S, T=4", "students/MixT-S-T4": "Mix-T&S, T=4",
    "students/MixT-MixS-T4": "Mix-T&Mix-S, T=4", "students/T-MixS-T4": "T&Mix-S, T=4",
    "students/T-S-T1": "T&S, T=1", "students/MixT-S-T1": "Mix-T&S, T=1",
    "students/MixKD-none": "Mix-KD, no mixup", "students/MixKD-PMU10": "Mix-KD, PMU 10%",
    "students/MixKD-PMU50": "Mix-KD, PMU 50%", "students/MixKD-FMU": "Mix-KD, FMU",
}
ATTACKS = {"fgsm": "FGSM", "ifgsm": "I-FGSM (10 steps)"}
ROBUSTNESS_PAIRS = (("students/T-MixS-T4", "students/T-S-T4"), ("students/MixKD-PMU10", "students/MixKD-none"),
                    ("students/MixKD-PMU50", "students/MixKD-none"), ("students/MixKD-FMU", "students/MixKD-none"))


def label(group: str) -> str:
    """A run group as the page names it."""
    return LABELS.get(group, group)


PerSeed = Mapping[int, float]


def mean_std(values: PerSeed, digits: int = 2) -> str:
    """'72.31 ± 0.45' over the seeds (sample std), '72.31' for one seed, '–' for none."""
    vals = [v for v in values.values() if v is not None and math.isfinite(v)]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{np.mean(vals):.{digits}f} ± {np.std(vals, ddof=1):.{digits}f}"


def _ms(values: PerSeed) -> tuple[float, float]:
    vals = [v for v in values.values() if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


@dataclass
class Numbers:
    """The study's numbers, per group and seed."""

    rows: list[dict]
    analyses: dict[str, dict[int, dict]]
    plan: AnalysisPlan = field(default_factory=AnalysisPlan)

    def metric(self, group: str, key: str) -> dict[int, float]:
        """{seed: summary value} of the finished runs of a group (best_top1, last_top1, teacher_top1, ...)."""
        return {r["seed"]: r[key] for r in self.rows
                if r["group"] == group and r["status"] == "done" and r.get(key) is not None}

    def logits(self, group: str, split: str, key: str = "entropy") -> dict[int, float]:
        """{seed: mean entropy (or top1, confidence)} of a group's softmax outputs on a split."""
        return {s: r[group][split][key] for s, r in self.analyses.get("logits", {}).items() if group in r}

    def vscore(self, kind: str, group: str, split: str, key: str = "v_features") -> dict[int, float]:
        """{seed: V-score} of a group's penultimate features on the similar / dissimilar classes."""
        return {s: r[kind][group][split][key] for s, r in self.analyses.get("features", {}).items()
                if group in r.get(kind, {})}

    def robustness(self, group: str, attack: str) -> dict[int, float]:
        """{seed: mean top-1 over the attacked eps > 0} of a group."""
        out = {}
        for s, r in self.analyses.get("attack", {}).items():
            if group in r["top1"]:
                acc = [a for e, a in zip(r["eps"], r["top1"][group][attack], strict=True) if e > 0]
                out[s] = float(np.mean(acc))
        return out

    def attack_curve(self, group: str, attack: str) -> tuple[list[float], list[float], list[float]]:
        """(eps in 1/255 units, mean top-1, std) of a group under one attack."""
        runs = [r for r in self.analyses.get("attack", {}).values() if group in r["top1"]]
        if not runs:
            return [], [], []
        acc = np.array([r["top1"][group][attack] for r in runs])
        std = acc.std(0, ddof=1) if len(runs) > 1 else np.zeros(acc.shape[1])
        return [e * 255 for e in runs[0]["eps"]], acc.mean(0).tolist(), std.tolist()


@dataclass
class Claim:
    """One claim of the paper, its verdict and its section of the page."""

    number: int
    title: str
    paper: str
    verdict: str
    evidence: str
    body: list[str] = field(default_factory=list)


def _verdict_row(name: str, c: Comparison, unit: str = " pt") -> list[str]:
    return [name, headline(c.verdict), c.text(unit)]


def _comparisons_table(rows: Sequence[tuple[str, Comparison]], unit: str = " pt") -> str:
    return markdown_table(["comparison (paired by seed)", "verdict", "difference, mean ± std"],
                          [_verdict_row(n, c, unit) for n, c in rows])


def _accuracy_table(n: Numbers, groups: Sequence[str], teacher: bool = False) -> str:
    header = ["run", "seeds", "best top-1 (%)", "best epoch", "last top-1 (%)"] + (["teacher top-1 (%)"] if teacher
                                                                                   else [])
    body = []
    for g in groups:
        best = n.metric(g, "best_top1")
        row = [label(g), len(best), mean_std(best), mean_std(n.metric(g, "best_epoch"), 1),
               mean_std(n.metric(g, "last_top1"))]
        body.append(row + ([mean_std(n.metric(g, "teacher_top1"))] if teacher else []))
    return markdown_table(header, body)


def _accuracy_claim(n: Numbers, a: str, b: str) -> tuple[Comparison, Comparison]:
    return (compare(n.metric(a, "best_top1"), n.metric(b, "best_top1")),
            compare(n.metric(a, "last_top1"), n.metric(b, "last_top1")))


def _bars(n: Numbers, groups: Sequence[str], out: Path, title: str) -> Path:
    from mixkd.analysis.plots import plot_bars

    series = {}
    for key, name in (("best_top1", "best epoch"), ("last_top1", "last epoch")):
        stats = [_ms(n.metric(g, key)) for g in groups]
        series[name] = ([m for m, _ in stats], [s for _, s in stats])
    finite = [v for m, _ in series.values() for v in m if math.isfinite(v)]
    lo = max(0.0, math.floor(min(finite) - 5)) if finite else 0.0
    hi = min(100.0, math.ceil(max(finite) + 3)) if finite else 100.0
    return plot_bars([label(g) for g in groups], series, out, ylabel="test top-1 (%)", title=title, ylim=(lo, hi))


# --------------------------------------------------------------------------- the claims


def claim1(n: Numbers, img: ImagePaths) -> Claim:
    """Mixup-trained models: softer outputs (entropy), similar classes spread (V-score)."""
    from mixkd.analysis.plots import plot_bars

    t, mt = TEACHERS
    ent = compare(n.logits(mt, "test"), n.logits(t, "test"))
    ent_train = compare(n.logits(mt, "train"), n.logits(t, "train"))
    vsim = compare(n.vscore("similar", t, "test"), n.vscore("similar", mt, "test"))
    vdis = compare(n.vscore("dissimilar", t, "test"), n.vscore("dissimilar", mt, "test"))
    vsim_tsne = compare(n.vscore("similar", t, "test", "v_tsne"), n.vscore("similar", mt, "test", "v_tsne"))
    verdict = overall([ent.verdict, vsim.verdict])
    body = [
        "Teachers of the study (ResNet20 trained without and with full mixup), compared seed by seed. Softmax "
        "entropy is the mean over a split's images (nats, T = 1); the V-score (V-measure of k-means clusters, "
        "k = number of classes, against the labels) is computed on the penultimate features of up to "
        f"{n.plan.feature_per_class} images per class and split (the run's own slices), the primary measure on "
        "the features themselves and, as in the paper's plots, on their 2-D t-SNE embedding.",
        "",
        _comparisons_table([
            ("entropy, test: Mix-T > T", ent), ("entropy, train: Mix-T > T", ent_train),
            ("V-score, similar classes, test: T > Mix-T", vsim),
            ("V-score (t-SNE 2-D), similar classes, test: T > Mix-T", vsim_tsne),
            ("V-score, dissimilar classes, test: T > Mix-T", vdis)], unit=""),
    ]
    groups = list(dict.fromkeys(g for r in n.analyses.get("logits", {}).values() for g in r))
    if groups:
        rows = [[label(g), mean_std(n.logits(g, "train"), 3), mean_std(n.logits(g, "test"), 3),
                 mean_std(n.logits(g, "test", "confidence"), 3), mean_std(n.logits(g, "test", "top1"))]
                for g in groups]
        body += ["", "Softmax outputs of every model of the study (best checkpoints; mean ± std over seeds):", "",
                 markdown_table(["model", "entropy, train (nats)", "entropy, test (nats)", "confidence, test",
                                 "top-1, test (%)"], rows)]
        series = {}
        for split in ("train", "test"):
            stats = [_ms(n.logits(g, split)) for g in groups]
            series[split] = ([m for m, _ in stats], [s for _, s in stats])
        plot_bars([label(g) for g in groups], series, img.path("entropy"), ylabel="mean softmax entropy (nats)",
                  title="Softmax entropy (mean ± std over seeds)")
        body += ["", img.md("entropy", "Softmax entropy of every model")]
    feats = n.analyses.get("features", {})
    if feats:
        seed = min(feats)
        vrows = []
        for kind in ("similar", "dissimilar"):
            if kind not in feats[seed]:
                continue
            classes = ", ".join(feats[seed][kind]["classes"])
            for g in TEACHERS:
                vrows.append([f"{kind} ({classes})", label(g),
                              *(mean_std(n.vscore(kind, g, s, k), 3) for s in ("train", "test")
                                for k in ("v_features", "v_tsne"))])
            _scatter(feats[seed][kind], img.path(f"features-{kind}"), seed, kind)
        body += ["", markdown_table(["classes", "teacher", "V train (features)", "V train (t-SNE)",
                                     "V test (features)", "V test (t-SNE)"], vrows), "",
                 f"t-SNE of the test features of the seed-{seed} teachers:", "",
                 img.md("features-similar", "t-SNE, similar classes"),
                 img.md("features-dissimilar", "t-SNE, dissimilar classes")]
    evidence = (f"entropy (test) Mix-T − T: {ent.text('')}; V-score (similar, test) T − Mix-T: {vsim.text('')}")
    return Claim(1, "Mixup-trained models give softer outputs and spread the features of similar classes",
                 "Observations 1 and 4, Fig. 1 and 4", verdict, evidence, body)


def _scatter(kind_result: dict, out: Path, seed: int, kind: str) -> None:
    from mixkd.analysis.features import FeatureResult
    from mixkd.analysis.plots import plot_feature_scatter

    classes = kind_result["classes"]
    results = []
    for g in TEACHERS:
        r = kind_result.get(g, {}).get("test")
        if r is None:
            continue
        labels = np.asarray(r["labels"])
        # labels are dataset indices; re-index them to the listed classes for the plot
        order = sorted(set(labels.tolist()))
        results.append(FeatureResult(label(g), "test", np.asarray(r["embedding"]),
                                     np.searchsorted(order, labels), r["v_features"], r["v_tsne"]))
    if results:
        plot_feature_scatter(results, classes, list(range(len(classes))), out,
                             f"Teachers' penultimate features, {kind} classes, test split, seed {seed} (t-SNE)")


def claim2(n: Numbers, img: ImagePaths) -> Claim:
    """At T = 4 a Mix-T's student is worse than a T's student, even when Mix-T is more accurate."""
    best, last = _accuracy_claim(n, "students/T-S-T4", "students/MixT-S-T4")
    teacher = compare(n.metric("teachers/Mix-T", "best_top1"), n.metric("teachers/T", "best_top1"))
    groups = ["students/no-KD", *SCENARIOS]
    _bars(n, groups, img.path("scenarios"), "ResNet8 students of ResNet20 teachers, T = 4 (mean ± std)")
    body = [
        "Hinton KD (γ = 0.1, α = 0.9, T = 4) into a ResNet8 from the ResNet20 teachers above, in the paper's four "
        "scenarios (Mix-: trained with full mixup, α = 1), and the ResNet8 trained without KD.", "",
        _comparisons_table([("best epoch: T&S > Mix-T&S", best), ("last epoch: T&S > Mix-T&S", last),
                            ("teachers' best top-1: Mix-T > T (context)", teacher)]), "",
        _accuracy_table(n, [*TEACHERS, *groups], teacher=True), "",
        img.md("scenarios", "Students of the four scenarios"),
    ]
    more = {HOLDS: "the Mix-T teacher was more accurate in every seed",
            "reversed": "the Mix-T teacher was less accurate in every seed",
            NOT_MEASURED: "the teachers are not measured yet"}.get(
        teacher.verdict, "the Mix-T teacher was not consistently more accurate")
    evidence = f"T&S − Mix-T&S: best {best.text()}, last {last.text()}; {more}"
    verdict = overall([best.verdict, last.verdict])
    if verdict == HOLDS and teacher.verdict != HOLDS:
        # the claim's point is "even when Mix-T is the more accurate teacher": a weaker Mix-T explains its
        # weaker student without mixup's softer outputs, so only the first half of the claim is shown here
        verdict = "partly"
        evidence += " (so the student's deficit may come from the teacher's accuracy, not from mixup)"
    return Claim(2, "At T = 4 a student of a mixup-trained teacher is worse than a student of a standard teacher",
                 "Finding 3, Fig. 2", verdict, evidence, body)


def claim3(n: Numbers, img: ImagePaths) -> Claim:
    """T = 1 recovers the Mix-T teacher's student."""
    best, last = _accuracy_claim(n, "students/MixT-S-T1", "students/MixT-S-T4")
    std_best, std_last = _accuracy_claim(n, "students/T-S-T1", "students/T-S-T4")
    gap4 = compare(n.metric("students/T-S-T4", "best_top1"), n.metric("students/MixT-S-T4", "best_top1"))
    gap1 = compare(n.metric("students/T-S-T1", "best_top1"), n.metric("students/MixT-S-T1", "best_top1"))
    groups = ["students/T-S-T4", "students/MixT-S-T4", "students/T-S-T1", "students/MixT-S-T1"]
    _bars(n, groups, img.path("temperature"), "Temperature 4 vs 1 (mean ± std)")
    body = [
        "The same students as in claim 2 without mixup, distilled at T = 1 instead of T = 4.", "",
        _comparisons_table([("best epoch: Mix-T&S at T=1 > at T=4", best),
                            ("last epoch: Mix-T&S at T=1 > at T=4", last),
                            ("context, best epoch: T&S at T=1 > at T=4", std_best),
                            ("context, last epoch: T&S at T=1 > at T=4", std_last),
                            ("context, best epoch: T&S − Mix-T&S at T=4", gap4),
                            ("context, best epoch: T&S − Mix-T&S at T=1", gap1)]), "",
        _accuracy_table(n, groups, teacher=True), "",
        img.md("temperature", "T = 4 vs T = 1"),
    ]
    evidence = f"Mix-T&S at T=1 − at T=4: best {best.text()}, last {last.text()}"
    return Claim(3, "Lowering the temperature to T = 1 recovers the Mix-T teacher's student",
                 "Finding 6, Fig. 5", overall([best.verdict, last.verdict]), evidence, body)


def claim4(n: Numbers, img: ImagePaths) -> Claim:
    """Mix-KD with PMU 10 % / 50 % beats the same objective without mixup; where FMU lands."""
    none = "students/MixKD-none"
    p10 = _accuracy_claim(n, "students/MixKD-PMU10", none)
    p50 = _accuracy_claim(n, "students/MixKD-PMU50", none)
    fmu = _accuracy_claim(n, "students/MixKD-FMU", none)
    fmu10 = compare(n.metric("students/MixKD-FMU", "best_top1"), n.metric("students/MixKD-PMU10", "best_top1"))
    kd = compare(n.metric(none, "best_top1"), n.metric("students/T-S-T4", "best_top1"))
    groups = ["students/no-KD", "students/T-S-T4", *MIXKD]
    _bars(n, groups, img.path("mixkd"), "Mix-KD (std-rescaled logits) with and without mixup (mean ± std)")
    body = [
        "Mix-KD's objective (γ = 0.1 CE and α = 0.9 KL on logits divided by their own std, no temperature) from "
        "the standard teacher T, with exactly round(f·64) rows of each batch mixed (α = 1).", "",
        _comparisons_table([("best epoch: PMU 10% > no mixup", p10[0]), ("last epoch: PMU 10% > no mixup", p10[1]),
                            ("best epoch: PMU 50% > no mixup", p50[0]), ("last epoch: PMU 50% > no mixup", p50[1]),
                            ("where FMU lands, best epoch: FMU > no mixup", fmu[0]),
                            ("where FMU lands, last epoch: FMU > no mixup", fmu[1]),
                            ("where FMU lands, best epoch: FMU > PMU 10%", fmu10),
                            ("context, best epoch: Mix-KD without mixup > Hinton KD T&S", kd)]), "",
        _accuracy_table(n, groups, teacher=True), "",
        img.md("mixkd", "Mix-KD with and without mixup"),
    ]
    verdict = overall([p10[0].verdict, p10[1].verdict, p50[0].verdict, p50[1].verdict])
    evidence = (f"PMU 10% − none: best {p10[0].text()}; PMU 50% − none: best {p50[0].text()}; "
                f"FMU − none: best {fmu[0].text()}")
    return Claim(4, "Mix-KD with partial mixup (10 %, 50 %) beats the same objective without mixup",
                 "Table 1", verdict, evidence, body)


def claim5(n: Numbers, img: ImagePaths) -> Claim:
    """Mixup-trained students are more robust under FGSM and I-FGSM."""
    from mixkd.analysis.plots import plot_mean_curves

    comps, rows = [], []
    for a, b in ROBUSTNESS_PAIRS:
        for attack, name in ATTACKS.items():
            c = compare(n.robustness(a, attack), n.robustness(b, attack))
            comps.append(c)
            rows.append((f"{name}: {label(a)} > {label(b)}", c))
    attack_runs = n.analyses.get("attack", {})
    body = ["White-box attacks on the best checkpoints of the students (the same test images for every model: "
            "the first seeded draw of a fixed number per class), ε in pixel units. The measure compared is the "
            "mean top-1 over the attacked ε > 0.", "", _comparisons_table(rows)]
    if attack_runs:
        first = attack_runs[min(attack_runs)]
        groups = list(first["top1"])
        eps = [f"{e * 255:g}/255" for e in first["eps"]]
        table = []
        for g in groups:
            for attack, name in ATTACKS.items():
                per_seed = {s: r["top1"][g][attack] for s, r in attack_runs.items() if g in r["top1"]}
                table.append([label(g), name, *(mean_std({s: v[i] for s, v in per_seed.items()})
                                                for i in range(len(eps)))])
        body += ["", f"Top-1 (%) on {first['images']} test images, mean ± std over seeds:", "",
                 markdown_table(["student", "attack", *(f"ε={e}" for e in eps)], table)]
        panels = [(name, {label(g): n.attack_curve(g, attack) for g in groups}) for attack, name in ATTACKS.items()]
        plot_mean_curves(panels, img.path("attack"), xlabel="ε (units of 1/255)", ylabel="top-1 under attack (%)",
                         title="Students under white-box attacks (mean ± std over seeds)")
        body += ["", img.md("attack", "Accuracy under FGSM and I-FGSM")]
    evidence = "; ".join(f"{n_}: {c.text()}" for n_, c in rows[:2])
    return Claim(5, "Mixup-trained students are more robust under FGSM / I-FGSM", "Table 3, Fig. 7",
                 overall([c.verdict for c in comps]), evidence, body)


CALIBRATION_PAIRS = ROBUSTNESS_PAIRS  # each mixup-trained student against the same student without mixup


def claim6(n: Numbers, img: ImagePaths) -> Claim:
    """Mixup-trained students are better calibrated: a lower ECE than the same student without mixup."""
    comps, rows = [], []
    for a, b in CALIBRATION_PAIRS:
        for when in ("best", "last"):
            # b − a: positive when the mixup-trained student `a` has the lower calibration error
            c = compare(n.metric(b, f"{when}_ece"), n.metric(a, f"{when}_ece"))
            comps.append(c)
            rows.append((f"{when} epoch: ECE of {label(b)} > of {label(a)}", c))
    teachers = compare(n.metric(TEACHERS[0], "best_ece"), n.metric(TEACHERS[1], "best_ece"))
    groups = [*TEACHERS, "students/no-KD", *SCENARIOS, *MIXKD]
    gap = {g: {s: 100 * r[g]["test"]["confidence"] - r[g]["test"]["top1"]
               for s, r in n.analyses.get("logits", {}).items() if g in r} for g in groups}
    table = [[label(g), len(n.metric(g, "best_ece")), mean_std(n.metric(g, "best_ece")),
              mean_std(n.metric(g, "last_ece")), mean_std(n.metric(g, "best_mce")),
              mean_std(n.metric(g, "best_nll"), 3), mean_std(n.metric(g, "best_brier"), 3), mean_std(gap[g])]
             for g in groups]
    body = [
        "Calibration of each model's test pass (the run's own test slice, evaluated every epoch): expected "
        "calibration error (ECE, 15 equal-width confidence bins, in points of accuracy), the largest bin's gap "
        "(MCE), negative log-likelihood and Brier score, as every run's summary.json records them. Each "
        "mixup-trained student is compared with the same student trained without mixup, seed by seed; the "
        "claim holds when its ECE is the lower in every comparison, at the best and at the last epoch. The ECE reads "
        "each model's own softmax, which is what an exported student computes; the Mix-KD students learn from "
        "std-rescaled logits (f/σ), so their own softmax is not the distribution they were taught, and their "
        "comparisons are among students of that one objective.", "",
        _comparisons_table([*rows, ("context, best epoch: ECE of T > of Mix-T (teachers)", teachers)]), "",
        "Per model (mean ± std over seeds; confidence − accuracy from the analyses' softmax outputs of the best "
        "checkpoints: positive = overconfident):", "",
        markdown_table(["model", "seeds", "ECE best (pt)", "ECE last (pt)", "MCE best (pt)", "NLL best",
                        "Brier best", "confidence − accuracy (pt)"], table),
    ]
    if any(n.metric(g, "best_ece") for g in groups):
        from mixkd.analysis.plots import plot_bars

        series = {}
        for when in ("best", "last"):
            stats = [_ms(n.metric(g, f"{when}_ece")) for g in groups]
            series[f"{when} epoch"] = ([m for m, _ in stats], [sd for _, sd in stats])
        plot_bars([label(g) for g in groups], series, img.path("calibration"), ylabel="ECE (points)",
                  title="Expected calibration error, test (mean ± std over seeds)")
        body += ["", img.md("calibration", "Expected calibration error of every model")]
    evidence = "; ".join(f"{name}: {c.text()}" for name, c in rows[:4:2])
    return Claim(6, "Mixup-trained students are better calibrated (a lower expected calibration error)",
                 "Beyond Dark Knowledge, arXiv 2606.12171, 2026, not the WACV paper; cf. its softer outputs, "
                 "Observation 1", overall([c.verdict for c in comps]), evidence, body)


# --------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class ImagePaths:
    """Where the page's figures go (docs/images/findings-NAME.png) and how the page links them."""

    folder: Path
    doc: Path

    def path(self, name: str) -> Path:
        """The PNG file of figure `name`."""
        return self.folder / f"findings-{name}.png"

    def md(self, name: str, alt: str) -> str:
        """The Markdown image link of figure `name`, relative to the page (empty if it was not drawn)."""
        p = self.path(name)
        return f"![{alt}]({os.path.relpath(p, self.doc.parent)})" if p.is_file() else ""


def _setup(study: Study, rows: list[dict]) -> list[str]:
    """What was run: data, models, schedule, precision, machine, compute, commands."""
    done = [r for r in rows if r["status"] == "done"]
    lines = [f"Runs finished: {len(done)} of {len(rows)} "
             f"(seeds {', '.join(map(str, study.seeds()))}; seed s of a student learns from the teachers of seed s)."]
    missing: dict[str, int] = {}
    for r in rows:
        if r["status"] != "done":
            missing[r["group"]] = missing.get(r["group"], 0) + 1
    if missing:
        lines[0] += " Not finished (their comparisons say *not measured*): " + ", ".join(
            f"{label(g)} ({k} run{'s' if k > 1 else ''})" for g, k in missing.items()) + "."
    if done:
        cfg = yaml.safe_load((Path(done[0]["run"]) / "config.yaml").read_text())
        d, o = cfg["data"], cfg["optim"]
        per = "per class" if d.get("subset_per_class") else "in all"
        root = d.get("root")
        test = (f"{d['test_subset']} test images {per} (a seeded slice, the same for every run of a seed)"
                if d.get("test_subset") else "the full test split")
        lines += [
            f"- **data**: `{d['name']}` from `{Path(root).name if root else 'default root'}`; "
            f"{d.get('train_subset') or 'all'} training images {per} (a seeded slice: each seed draws its own), "
            f"{test}; "
            f"augmentation {'pad-4 crop + flip' if d.get('augment', True) else 'off'}; batch {d['batch_size']}.",
            f"- **schedule**: {o['epochs']} epochs, SGD lr {o['lr']:g}, momentum {o['momentum']:g}, "
            f"weight decay {o['weight_decay']:g}, {o['schedule']} schedule"
            + (f" ×{o['lr_decay']:g} at epochs {', '.join(map(str, o['milestones']))}" if o["schedule"] == "step"
               else "") + ".",
            f"- **models**: teachers {', '.join(sorted({r['model'] for r in done if r['group'] in TEACHERS}))}, "
            f"students {', '.join(sorted({r['model'] for r in done if r['group'] not in TEACHERS}))}.",
            f"- **precision**: {', '.join(sorted({str(r.get('precision')) for r in done}))} "
            f"(autocast for training; the analyses run in fp32), device "
            f"{', '.join(sorted({str(r.get('device')) for r in done}))}, "
            f"{cfg['runtime'].get('threads') or 'default'} thread(s) per run.",
        ]
    sessions = study.sessions()
    machines = {(m["cpu"], m["cores"], m.get("avx512_bf16"), m.get("gpu"), m["torch"])
                for m in (s["machine"] for s in sessions)}
    for cpu, cores, bf16, gpu, torch_v in sorted(machines, key=str):
        lines.append(f"- **machine**: {cpu}, {cores} cores{' with AVX512-BF16' if bf16 else ''}"
                     f"{', GPU ' + gpu if gpu else ''}; torch {torch_v}.")
    train_s = sum(r.get("wall_time_s") or 0 for r in done)
    wall = sum(s["wall_s"] for s in sessions)
    loads = [s["loadavg_start"][0] for s in sessions if s.get("loadavg_start")] + \
        [s["loadavg_end"][0] for s in sessions if s.get("loadavg_end")]
    analysis_s = sum(_analysis_seconds(study.root))
    lines.append(
        f"- **compute**: {train_s / 3600:.2f} h of run time summed over the runs (training and per-epoch "
        f"evaluation), {wall / 3600:.2f} h of wall time in {len(sessions)} session(s) of `mixkd findings`"
        + (f" on a shared machine (1-minute load average {min(loads):.1f}–{max(loads):.1f} at the sessions' "
           "starts and ends)" if loads else "")
        + f", plus {analysis_s / 60:.1f} min of analyses.")
    return lines


def _analysis_seconds(root: Path) -> list[float]:
    import json

    return [json.loads(p.read_text()).get("seconds", 0.0) for p in sorted((root / "analysis").glob("*.json"))]


def _curves(study: Study, groups: Sequence[str]) -> dict[str, tuple[list[float], list[float], list[float]]]:
    out = {}
    for g in groups:
        curves = [[r["top1"] for r in RunDir(d).read_metrics()] for s in study.seeds()
                  if (d := study.finished(g, s)) is not None]
        curves = [c for c in curves if c]
        if not curves:
            continue
        k = min(map(len, curves))
        acc = np.array([c[:k] for c in curves])
        std = acc.std(0, ddof=1) if len(curves) > 1 else np.zeros(k)
        out[label(g)] = (list(range(1, k + 1)), acc.mean(0).tolist(), std.tolist())
    return out


def write_findings(study: Study, analyses: dict[str, dict[int, dict]], doc: Path, images: Path, tables: Path,
                   command: str) -> Path:
    """Write the findings page, its figures (images/findings-*.png) and CSV files (tables/*.csv)."""
    from mixkd.analysis.plots import plot_mean_curves

    rows = study.results()
    n = Numbers(rows, analyses, study.plan)
    img = ImagePaths(images, doc)
    claims = [f(n, img) for f in (claim1, claim2, claim3, claim4, claim5, claim6)]
    curves = [(name, c) for name, groups in (("teachers", TEACHERS), ("students, claims 2-3", (
        "students/no-KD", *SCENARIOS, "students/T-S-T1", "students/MixT-S-T1")),
        ("students, claim 4", ("students/T-S-T4", *MIXKD))) if (c := _curves(study, groups))]
    if curves:
        plot_mean_curves(curves, img.path("curves"), xlabel="epoch", ylabel="test top-1 (%)",
                         title="Test accuracy per epoch (mean ± std over seeds)")
    _write_tables(study, n, tables)
    rel_tables = os.path.relpath(tables, doc.parent)
    parts = [
        "# Findings: the paper's claims measured with mixkd", "",
        "This page is written by `mixkd findings` from the run folders of the study; do not edit it by hand. "
        "Each claim of *Understanding the Role of Mixup in Knowledge Distillation* (Choi et al., WACV 2023), "
        "and one of later work on mixup and calibration (claim 6), is tested at a scale this project's 2-core "
        "CPU machine can afford — far smaller than the paper's 240-epoch CIFAR-100 runs — so a verdict here "
        "says what holds *at this scale*, not whether the paper is right.", "",
        markdown_table(["#", "claim (paper)", "verdict", "evidence: paired difference, mean ± std over seeds"],
                       [[c.number, f"{c.title} ({c.paper})", f"**{headline(c.verdict)}**", c.evidence]
                        for c in claims]), "",
        "## How to read the verdicts", "",
        f"Every comparison pairs runs by seed (same training slice, same teacher seed) and is decided by a rule "
        f"fixed before any run: **holds** when the claimed difference has the claimed sign in every seed (at "
        f"least {MIN_SEEDS} seeds), **reversed** when it has the opposite sign in every seed, **within seed "
        f"noise** when the seeds disagree. A claim made of several comparisons holds when all of them hold and "
        f"*partly holds* when some do; *(in part not measured)* marks a claim some of whose comparisons had no "
        f"runs (the study was cut to its budget), decided on the comparisons that had. Accuracy claims are "
        f"decided on the best epoch and on the last epoch "
        f"separately, and both are shown; the analyses read each run's best checkpoint. With three seeds an "
        f"absent effect passes the rule one time in eight, so read the size of the difference next to it.", "",
        "## What was run", "",
        *_setup(study, rows), "",
        f"Per-run numbers: [`{rel_tables}/runs.csv`]({rel_tables}/runs.csv); the analyses: "
        f"[`logits.csv`]({rel_tables}/logits.csv), [`features.csv`]({rel_tables}/features.csv), "
        f"[`attack.csv`]({rel_tables}/attack.csv).", "",
        img.md("curves", "Test accuracy per epoch"), "",
    ]
    for c in claims:
        parts += [f"## {c.number}. {c.title}", "", f"Paper: {c.paper}. Verdict here: **{headline(c.verdict)}**.",
                  "", *c.body, ""]
    parts += ["## Regenerate", "",
              "The command below runs the study (resuming what is missing: finished runs are skipped, stopped "
              "ones resumed), its analyses (cached next to the runs) and rewrites this page (its --page; without "
              "one the page goes into the study's folder); in a checkout, `make findings` does so for "
              "docs/findings.md. Its --data and --out options say where the CIFAR-10 JPEG zip and the run folders are. "
              "The specs are `configs/findings/teachers.yaml` and `configs/findings/students.yaml` (recipe "
              "`configs/findings/base.yaml`); `mixkd findings --dry-run` lists every run and its command, and "
              "`--collect` rewrites the page from the finished runs without training. This page was written by:",
              "", "```bash", command, "```", ""]
    text = "\n".join(parts)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return write_text(doc, text)


def _write_tables(study: Study, n: Numbers, tables: Path) -> None:
    root = study.root
    keep = ("group", "seed", "status", "model", "best_top1", "best_epoch", "last_top1", "teacher_top1", *CALIBRATION,
            "epochs", "wall_time_s", "precision", "device")
    write_csv(tables / "runs.csv", [{**{k: r.get(k) for k in keep}, "run": os.path.relpath(r["run"], root)}
                                    for r in n.rows])
    write_csv(tables / "logits.csv", [
        {"group": g, "seed": s, "split": split, **vals}
        for s, res in sorted(n.analyses.get("logits", {}).items()) for g, per in res.items()
        for split, vals in per.items()] or [{"group": None}])
    write_csv(tables / "features.csv", [
        {"classes": kind, "group": g, "seed": s, "split": split, "v_features": v["v_features"], "v_tsne": v["v_tsne"]}
        for s, res in sorted(n.analyses.get("features", {}).items()) for kind, per in res.items()
        for g, splits in per.items() if g not in ("preset", "classes") for split, v in splits.items()]
        or [{"classes": None}])
    write_csv(tables / "attack.csv", [
        {"group": g, "seed": s, "attack": a, **{f"eps={e * 255:g}/255": acc for e, acc in zip(res["eps"], accs,
                                                                                               strict=True)}}
        for s, res in sorted(n.analyses.get("attack", {}).items()) for g, per in res["top1"].items()
        for a, accs in per.items()] or [{"group": None}])
