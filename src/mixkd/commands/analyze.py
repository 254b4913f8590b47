"""`mixkd analyze features|logits|augmentation MODEL...`: t-SNE + V-scores of penultimate features, softmax
statistics, and the teacher's statistic that predicts a good mixing for KD."""

from __future__ import annotations

import argparse
from pathlib import Path

from mixkd.commands import HelpFormatter, add_overrides

_MODEL_HELP = ("run directories (their best.pt and config.yaml), folders holding run directories, or checkpoint "
               "files (mixkd, community {'model': sd} or bare state_dict; then --arch/--data)")


def add_model_args(p: argparse.ArgumentParser, default_out: str) -> None:
    """The MODEL... arguments shared by `analyze` and `attack`."""
    p.add_argument("models", nargs="+", metavar="MODEL", help=_MODEL_HELP)
    add_overrides(p, "data.* overrides of the dataset the models are evaluated on (e.g. data.test_subset=1000)")
    p.add_argument("--arch", help="architecture of checkpoint files that do not record it (e.g. resnet56)")
    p.add_argument("--data", metavar="NAME", help="dataset of checkpoint files that do not record it (data.name)")
    p.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, cuda:N (default auto)")
    p.add_argument("--batch-size", type=int, metavar="N", help="evaluation batch size (default data.eval_batch_size)")
    p.add_argument("--out", type=Path, default=Path(default_out), help=f"output folder (default {default_out})")
    p.add_argument("--quiet", action="store_true", help="no progress reports on stderr")


def load_from_args(args: argparse.Namespace):
    """(models, eval data) from the parsed MODEL arguments, once --out is known to be writable."""
    from mixkd.analysis.loading import load_models
    from mixkd.engine.rundir import check_out_dir

    check_out_dir(args.out)

    if args.batch_size is not None and args.batch_size < 1:
        from mixkd.errors import ConfigError

        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    return load_models(args.models, arch=args.arch, data=args.data, overrides=args.overrides, device=args.device,
                       batch_size=args.batch_size)


