"""MODEL arguments of the analysis commands: run directories or checkpoint files -> models + their data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from mixkd.config import DataConfig, RunConfig, from_dict, load_config, parse_override, to_dict
from mixkd.data import DATASETS, DatasetSpec, DeviceLoader, Loader, Split, WorkerLoader, choose_subset
from mixkd.data.build import subset_splits
from mixkd.data.seeding import TEST, TRAIN_EVAL, generator
from mixkd.engine.distributed import resolve_device
from mixkd.errors import ConfigError, MixkdError
from mixkd.models.weights import load_model, read_checkpoint
from mixkd.progress import note

SPLITS = ("train", "test")


@dataclass
class LoadedModel:
    """One model to analyse, in eval mode on its device, with the label its plots and tables use."""

    label: str
    model: nn.Module
    arch: str
    source: Path
    config: RunConfig | None  # the run's config (run directories and mixkd checkpoints)


@dataclass
class EvalData:
    """The splits the models are analysed on: the run's (subsetted) train and test rows, never augmented."""

    spec: DatasetSpec
    splits: dict[str, Split]
    in_memory: bool
    batch_size: int
    device: torch.device
    seed: int = 0
    workers: int = field(default=2)

    def labels(self, split: str) -> Tensor:
        """The labels of `split` (CPU, int64)."""
        return self.splits[split].labels.cpu()

    def select(self, split: str, classes: Sequence[int] | None = None, per_class: int | None = None,
               seed: int = 0) -> Tensor:
        """Sorted row indices of `split`: only `classes` (all if None), at most `per_class` of each, seeded."""
        labels = self.labels(split)
        keep = torch.ones_like(labels, dtype=torch.bool) if classes is None else torch.isin(
            labels, torch.as_tensor(list(classes), dtype=labels.dtype))
        idx = keep.nonzero().flatten()
        if per_class is not None:
            idx = idx[choose_subset(labels[idx], per_class, True, generator(seed, 0xFEA7))]
        return idx

    def loader(self, split: str, idx: Tensor | None = None) -> Loader:
        """Fixed-order, unaugmented batches of `split` (or of its rows `idx`, in that order)."""
        if split not in self.splits:
            raise ConfigError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        rows = self.splits[split] if idx is None else self.splits[split].take(idx.cpu())
        common = dict(batch_size=self.batch_size, shuffle=False, augment=False, drop_last=False, seed=self.seed,
                      stream=TEST if split == "test" else TRAIN_EVAL, device=self.device)
        if self.in_memory:
            return DeviceLoader(rows.images, rows.labels, self.spec, **common)
        return WorkerLoader(rows, self.spec, workers=self.workers, large=True, **common)


