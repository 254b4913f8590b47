"""The findings study: its committed specs, the page it writes from known numbers, and a tiny real study."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from mixkd.analysis.presets import preset_for
from mixkd.config import save_config
from mixkd.errors import ConfigError
from mixkd.studies.findings import FINDINGS_DIR, STUDENTS, TEACHERS, Study
from mixkd.studies.findings_doc import ImagePaths, Numbers, claim2, write_findings
from tests.conftest import REPO, SHARED, requires_fmnist, run_mixkd

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def test_presets_follow_the_dataset():
    assert preset_for("similar", CIFAR10) == "cifar10-similar"
    assert preset_for("dissimilar", FASHION) == "fashion-mnist-dissimilar"
    assert preset_for("similar", ("a", "b")) is None


def test_the_committed_specs_pair_each_student_with_its_seeds_teachers(tmp_path):
    study = Study(tmp_path / "runs", "cifar.zip")
    runs = study.runs()
    assert len(runs) == 2 * 3 + 11 * 3
    assert {g for g, _ in runs} == {*TEACHERS, *STUDENTS} and study.seeds() == [0, 1, 2]
    assert runs[("students/MixT-S-T4", 2)] == tmp_path / "runs" / "students" / "MixT-S-T4" / "seed2"
    points = {p.name: p for p in study.specs["students"].points()}
    cfg = points["MixT-S-T4/seed2"].config()
    # absolute paths: the saved configs (and so skipping finished runs) do not depend on the working directory
    assert cfg.teacher.checkpoint == str(tmp_path / "runs" / "teachers" / "Mix-T" / "seed2" / "best.pt")
    assert cfg.data.root == str(Path.cwd() / "cifar.zip") and cfg.seed == 2
    assert (cfg.distill.method, cfg.distill.temperature, cfg.mixing.name) == ("kd", 4.0, "none")
    pmu = points["MixKD-PMU10/seed0"].config()
    assert (pmu.distill.method, pmu.mixing.name, pmu.mixing.fraction, pmu.model.arch) == ("mixkd", "mixup", 0.1,
                                                                                          "resnet8")
    assert pmu.teacher.checkpoint.endswith("teachers/T/seed0/best.pt")
    mix_t = {p.name: p for p in study.specs["teachers"].points()}["Mix-T/seed1"].config()
    assert (mix_t.model.arch, mix_t.mixing.name, mix_t.mixing.fraction, mix_t.optim.epochs) == ("resnet20", "mixup",
                                                                                               1.0, 20)
    # a grid setting narrows the specs that have that axis; one that no spec has is an error
    small = Study(tmp_path / "runs", "cifar.zip", settings=("grid.seed=[0]", "grid.student=[T-S-T4]"))
    assert sorted(small.runs()) == [("students/T-S-T4", 0), ("teachers/Mix-T", 0), ("teachers/T", 0)]
    with pytest.raises(ConfigError, match="no findings spec has that axis"):
        _ = Study(tmp_path, "x.zip", settings=("grid.nope=[1]",)).specs


def _fake_run(run: Path, cfg, summary: dict) -> None:
    """A finished run folder written by hand: config, one metrics line per epoch, summary, a best.pt stand-in."""
    run.mkdir(parents=True)
    save_config(cfg, run / "config.yaml")
    rows = [{"epoch": e, "top1": summary["best_top1"] * e / 3} for e in (1, 2, 3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "summary.json").write_text(json.dumps({**summary, "model": cfg.model.arch, "epochs": 3,
                                                  "precision": "bf16", "device": "cpu", "wall_time_s": 60.0}))
    (run / "best.pt").write_bytes(b"stand-in: the page reads the analyses given to it, not this file")


# best top-1 per group and seed, chosen so that each claim's verdict is known
ACC = {
    "teachers/T": [80.0, 81.0, 82.0], "teachers/Mix-T": [81.0, 82.0, 83.0],
    "students/T-S-T4": [70.0, 70.5, 71.0], "students/MixT-S-T4": [68.0, 68.0, 68.0],  # claim 2 holds
    "students/MixT-S-T1": [68.5, 67.0, 69.0],  # claim 3: the seeds disagree
    "students/MixKD-none": [70.0, 70.0, 70.0], "students/MixKD-PMU10": [71.0, 71.0, 71.0],
    "students/MixKD-PMU50": [69.0, 69.0, 69.0],  # claim 4: PMU 10 % holds, PMU 50 % reversed -> partly
}


# ECE per group: PMU 10 % better calibrated than no mixup in every seed, PMU 50 % worse; T&Mix-S and FMU
# are not run (claim 6: partly, in part not measured)
ECE = {"students/MixKD-none": 5.0, "students/MixKD-PMU10": 3.0, "students/MixKD-PMU50": 6.0}


def _fake_calibration(group: str, seed: int) -> dict:
    ece = ECE.get(group, 4.0) + 0.1 * seed
    return {"best_ece": ece, "last_ece": ece + 0.5, "best_mce": 2 * ece, "best_nll": 1.0, "best_brier": 0.4}


def _fake_analyses() -> dict:
    eps = [0.0, 1 / 255, 2 / 255]
    out: dict = {"logits": {}, "features": {}, "attack": {}}
    for s in range(3):
        out["logits"][s] = {g: {split: {"top1": 70.0, "entropy": 0.2 + 0.1 * (g == "teachers/Mix-T") + 0.01 * s,
                                        "confidence": 0.9} for split in ("train", "test")} for g in TEACHERS}
        feats = {}
        for kind, classes in (("similar", ["cat", "deer", "dog", "horse"]),
                              ("dissimilar", ["automobile", "bird", "frog", "ship"])):
            feats[kind] = {"preset": f"cifar10-{kind}", "classes": classes}
            for g, v in zip(TEACHERS, (0.5, 0.4), strict=True):  # Mix-T's features cluster worse
                feats[kind][g] = {split: {"v_features": v, "v_tsne": v, "labels": [3, 4, 5, 7] * 2,
                                          "embedding": [[float(i), float(i % 3)] for i in range(8)]}
                                  for split in ("train", "test")}
        out["features"][s] = feats
        # every mixup-trained student is less robust: claim 5 reversed
        mixup = ("students/T-MixS-T4", "students/MixKD-PMU10", "students/MixKD-PMU50", "students/MixKD-FMU")
        top1 = {g: {"fgsm": [70.0, 50.0 - 5 * (g in mixup), 30.0], "ifgsm": [70.0, 45.0, 20.0 - 5 * (g in mixup)]}
                for g in ("students/T-S-T4", "students/MixKD-none", *mixup)}
        out["attack"][s] = {"eps": eps, "images": 500, "top1": top1}
    return out


def test_the_page_states_each_claims_verdict_from_the_numbers(tmp_path):
    study = Study(tmp_path / "runs", "cifar.zip", settings=("grid.student=[" + ",".join(
        g.split("/")[1] for g in ACC if g.startswith("students/")) + "]",))
    configs = {(name, int(p.coords["seed"])): p.config() for name, spec in study.specs.items()
               for p in spec.points()}
    for (group, seed), run in study.runs().items():
        best = ACC[group][seed]
        _fake_run(run, configs[(group.split("/")[0], seed)],
                  {"best_top1": best, "best_epoch": 3, "last_top1": best - 0.5, **_fake_calibration(group, seed),
                   **({"teacher": {"top1": ACC["teachers/T"][seed]}} if group.startswith("students/") else {})})
    doc = tmp_path / "docs" / "findings.md"
    write_findings(study, _fake_analyses(), doc, tmp_path / "docs" / "images", tmp_path / "docs" / "findings",
                   "mixkd findings --collect")
    text = doc.read_text()
    summary = {int(line.split("|")[1]): line.split("|")[3].strip() for line in text.splitlines()
               if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    assert summary == {1: "**holds**", 2: "**holds**", 3: "**does not hold (within seed noise)**",
                       4: "**partly holds**", 5: "**does not hold (reversed)**",
                       6: "**partly holds (in part not measured)**"}
    assert ("| best epoch: ECE of Mix-KD, no mixup > of Mix-KD, PMU 10% | holds | +2.00 ± 0.00 pt (3/3 seeds > 0) |"
            in text)
    assert "| Mix-KD, PMU 50% | 3 | 6.10 ± 0.10 | 6.60 ± 0.10 | 12.20 ± 0.20 | 1.000 ± 0.000 |" in text
    assert "| best epoch: T&S > Mix-T&S | holds | +2.50 ± 0.50 pt (3/3 seeds > 0) |" in text
    assert "| last epoch: T&S > Mix-T&S | holds | +2.50 ± 0.50 pt (3/3 seeds > 0) |" in text
    assert "| teachers' best top-1: Mix-T > T (context) | holds | +1.00 ± 0.00 pt (3/3 seeds > 0) |" in text
    assert "the Mix-T teacher was more accurate in every seed" in text
    assert "| Mix-T&S, T=4 | 3 | 68.00 ± 0.00 | 3.0 ± 0.0 | 67.50 ± 0.00 | 81.00 ± 1.00 |" in text
    assert "| Mix-T&Mix-S, T=4 | 0 | – | – | – | – |" in text  # not run: shown as missing, not as zero
    assert "Runs finished: 24 of 24 (" in text and "Not finished" not in text
    assert "- **schedule**: 20 epochs, SGD lr 0.05" in text and "×0.1 at epochs 12, 15, 17" in text
    assert "250 training images per class" in text and "100 test images per class" in text
    assert "```bash\nmixkd findings --collect\n```" in text
    for name in ("curves", "entropy", "features-similar", "features-dissimilar", "scenarios", "temperature",
                 "mixkd", "attack", "calibration"):
        png = tmp_path / "docs" / "images" / f"findings-{name}.png"
        assert png.stat().st_size > 5000, name
        assert f"(images/findings-{name}.png)" in text
    with (tmp_path / "docs" / "findings" / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24 and {r["status"] for r in rows} == {"done"}
    assert rows[0]["run"] == "teachers/T/seed0"  # relative to the study's folder, not this machine's path
    with (tmp_path / "docs" / "findings" / "attack.csv").open() as f:
        attack = list(csv.DictReader(f))
    assert len(attack) == 3 * 6 * 2 and set(attack[0]) == {"group", "seed", "attack", "eps=0/255", "eps=1/255",
                                                           "eps=2/255"}

    # a run that did not finish is named on the page, and its comparisons are not measured
    (study.runs()[("students/MixKD-PMU50", 1)] / "summary.json").unlink()
    write_findings(study, _fake_analyses(), doc, tmp_path / "docs" / "images", tmp_path / "docs" / "findings",
                   "mixkd findings --collect")
    text = doc.read_text()
    assert "Runs finished: 23 of 24 (" in text and "Not finished (their comparisons say *not measured*): " \
        "Mix-KD, PMU 50% (1 run)." in text
    assert "| best epoch: PMU 50% > no mixup | not measured | -1.00 ± 0.00 pt (0/2 seeds > 0) |" in text


def test_claim_2_only_partly_holds_when_the_mixup_teacher_is_the_weaker_one(tmp_path):
    def rows(teacher_t: float, teacher_mix: float) -> list[dict]:
        acc = {"teachers/T": teacher_t, "teachers/Mix-T": teacher_mix, "students/T-S-T4": 70.0,
               "students/MixT-S-T4": 68.0}
        return [{"group": g, "seed": s, "status": "done", "best_top1": a + s, "last_top1": a + s}
                for g, a in acc.items() for s in range(3)]

    img = ImagePaths(tmp_path, tmp_path / "findings.md")
    stronger = claim2(Numbers(rows(80.0, 81.0), {}), img)
    weaker = claim2(Numbers(rows(80.0, 75.0), {}), img)
    assert stronger.verdict == "holds" and "more accurate in every seed" in stronger.evidence
    assert weaker.verdict == "partly" and "less accurate in every seed" in weaker.evidence
    assert "may come from the teacher's accuracy" in weaker.evidence


def test_findings_dry_run_lists_every_run(tmp_path):
    zip_path = tmp_path / "cifar.zip"
    zip_path.write_bytes(b"")  # --dry-run checks that the data is there, it does not read it
    proc = run_mixkd("findings", "--dry-run", "--data", str(zip_path), "--out", str(tmp_path / "runs"))
    lines = proc.stdout.splitlines()
    # the page's default place is the study's folder, not docs/ of wherever the command runs
    assert lines[-1] == f"39 runs -> {tmp_path / 'runs'}; then the analyses and {tmp_path / 'runs' / 'findings.md'}"
    assert sum(line.startswith("new ") for line in lines) == 39
    assert any("mixkd distill " in line and "teachers/Mix-T/seed2/best.pt" in line for line in lines)
    bad = run_mixkd("findings", "--dry-run", "--data", str(tmp_path / "nope.zip"), check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("mixkd: error: --data ") and "no such file" in bad.stderr


def test_the_page_goes_into_the_studys_folder_unless_page_names_another(tmp_path):
    """Run outside a checkout (as an installed mixkd is), the page and its files land beside the runs, not in
    the current folder's docs/; --page puts them anywhere, images and CSV files beside it."""
    settings = ("grid.seed=[0]", "grid.student=[T-S-T4]")
    study = Study(tmp_path / "study", "cifar.zip", settings=settings)
    configs = {name: next(iter(spec.points())).config() for name, spec in study.specs.items()}
    for (group, seed), run in study.runs().items():
        _fake_run(run, configs[group.split("/")[0]], {"best_top1": ACC[group][seed], "best_epoch": 3,
                                                       "last_top1": ACC[group][seed]})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ["findings", "--collect", "--analyses", "--out", str(study.root), *settings]
    proc = run_mixkd(*args, cwd=elsewhere)
    page = study.root / "findings.md"
    assert proc.stdout.strip().splitlines()[-1] == \
        f"wrote {page}, {study.root / 'images'}/findings-*.png and {study.root / 'findings'}/*.csv"
    assert "Runs finished: 3 of 3" in page.read_text()
    assert (study.root / "images" / "findings-curves.png").stat().st_size > 5000
    assert "(images/findings-curves.png)" in page.read_text()
    assert (study.root / "findings" / "runs.csv").is_file()
    assert list(elsewhere.iterdir()) == []  # nothing in the folder it ran in

    proc = run_mixkd(*args, "--page", "notes/page.md", cwd=elsewhere)  # relative: to the current folder
    assert (elsewhere / "notes" / "page.md").is_file() and (elsewhere / "notes" / "page" / "runs.csv").is_file()
    assert (elsewhere / "notes" / "images" / "findings-curves.png").is_file()
    bad = run_mixkd(*args, "--page", str(tmp_path / "page.txt"), check=False, cwd=elsewhere)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"mixkd: error: --page {tmp_path / 'page.txt'}: the page is a Markdown file; name one ending in .md, "
        f"e.g. {study.root / 'findings.md'}"]


