"""`mixkd attack MODEL... --eps ...`: accuracy under white-box FGSM and I-FGSM (Table 3, Fig. 7)."""

from __future__ import annotations

import argparse

from mixkd.commands import HelpFormatter
from mixkd.commands.analyze import add_model_args, load_from_args

DEFAULT_EPS = ["0", "1/255", "2/255", "4/255", "8/255"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `attack`."""
    p = sub.add_parser(
        "attack", help="accuracy under white-box FGSM / I-FGSM per epsilon: table (Markdown, CSV, JSON) + plot",
        formatter_class=HelpFormatter,
        epilog="epsilon is in pixel units [0, 1] (fractions like 2/255 are fine); the attack perturbs the\n"
               "de-normalised pixels, clamps them to [0, 1] and re-applies the model's normalisation.\n"
               "examples (after `mixkd quickstart`):\n"
               "  mixkd attack runs/quickstart/student-kd runs/quickstart/student-mixkd --eps 0 1/255 2/255 4/255\n"
               "  mixkd attack runs/quickstart --attacks fgsm --per-class 20 --out runs/quickstart/attack\n"
               "  mixkd attack resnet20.pth --arch resnet20 --data cifar100 --steps 10 --per-class 100\n"
               "           # a community checkpoint on CIFAR-100 (data.root=DIR says where CIFAR-100 is)")
    add_model_args(p, "runs/analysis/attack")
    p.add_argument("--eps", nargs="+", default=DEFAULT_EPS, metavar="EPS",
                   help=f"perturbation budgets (L-inf, pixel units; default {' '.join(DEFAULT_EPS)})")
    p.add_argument("--attacks", nargs="+", default=["fgsm", "ifgsm"], metavar="NAME",
                   help="attacks to run (default fgsm ifgsm)")
    p.add_argument("--steps", type=int, default=10, help="I-FGSM iterations (default 10)")
    p.add_argument("--step-size", metavar="S",
                   help="I-FGSM step in pixel units, e.g. 1/255 (default eps/steps; see docs/attacks.md)")
    p.add_argument("--split", default="test", choices=["train", "test"], help="split attacked (default test)")
    p.add_argument("--per-class", type=int, metavar="N",
                   help="attack at most N seeded images per class (default: every image of the split)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --per-class sampling (default 0)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mixkd.analysis.plots import plot_attack_curves
    from mixkd.analysis.robustness import (
        ATTACKS,
        AttackSettings,
        accuracy_under_attack,
        parse_eps,
        parse_pixels,
    )
    from mixkd.analysis.tables import markdown_table, write_csv, write_json, write_text
    from mixkd.errors import ConfigError

    eps = parse_eps(args.eps)
    for a in args.attacks:
        ATTACKS.get(a)
    if args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    step_size = None if args.step_size is None else parse_pixels(args.step_size, "--step-size")
    if step_size == 0:
        raise ConfigError("--step-size 0: the attack would not move; give a step such as 1/255")
    if args.per_class is not None and args.per_class < 1:
        raise ConfigError(f"--per-class must be >= 1, got {args.per_class}")
    settings = AttackSettings(args.steps, step_size)
    models, data = load_from_args(args)
    idx = data.select(args.split, None, args.per_class, args.seed) if args.per_class else None
    loader = data.loader(args.split, idx)
    results = {m.label: accuracy_under_attack(m.model, loader, data.spec, eps, args.attacks, settings,
                                              desc=f"attack {m.label}") for m in models}
    rows = [{"model": model, "attack": a, **{f"eps={e * 255:g}/255": acc[i] for i, e in enumerate(eps)}}
            for model, per in results.items() for a, acc in per.items()]
    out = args.out
    header = ["model", "attack"] + [f"ε={e * 255:g}/255" for e in eps]
    table = markdown_table(header, [list(r.values()) for r in rows])
    write_text(out / "attack.md", table)
    write_csv(out / "attack.csv", rows)
    write_json(out / "attack.json", {
        "dataset": data.spec.name, "split": args.split, "images": loader.num_samples, "eps": eps,
        "steps": args.steps, "step_size": step_size, "models": {m.label: str(m.source) for m in models},
        "top1": results})
    plot_attack_curves(results, eps, out / "attack.png",
                       f"White-box attacks on {data.spec.name} {args.split} ({loader.num_samples} images)")
    print(table, end="")
    print(f"wrote {out}/attack.md, attack.csv, attack.json, attack.png")
    return 0
