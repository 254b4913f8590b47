"""`mixkd analyze features|logits MODEL...`: t-SNE + V-scores of penultimate features, softmax statistics."""

from __future__ import annotations

import argparse
from pathlib import Path

_MODEL_HELP = ("run directories (their best.pt and config.yaml) or checkpoint files (mixkd, community "
               "{'model': sd} or bare state_dict; then --arch/--data), plus data.* overrides")


def add_model_args(p: argparse.ArgumentParser, default_out: str) -> None:
    """The MODEL... arguments shared by `analyze` and `attack`."""
    p.add_argument("models", nargs="+", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("--arch", help="architecture of checkpoint files that do not record it (e.g. resnet56)")
    p.add_argument("--data", metavar="NAME", help="dataset of checkpoint files that do not record it (data.name)")
    p.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, cuda:N (default auto)")
    p.add_argument("--batch-size", type=int, metavar="N", help="evaluation batch size (default data.eval_batch_size)")
    p.add_argument("--out", type=Path, default=Path(default_out), help=f"output folder (default {default_out})")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling, t-SNE and k-means (default 0)")


def load_from_args(args: argparse.Namespace):
    """(models, eval data) from the parsed MODEL arguments."""
    from mixkd.analysis.loading import load_models, split_models_and_overrides

    if args.batch_size is not None and args.batch_size < 1:
        from mixkd.errors import ConfigError

        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    paths, overrides = split_models_and_overrides(args.models)
    return load_models(paths, arch=args.arch, data=args.data, overrides=overrides, device=args.device,
                       batch_size=args.batch_size)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `analyze features` and `analyze logits`."""
    p = sub.add_parser("analyze", help="analyse trained models: feature clustering (t-SNE, V-score), softmax outputs")
    kinds = p.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    f = kinds.add_parser(
        "features", help="t-SNE of penultimate features of chosen classes + V-measure of k-means clusters",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  mixkd analyze features runs/T-S runs/MixT-S --classes cifar100-similar\n"
               "  mixkd analyze features runs/teacher --classes Trouser Bag Sneaker --per-class 200\n"
               "  mixkd analyze features resnet56.pth --arch resnet56 --data cifar100 --classes 0 1 2")
    add_model_args(f, "runs/analysis/features")
    f.add_argument("--classes", nargs="+", required=True, metavar="CLASS",
                   help="class names or indices, or one preset: cifar100-similar, cifar100-dissimilar")
    f.add_argument("--per-class", type=int, default=500, metavar="N",
                   help="at most N seeded examples of each class per split (default 500, 0 = all)")
    f.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"])
    f.set_defaults(func=_features)
    g = kinds.add_parser(
        "logits", help="per-class average softmax, top-1 and mean entropy on train and test (Fig. 4)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  mixkd analyze logits runs/teacher runs/teacher-mixup --class Coat\n"
               "  mixkd analyze logits runs/T-S runs/T-MixS --temperature 4 --class apple")
    add_model_args(g, "runs/analysis/logits")
    g.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (default 1)")
    g.add_argument("--class", dest="cls", metavar="NAME", help="class whose average distribution is drawn "
                   "(name or index; default the first class)")
    g.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"])
    g.set_defaults(func=_logits)


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


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)