def test_make_findings_rewrites_the_checkouts_page():
    recipe = [ln.strip() for ln in (REPO / "Makefile").read_text().split("\nfindings:", 1)[1].splitlines()[1:2]]
    assert recipe == ["$(VENV)/bin/mixkd findings --jobs 2 --page docs/findings.md"]


def test_the_specs_ship_with_the_package():
    assert (FINDINGS_DIR / "teachers.yaml").is_file() and FINDINGS_DIR.resolve() == (REPO / "configs" /
                                                                                    "findings").resolve()
    base = yaml.safe_load((FINDINGS_DIR / "base.yaml").read_text())
    assert base["optim"]["milestones"] == [12, 15, 17] and base["data"]["train_subset"] == 250
    assert SHARED.name == "shared"  # the default --data is ../shared/data/cifar10-jpg.zip of a checkout


@pytest.mark.slow
@requires_fmnist
def test_a_tiny_real_study_end_to_end(tmp_path):
    """Real runs (Fashion-MNIST, 1 epoch), the real analyses, the page; a second call reuses everything."""
    args = ["findings", "--out", str(tmp_path / "runs"), "--doc", str(tmp_path / "findings.md"), "--images",
            str(tmp_path / "img"), "--tables", str(tmp_path / "csv"), "--jobs", "2",
            "grid.student=[T-S-T4,MixT-S-T4,T-MixS-T4]", "data.name=fashion-mnist", "data.root=null",
            "data.train_subset=10", "data.test_subset=5", "optim.epochs=1", "optim.milestones=[]",
            "runtime.precision=fp32", "runtime.device=cpu"]
    first = run_mixkd(*args, timeout=900)
    assert "findings: attack analysis of seed 2 (2 runs)" in first.stdout
    text = (tmp_path / "findings.md").read_text()
    assert "Runs finished: 15 of 15" in text
    verdicts = {int(line.split("|")[1]): line.split("|")[3].strip() for line in text.splitlines()
                if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    assert verdicts[4] == "**not measured**"  # no Mix-KD run in this study
    assert verdicts[2] in {"**holds**", "**does not hold (reversed)**", "**does not hold (within seed noise)**"}
    assert verdicts[1] != "**not measured**"
    assert verdicts[5].endswith("(in part not measured)**")  # one pair of four: T&Mix-S vs T&S
    again = run_mixkd(*args, "--collect", timeout=300)  # no training, no analysis: all cached
    assert "analysis" not in again.stdout and "sweep" not in again.stdout
    assert (tmp_path / "findings.md").read_text() == text
