"""`mixkd export MODEL --format onnx|torchscript|exported-program --out FILE`: ship the student, checked."""

from __future__ import annotations

import argparse
from pathlib import Path

from mixkd.commands import HelpFormatter, add_overrides

_EXAMPLES = """MODEL is a finished run directory (its best.pt, or last.pt with --checkpoint last), a checkpoint file
of a run, or a community checkpoint with --arch and --data. The file is loaded back (onnxruntime for ONNX)
and compared with the eager model on real test images; past the tolerance it is an error and no file is left.

examples (after `mixkd quickstart`):
  mixkd export runs/quickstart/student-mixkd --format onnx --out student.onnx
  mixkd export runs/quickstart/student-kd/last.pt --format torchscript --out student-kd.pt --normalization metadata
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `export`."""
    p = sub.add_parser("export", help="export a student to ONNX, TorchScript or a torch.export program, checked "
                                      "against the eager model on test images",
                       description="Export the student alone (eval mode, BatchNorm folded where exact, dynamic "
                                   "batch size) with its class names, input size and config hash in the file.",
                       epilog=_EXAMPLES, formatter_class=HelpFormatter)
    p.add_argument("model", metavar="MODEL", help="run directory, its checkpoint, or a community checkpoint")
    add_overrides(p, "data.* overrides of the dataset whose test images check the file (e.g. data.root=DIR)")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript", "exported-program"),
                   help="onnx (needs the export extra: pip install -e '.[export]'), torchscript, or "
                        "exported-program (torch.export, a .pt2 file)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="the file to write")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint of a run directory (default best)")
    p.add_argument("--normalization", choices=("baked", "metadata"), default="baked",
                   help="baked: the file's first op normalises, its input is pixels in [0, 1] (default); "
                        "metadata: the input is normalised by the caller, mean and std are in the metadata")
    p.add_argument("--no-fold", action="store_true", help="keep every BatchNorm as it is")
    p.add_argument("--images", type=int, default=256, metavar="N",
                   help="test images the file is checked on (default 256; fewer if the test split is smaller)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest relative logit difference accepted (to each image's largest |logit|; "
                        "default 1e-4)")
    p.add_argument("--arch", help="architecture of a checkpoint that does not record it (e.g. resnet56)")
    p.add_argument("--data", metavar="NAME", help="dataset of a checkpoint that does not record it (data.name)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress reports on stderr")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from mixkd import __version__
    from mixkd.analysis.loading import load_models
    from mixkd.config import to_dict
    from mixkd.errors import ConfigError, MixkdError
    from mixkd.export import check_out, config_hash, export_student, require_extra

    require_extra(args.format)
    check_out(args.out, args.format, args.force)
    if args.images < 1:
        raise ConfigError(f"--images must be >= 1, got {args.images}")
    if not args.tolerance > 0:
        raise ConfigError(f"--tolerance must be > 0, got {args.tolerance}")
    source = Path(args.model)
    if source.is_dir():
        if not (source / "config.yaml").is_file():
            raise MixkdError(f"{source} is not a run directory (no config.yaml); pass a run directory or a "
                             "checkpoint file")
        if not (source / "summary.json").is_file():
            last = source / "last.pt"
            hint = (f"; to export it as it stands, name its checkpoint: mixkd export {last} ..." if last.is_file()
                    else "")
            raise MixkdError(f"{source} is not a finished run (no summary.json); finish it with "
                             f"`mixkd train --resume {source}`{hint}")
        source = source / f"{args.checkpoint}.pt"
        if not source.is_file():
            raise MixkdError(f"{source.parent} has no {source.name}; pass --checkpoint "
                             f"{'last' if args.checkpoint == 'best' else 'best'} or a checkpoint file")
    models, data = load_models([source], arch=args.arch, data=args.data, overrides=args.overrides,
                               device="cpu", batch_size=min(args.images, 512))
    loaded = models[0]
    parts, n = [], 0
    for batch in data.loader("test"):
        parts.append(batch.x[: args.images - n])
        n += len(parts[-1])
        if n >= args.images:
            break
    if not n:
        raise MixkdError(f"{data.spec.name}'s test split is empty: there are no images to check the file on")
    images = torch.cat(parts)
    spec = data.spec
    cfg = to_dict(loaded.config) if loaded.config is not None else None
    meta = {"arch": loaded.arch, "num_classes": spec.num_classes, "classes": list(spec.classes),
            "dataset": spec.name, "config_sha256": config_hash(cfg), "checkpoint": str(source),
            "mixkd": __version__}
    result = export_student(loaded.model, images, args.out, args.format, mean=tuple(spec.mean),
                            std=tuple(spec.std), bake=args.normalization == "baked", fold_bn=not args.no_fold,
                            metadata=meta, tolerance=args.tolerance)
    shape = "×".join(map(str, images.shape[1:]))
    norm = ("normalisation baked in (input: pixels in [0, 1])" if args.normalization == "baked" else
            "input normalised by the caller (mean, std in the metadata)")
    runtime = {"onnx": "onnxruntime", "torchscript": "torch.jit.load", "exported-program": "torch.export.load"}
    size = result.path.stat().st_size
    print(f"exported {loaded.arch} ({source}) as {args.format}: {result.path} ({size / 1e6:.2f} MB), batch × {shape}, "
          f"{norm}")
    print(result.folding.note)
    print(f"{runtime[args.format]}: {result.check.line()}")
    return 0
