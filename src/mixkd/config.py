"""Typed run configuration: YAML recipes, `section.key=value` overrides, validation before any work."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from mixkd.errors import ConfigError

Precision = Literal["auto", "fp32", "bf16", "fp16"]


def _range(lo: float | None = None, hi: float | None = None, *, open_lo: bool = False) -> dict:
    return {"lo": lo, "hi": hi, "open_lo": open_lo}


@dataclass
class DataConfig:
    """Which dataset, how much of it, and how it is batched."""

    name: str = "fashion-mnist"
    root: str | None = None
    download: bool = True
    train_subset: int | None = field(default=None, metadata=_range(1))
    test_subset: int | None = field(default=None, metadata=_range(1))
    subset_per_class: bool = False
    batch_size: int = field(default=64, metadata=_range(1))
    eval_batch_size: int = field(default=512, metadata=_range(1))
    loader: Literal["auto", "device", "workers"] = "auto"
    workers: int = field(default=2, metadata=_range(0))
    augment: bool = True


@dataclass
class ModelConfig:
    """The model being trained (the student when distilling)."""

    arch: str = "resnet20"


@dataclass
class TeacherConfig:
    """The frozen teacher of a distillation run."""

    checkpoint: str | None = None
    arch: str | None = None
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    cache: Literal["auto", "off", "memory", "disk"] = "auto"
    cache_dir: str | None = None


@dataclass
class MixingConfig:
    """Batch mixing: `none`, or `mixup` over a `fraction` of each batch (1.0 = full mixup)."""

    name: str = "none"
    alpha: float = field(default=1.0, metadata=_range(0.0, open_lo=True))
    fraction: float = field(default=1.0, metadata=_range(0.0, 1.0))
    sampling: Literal["exact", "official"] = "exact"


@dataclass
class DistillConfig:
    """The loss: `ce` (no teacher), `kd` (Hinton), `mixkd` (std-rescaled logits), `logitstd` (z-scored)."""

    method: str = "ce"
    temperature: float = field(default=4.0, metadata=_range(0.0, open_lo=True))
    gamma: float = field(default=0.1, metadata=_range(0.0))
    alpha: float = field(default=0.9, metadata=_range(0.0))
    base_temperature: float = field(default=2.0, metadata=_range(0.0, open_lo=True))


@dataclass
class OptimConfig:
    """SGD and its learning-rate schedule."""

    epochs: int = field(default=240, metadata=_range(1))
    lr: float = field(default=0.05, metadata=_range(0.0, open_lo=True))
    momentum: float = field(default=0.9, metadata=_range(0.0, 1.0))
    nesterov: bool = False
    weight_decay: float = field(default=5e-4, metadata=_range(0.0))
    schedule: Literal["step", "cosine"] = "step"
    milestones: list[int] = field(default_factory=lambda: [150, 180, 210])
    lr_decay: float = field(default=0.1, metadata=_range(0.0, 1.0, open_lo=True))
    warmup_epochs: int = field(default=0, metadata=_range(0))


@dataclass
class RuntimeConfig:
    """Where and how fast: device, precision, memory layout, compilation."""

    device: str = "auto"
    precision: Precision = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    compile: bool = False
    threads: int | None = field(default=None, metadata=_range(1))
    sync_bn: bool = False
    tensorboard: bool = True


@dataclass
class RunConfig:
    """A whole experiment; saved as config.yaml in every run directory and re-runnable as is."""

    seed: int = 0
    name: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    mixing: MixingConfig = field(default_factory=MixingConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


# --------------------------------------------------------------------------- building


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against the type hint `tp`; return it converted (int -> float) or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError:
                continue
    elif origin is Literal:
        if isinstance(value, bool) and ("on" if value else "off") in typing.get_args(tp):
            return "on" if value else "off"  # YAML reads a bare on/off as a boolean
        if value in typing.get_args(tp):
            return value
    elif origin is list:
        if isinstance(value, (list, tuple)):
            (item,) = typing.get_args(tp)
            return [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def _check_range(key: str, value: Any, meta: typing.Mapping) -> None:
    if value is None or "lo" not in meta:
        return
    lo, hi, open_lo = meta["lo"], meta["hi"], meta["open_lo"]
    if lo is not None and (value < lo or (open_lo and value == lo)):
        bound = f"> {lo}" if open_lo else f">= {lo}"
        raise ConfigError(f"{key}: must be {bound}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: must be <= {hi}, got {value!r}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        key = f"{prefix}{unknown[0]}"
        import difflib

        close = difflib.get_close_matches(unknown[0], fields, n=1)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        raise ConfigError(f"unknown config key {key!r}{hint}; allowed here: {', '.join(fields)}")
    kwargs = {}
    for name, value in raw.items():
        tp, key = hints[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key + ".")
        else:
            kwargs[name] = _coerce(key, value, tp)
            _check_range(key, kwargs[name], fields[name].metadata)
    return cls(**kwargs)


def _check_consistency(cfg: RunConfig) -> None:
    """Cross-key rules that single-key types cannot express."""
    o = cfg.optim
    if o.schedule == "step":
        bad = [m for m in o.milestones if not 0 < m < o.epochs]
        if bad:
            raise ConfigError(
                f"optim.milestones: {bad} are outside 1..{o.epochs - 1} (optim.epochs={o.epochs}); "
                "lower the milestones or raise optim.epochs"
            )
        if o.milestones != sorted(o.milestones):
            raise ConfigError(f"optim.milestones: must be increasing, got {o.milestones}")
    if o.warmup_epochs >= o.epochs:
        raise ConfigError(f"optim.warmup_epochs: must be < optim.epochs ({o.epochs}), got {o.warmup_epochs}")
    if cfg.runtime.precision == "fp16" and cfg.runtime.device == "cpu":
        raise ConfigError("runtime.precision: fp16 autocast is for GPUs; use bf16 or fp32 on the CPU")


def from_dict(raw: dict) -> RunConfig:
    """Build and validate a RunConfig from a nested mapping."""
    cfg = _build(RunConfig, raw, "")
    _check_consistency(cfg)
    return cfg


def to_dict(cfg: RunConfig) -> dict:
    """The config as plain nested dicts (what config.yaml holds)."""
    return dataclasses.asdict(cfg)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml_mapping(path: Path, missing_hint: str) -> dict:
    """A YAML file holding a mapping; a missing file, bad YAML or a non-mapping is a one-line ConfigError."""
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} not found; {missing_hint}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(raw).__name__}")
    return raw


def read_yaml(path: str | Path) -> dict:
    """Read a recipe, following its optional `base:` (a path or list of paths relative to the file)."""
    path = Path(path)
    raw = read_yaml_mapping(path, "pass a YAML recipe such as configs/quickstart/teacher.yaml")
    bases = raw.pop("base", None) or []
    merged: dict = {}
    for b in [bases] if isinstance(bases, str) else bases:
        merged = _merge(merged, read_yaml(path.parent / b))
    return _merge(merged, raw)


def parse_override(text: str) -> dict:
    """Turn `optim.lr=0.1` into {'optim': {'lr': 0.1}} (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value (e.g. optim.lr=0.1)")
    key, value = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key; write section.key=value")
    try:
        parsed = yaml.safe_load(value) if value != "" else None
    except yaml.YAMLError:
        parsed = value
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = parsed
    return out


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> RunConfig:
    """Recipe file (optional) + overrides -> validated RunConfig."""
    raw = read_yaml(path) if path else {}
    for text in overrides:
        raw = _merge(raw, parse_override(text))
    return from_dict(raw)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