_ANALYZE_EXAMPLES = """examples (after `mixkd quickstart`, whose runs are in runs/quickstart):
  mixkd analyze features runs/quickstart/teacher runs/quickstart/student-mixkd --classes 0 2 4 6
  mixkd analyze logits runs/quickstart --class Coat
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `analyze features`, `analyze logits`, `analyze augmentation` and `analyze calibration`."""
    from mixkd.analysis.presets import CLASS_PRESETS

    p = sub.add_parser("analyze", help="analyse trained models: feature clustering (t-SNE, V-score), softmax outputs",
                       description="Analyses of trained models; see `mixkd analyze features --help` and "
                                   "`mixkd analyze logits --help`.",
                       epilog=_ANALYZE_EXAMPLES, formatter_class=HelpFormatter)
    kinds = p.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    f = kinds.add_parser(
        "features", help="t-SNE of penultimate features of chosen classes + V-measure of k-means clusters",
        formatter_class=HelpFormatter,
        epilog="examples (after `mixkd quickstart`):\n"
               "  mixkd analyze features runs/quickstart/teacher runs/quickstart/student-mixkd --classes 0 2 4 6\n"
               "  mixkd analyze features runs/quickstart --classes Trouser Bag Sneaker --splits test "
               "data.test_subset=300\n"
               "  mixkd analyze features resnet56.pth --arch resnet56 --data cifar100 --classes cifar100-similar\n"
               "           # a community checkpoint on CIFAR-100 (data.root=DIR says where CIFAR-100 is)")
    add_model_args(f, "runs/analysis/features")
    f.add_argument("--classes", nargs="+", required=True, metavar="CLASS",
                   help="class names or indices, or one preset: " + ", ".join(CLASS_PRESETS))
    f.add_argument("--per-class", type=int, default=500, metavar="N",
                   help="at most N seeded examples of each class per split (default 500, 0 = all)")
    f.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"],
                   help="splits analysed (default train test)")
    f.add_argument("--seed", type=int, default=0,
                   help="seed of the --per-class sampling, the t-SNE and the k-means (default 0)")
    f.set_defaults(func=_features)
    g = kinds.add_parser(
        "logits", help="per-class average softmax, top-1 and mean entropy on train and test (Fig. 4)",
        formatter_class=HelpFormatter,
        epilog="examples (after `mixkd quickstart`):\n"
               "  mixkd analyze logits runs/quickstart/teacher runs/quickstart/student-kd --class Coat\n"
               "  mixkd analyze logits runs/quickstart --temperature 4 --class 0 --splits test")
    add_model_args(g, "runs/analysis/logits")
    g.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (default 1)")
    g.add_argument("--class", dest="cls", metavar="NAME", help="class whose average distribution is drawn "
                   "(name or index; default the first class)")
    g.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"],
                   help="splits analysed (default train test)")
    g.set_defaults(func=_logits)
    a = kinds.add_parser(
        "augmentation", help="the teacher's T. stddev under each mixing (Wang et al. 2022; lower predicts better KD)",
        formatter_class=HelpFormatter,
        description="Each MODEL as a teacher: the standard deviation across groups of --group mixed training "
                    "samples of its mean softmax (averaged over classes; Wang et al., NeurIPS 2022) and its mean "
                    "entropy, for every mixing of --mixings at --fraction; a bar chart and a table.",
        epilog="examples (after `mixkd quickstart`):\n"
               "  mixkd analyze augmentation runs/quickstart/teacher\n"
               "  mixkd analyze augmentation runs/quickstart/teacher --mixings none mixup cutmix --fraction 0.5 "
               "data.train_subset=2000")
    add_model_args(a, "runs/analysis/augmentation")
    a.add_argument("--mixings", nargs="+", metavar="NAME", default=list(AUGMENTATION_MIXINGS),
                   help="mixings compared (mixing.name; default " + " ".join(AUGMENTATION_MIXINGS) + ")")
    a.add_argument("--fraction", type=float, default=1.0, help="mixing.fraction of each mixing (default 1.0)")
    a.add_argument("--alpha", type=float, default=1.0, help="mixing.alpha of each mixing (default 1.0)")
    a.add_argument("--group", type=int, metavar="N",
                   help="samples per group (default 640, or a tenth of the samples when there are fewer than 6400)")
    a.add_argument("--passes", type=int, default=1, metavar="K",
                   help="passes over the training rows, each with a new draw (default 1)")
    a.add_argument("--seed", type=int, default=0, help="seed of the mixings' draws (default 0)")
    a.set_defaults(func=_augmentation)
    c = kinds.add_parser(
        "calibration", help="reliability diagrams and ECE, MCE, NLL, Brier of each model (one PNG, a table)",
        formatter_class=HelpFormatter,
        description="Calibration of each MODEL: ECE and MCE over --bins equal-width confidence bins (percent), "
                    "NLL (nats) and the multi-class Brier score, with the reliability diagrams side by side.",
        epilog="examples (after `mixkd quickstart`):\n"
               "  mixkd analyze calibration runs/quickstart/student-kd runs/quickstart/student-mixkd\n"
               "  mixkd analyze calibration runs/quickstart --bins 10 --splits train test")
    add_model_args(c, "runs/analysis/calibration")
    c.add_argument("--bins", type=int, default=15, help="equal-width confidence bins (default 15)")
    c.add_argument("--splits", nargs="+", default=["test"], choices=["train", "test"],
                   help="splits analysed (default test)")
    c.set_defaults(func=_calibration)


def _features(args: argparse.Namespace) -> int:
    from mixkd.analysis.features import analyze_features, resolve_classes
    from mixkd.analysis.plots import plot_feature_scatter
    from mixkd.analysis.tables import markdown_table, write_json
    from mixkd.errors import ConfigError

    if args.per_class < 0:
        raise ConfigError(f"--per-class must be >= 0 (0 = all), got {args.per_class}")
    models, data = load_from_args(args)
    names = data.spec.classes
    classes = resolve_classes(args.classes, names)
    results = analyze_features(models, data, classes, args.splits, args.per_class or None, args.seed)
    out = args.out
    for split in args.splits:
        plot_feature_scatter([r for r in results if r.split == split], names, classes,
                             out / f"features-{split}.png", f"Penultimate features, {split} split (t-SNE)")
    write_json(out / "features.json", {
        "dataset": data.spec.name, "classes": [names[c] for c in classes], "per_class_cap": args.per_class or None,
        "seed": args.seed, "models": {m.label: str(m.source) for m in models},
        "results": [r.to_json(names) for r in results]})
    print(markdown_table(["model", "split", "n", "V-score (features)", "V-score (t-SNE 2-D)"],
                         [(r.model, r.split, len(r.labels), r.v_raw, r.v_tsne) for r in results]), end="")
    print(f"wrote {out}/features-*.png and features.json")
    return 0