def expand_runs(paths: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """(path, label) per model: a folder holding run directories below it (a sweep) stands for all of them."""
    out = []
    for p in map(Path, paths):
        if p.is_dir() and not any((p / n).is_file() for n in ("best.pt", "last.pt", "config.yaml")):
            runs = sorted({c.parent for c in p.rglob("config.yaml") if (c.parent / "best.pt").is_file()})
            if not runs:
                raise MixkdError(f"{p}: not a run directory and no run directories (config.yaml + best.pt) below it")
            out += [(r, str(r.relative_to(p))) for r in runs]
        elif p.is_file():
            out.append((p, p.parent.name if p.stem in ("best", "last") else p.stem))
        else:
            out.append((p, p.name))
    return out


def unique_labels(paths: Sequence[Path], bases: Sequence[str]) -> list[str]:
    """`bases` where unique; colliding ones get as many trailing path parts as it takes, then #N."""
    labels = list(bases)
    for k in range(2, 6):
        dup = {lbl for lbl in labels if labels.count(lbl) > 1}
        if not dup:
            break
        labels = ["/".join(p.parts[-k:]) if lbl in dup else lbl for p, lbl in zip(paths, labels, strict=True)]
    seen: dict[str, int] = {}
    out = []
    for lbl in labels:
        seen[lbl] = seen.get(lbl, 0) + 1
        out.append(lbl if seen[lbl] == 1 else f"{lbl}#{seen[lbl]}")
    return out


def _checkpoint_of(path: Path) -> tuple[Path, RunConfig | None, bool]:
    """(checkpoint file, run config if known, whether the file records its arch) for a MODEL argument."""
    if path.is_dir():
        ckpt = next((p for p in (path / "best.pt", path / "last.pt") if p.is_file()), None)
        if ckpt is None:
            raise MixkdError(f"{path} holds no best.pt or last.pt; is it a finished run directory?")
        if not (path / "config.yaml").is_file():
            raise MixkdError(f"{path} has no config.yaml; pass the checkpoint file with --arch and --data instead")
        return ckpt, load_config(path / "config.yaml"), True
    if not path.is_file():
        raise MixkdError(f"MODEL {path}: no such run directory or checkpoint file")
    if (path.parent / "config.yaml").is_file() and path.suffix == ".pt":
        return path, load_config(path.parent / "config.yaml"), True
    payload = read_checkpoint(path)
    mixkd = payload.get("format") == "mixkd"
    raw = payload.get("config") if mixkd else None
    return path, from_dict(raw) if isinstance(raw, dict) else None, mixkd and bool(payload.get("arch"))


def load_models(paths: Sequence[str | Path], *, arch: str | None = None, data: str | None = None,
                overrides: Sequence[str] = (), device: str = "auto",
                batch_size: int | None = None) -> tuple[list[LoadedModel], EvalData]:
    """Load every MODEL once and the one dataset they are all analysed on.

    The dataset is --data, else the first run's (with its subsets); data.* overrides apply on top. Checkpoint
    files that do not record their arch/dataset take --arch and the shared dataset.
    """
    bad = [o for o in overrides if not o.startswith("data.")]
    if bad:
        raise ConfigError(f"override {bad[0]!r}: the analyses take data.* overrides only (e.g. data.test_subset=1000)")
    if not paths:
        raise ConfigError("no MODEL given: pass run directories or checkpoint files")
    dev = resolve_device(device, key="--device")
    named = expand_runs(paths)
    found = [(p, *_checkpoint_of(p)) for p, _ in named]
    data_cfgs = [to_dict(cfg)["data"] if cfg is not None else None for _, _, cfg, _ in found]
    if data is None and all(d is None for d in data_cfgs):
        raise ConfigError(f"{found[0][0]} does not say which dataset it was trained on; pass --data NAME "
                          "(e.g. --data cifar100) and data.* overrides")
    base = next((d for d in data_cfgs if d is not None), {})
    raw: dict = {"data": {**base, **({"name": data} if data else {})}}
    for text in overrides:
        raw["data"].update(parse_override(text).get("data", {}))
    data_cfg = from_dict(raw).data
    names = {d["name"] for d in data_cfgs if d is not None}
    if data is None and len(names) > 1:
        raise ConfigError(f"the models were trained on different datasets ({', '.join(sorted(names))}); "
                          "analyse one dataset at a time or force one with --data NAME")
    seed = next((cfg.seed for _, _, cfg, _ in found if cfg is not None), 0)
    eval_data = build_eval_data(data_cfg, dev, seed, batch_size)
    labels = unique_labels([p for p, _ in named], [b for _, b in named])
    models = []
    for (path, ckpt, cfg, has_arch), label in zip(found, labels, strict=True):
        if not has_arch and arch is None:
            raise ConfigError(f"{path} does not record its architecture; pass --arch NAME (e.g. --arch resnet56)")
        want = None if has_arch else arch
        model = load_model(ckpt, arch=want).to(dev).eval()
        n = getattr(model, "num_classes", eval_data.spec.num_classes)
        if n != eval_data.spec.num_classes:
            raise ConfigError(f"{path} predicts {n} classes but {data_cfg.name} has {eval_data.spec.num_classes}; "
                              "pass the dataset it was trained on with --data NAME")
        models.append(LoadedModel(label, model, getattr(model, "arch", want or "?"), path, cfg))
        fallback = " (the run has no best.pt: its last epoch)" if path.is_dir() and ckpt.name == "last.pt" else ""
        note(f"{label}: {ckpt}{fallback}")
    return models, eval_data


def build_eval_data(cfg: DataConfig, device: torch.device, seed: int = 0, batch_size: int | None = None) -> EvalData:
    """The dataset's train and test splits with the run's subsets applied (same rows the run used)."""
    source = DATASETS.get(cfg.name)(cfg)
    splits = dict(zip(SPLITS, subset_splits(source, cfg, seed), strict=True))
    return EvalData(source.spec, splits, source.in_memory, batch_size or cfg.eval_batch_size, device, seed,
                    cfg.workers)