def _logits(args: argparse.Namespace) -> int:
    from mixkd.analysis.features import class_index
    from mixkd.analysis.logits import analyze_logits
    from mixkd.analysis.plots import plot_class_distributions
    from mixkd.analysis.tables import markdown_table, write_json
    from mixkd.errors import ConfigError

    if args.temperature <= 0:
        raise ConfigError(f"--temperature must be > 0, got {args.temperature}")
    models, data = load_from_args(args)
    names = data.spec.classes
    cls = 0 if args.cls is None else class_index(args.cls, names, "--class")
    stats = analyze_logits(models, data, args.temperature, args.splits)
    out = args.out
    png = plot_class_distributions(stats, cls, names, out / f"logits-{_slug(names[cls])}.png", args.temperature)
    write_json(out / "logits.json", {
        "dataset": data.spec.name, "temperature": args.temperature, "class": names[cls],
        "models": {m.label: str(m.source) for m in models},
        "results": [s.to_json(names, [cls]) for s in stats]})
    print(markdown_table(["model", "split", "top-1 (%)", "mean entropy (nats)", "mean confidence"],
                         [(s.model, s.split, s.top1, s.entropy, s.confidence) for s in stats]), end="")
    print(f"wrote {png} and {out}/logits.json")
    return 0


AUGMENTATION_MIXINGS = ("none", "mixup", "cutmix", "mixup-cutmix", "cutmix-pick", "confident-mixup")


def _augmentation(args: argparse.Namespace) -> int:
    from mixkd.analysis.augmentation import analyze_augmentation
    from mixkd.analysis.plots import plot_bars
    from mixkd.analysis.tables import markdown_table, write_json
    from mixkd.config import load_config
    from mixkd.errors import ConfigError

    for flag, value in (("--group", args.group), ("--passes", args.passes)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    mixings = [load_config(None, [f"mixing.name={name}", f"mixing.fraction={args.fraction}",
                                  f"mixing.alpha={args.alpha}"]).mixing for name in args.mixings]
    from mixkd.mixing import MIXERS

    for cfg in mixings:  # unknown names fail here, with the choices, before any model is read
        MIXERS.get(cfg.name)
    models, data = load_from_args(args)
    stats = analyze_augmentation(models, data, mixings, group=args.group, passes=args.passes, seed=args.seed)
    out = args.out
    names = list(dict.fromkeys(s.mixing for s in stats))
    series = {m.label: ([1000 * s.stddev for s in stats if s.model == m.label], [0.0] * len(names)) for m in models}
    png = plot_bars(names, series, out / "augmentation.png", ylabel="T. stddev (x 1e-3; lower is better)",
                    title="Teacher's mean-probability std under each mixing (Wang et al. 2022)")
    write_json(out / "augmentation.json", {
        "dataset": data.spec.name, "group": args.group, "passes": args.passes, "seed": args.seed,
        "models": {m.label: str(m.source) for m in models}, "results": [s.to_json() for s in stats]})
    print(markdown_table(["model", "mixing", "samples", "T. stddev (x 1e-3)", "mean entropy (nats)"],
                         [(s.model, s.mixing, s.samples, 1000 * s.stddev, s.entropy) for s in stats]), end="")
    print(f"wrote {png} and {out}/augmentation.json")
    return 0


def _calibration(args: argparse.Namespace) -> int:
    from mixkd.analysis.calibration import analyze_calibration
    from mixkd.analysis.plots import plot_reliability
    from mixkd.analysis.tables import markdown_table, write_json
    from mixkd.errors import ConfigError

    if args.bins < 1:
        raise ConfigError(f"--bins must be >= 1, got {args.bins}")
    models, data = load_from_args(args)
    results = analyze_calibration(models, data, args.splits, args.bins)
    out = args.out
    png = plot_reliability(results, out / "reliability.png", f"Reliability on {data.spec.name} ({args.bins} bins)")
    write_json(out / "calibration.json", {
        "dataset": data.spec.name, "bins": args.bins, "models": {m.label: str(m.source) for m in models},
        "results": [r.to_json() for r in results]})
    print(markdown_table(["model", "split", "n", "top-1 (%)", "mean confidence (%)", "ECE (%)", "MCE (%)", "NLL",
                          "Brier"],
                         [(r.model, r.split, r.n, r.top1, r.confidence, r.figures["ece"], r.figures["mce"],
                           f"{r.figures['nll']:.3f}", f"{r.figures['brier']:.3f}") for r in results]), end="")
    print(f"wrote {png} and {out}/calibration.json")
    return 0


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)
