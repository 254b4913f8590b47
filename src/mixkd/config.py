"""Typed run configuration: YAML recipes, `section.key=value` overrides, validation before any work."""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

import yaml

from mixkd.errors import ConfigError
from mixkd.params import Param, Range

Precision = Literal["auto", "fp32", "bf16", "fp16"]

# The recipes shipped with mixkd (package data; `configs/` of a checkout is the same folder).
RECIPE_DIR = Path(__file__).parent / "configs"


def _range(lo: float | None = None, hi: float | None = None, *, open_lo: bool = False, why: str = "") -> dict:
    return {"range": Range(lo, hi, open_lo, why)}


# torch.manual_seed takes unsigned 64-bit seeds and NumPy's SeedSequence (data.seeding.seed32) non-negative ones
SEED_MAX = 2**64 - 1


@dataclass
class DataConfig:
    """Which dataset, how much of it, and how it is batched."""

    docs: ClassVar[dict[str, str]] = {  # what each key means, for the generated reference
        "name": "the dataset (`mixkd datasets`)",
        "root": "where its files are (default: MIXKD_DATA/<name> or ~/.cache/mixkd/data/<name>)",
        "download": "fetch a missing dataset (torchvision's download)",
        "train_subset": "use this many training images (null: all)",
        "test_subset": "use this many test images (null: all)",
        "subset_per_class": "draw the subsets with equal counts per class",
        "batch_size": "the global batch (split across torchrun processes)",
        "eval_batch_size": "the batch of evaluation passes",
        "loader": "device: the set on the device, augmented there; workers: a DataLoader; auto: device if in memory",
        "workers": "DataLoader worker processes (loader=workers)",
        "augment": "random crop and flip of training images",
        "strong_view": "a second, strongly augmented view of each training image (randaugment), for MLKD",
    }

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
    strong_view: Literal["none", "randaugment"] = "none"


@dataclass
class ModelConfig:
    """The model being trained (the student when distilling)."""

    docs: ClassVar[dict[str, str]] = {  # what each key means, for the generated reference
        "arch": "the model trained (`mixkd models`)",
    }

    arch: str = "resnet20"


@dataclass
class TeacherConfig:
    """The frozen teacher of a distillation run."""

    docs: ClassVar[dict[str, str]] = {  # what each key means, for the generated reference
        "checkpoint": "the teacher's checkpoint (a mixkd run's best.pt or a community .pth)",
        "arch": "its architecture, for community checkpoints that do not record one",
        "precision": "the teacher's forward precision; auto = the student's",
        "cache": "keep the teacher's logits: auto = in memory when they fit 2 GiB and do not change training",
        "cache_dir": "the folder of a disk cache (cache=disk)",
        "shared_cache_dir": "with cache=auto, a folder where runs of one teacher share a disk cache (sweeps set it)",
        "compile": "torch.compile with inductor freezing; auto = on for CPU runs of ≥ 1,000,000 training images",
    }

    checkpoint: str | None = None
    arch: str | None = None
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    cache: Literal["auto", "off", "memory", "disk"] = "auto"
    cache_dir: str | None = None
    shared_cache_dir: str | None = None
    compile: Literal["auto", "on", "off"] = "auto"


@dataclass
class MixingConfig:
    """Batch mixing over a `fraction` of each batch's rows (1.0 = every row): `none`, `mixup`, `cutmix`,
    `mixup-cutmix`, `cutmix-pick` or `confident-mixup` (docs/methods.md, "Mixings")."""

    docs: ClassVar[dict[str, str]] = {  # what each key means, for the generated reference
        "name": "the batch mixing (`mixkd mixings`)",
        "alpha": "λ ~ Beta(α, α)",
        "fraction": "the exact share of each batch's rows that is mixed (1 = every row)",
        "sampling": "exact: that share in every batch; official: the paper's code's per-batch draw (mixup only)",
    }

    name: str = "none"
    alpha: float = field(default=1.0, metadata=_range(0.0, open_lo=True))
    fraction: float = field(default=1.0, metadata=_range(0.0, 1.0))
    sampling: Literal["exact", "official"] = "exact"
    # the keys of particular mixings (mixing.switch_prob, mixing.candidates, ...): each mixing declares its own
    # in its file (its `Params`), `mixing_keys_type` gathers them; read as cfg.switch_prob
    own: Any = None

    def __post_init__(self) -> None:
        if self.own is None:
            self.own = mixing_keys_type()()

    def __getattr__(self, name: str) -> Any:
        own = self.__dict__.get("own")
        if own is not None and name in own.__dataclass_fields__:
            return getattr(own, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


# the keys every mixing's config.yaml keeps; of the others, only those its mixer declares (mixkd.mixing)
MIXING_SHARED_KEYS = ("name", "alpha", "fraction", "sampling")

_MIXING_KEYS_TYPES: dict[tuple, type] = {}


def mixing_keys_type() -> type:
    """The dataclass of the mixings' own keys, derived from what each mixer declares (read when first needed,
    not at import: config sits below the mixers)."""
    from mixkd.mixing import own_keys  # a runtime lookup of the registry, not an import-time dependency

    params, docs = own_keys()
    key = tuple(params.items())
    if key not in _MIXING_KEYS_TYPES:
        fields_ = [(p.name, p.type, field(default=p.default, metadata=_param_range(p))) for p in params.values()]
        cls = dataclasses.make_dataclass("MixingKeys", fields_, namespace={
            "docs": docs, "__doc__": "The keys of particular mixings, as their files declare them."})
        cls.__module__ = __name__  # picklable: the module's __getattr__ finds it by name
        _MIXING_KEYS_TYPES[key] = cls
    return _MIXING_KEYS_TYPES[key]


def mixing_unread_keys(name: str) -> set[str]:
    """The mixing keys beyond MIXING_SHARED_KEYS that the mixing `name` does not read (none for unknown names)."""
    from mixkd.mixing import MIXERS, own_params

    own = {f.name for f in dataclasses.fields(mixing_keys_type())}
    return own - set(own_params(MIXERS.get(name))) if name in MIXERS else set()


# The per-method sections of `distill` (distill.dkd, distill.crd, ..., and the plug-in distill.ctkd) are not
# written here: each KD method declares its parameters once, in its own file (mixkd.params), and
# `section_types` derives a typed section from that declaration. A key left unset (null) means the method's
# published default, which `mixkd methods` lists and each run records in summary.json ("distill").


@dataclass
class DistillConfig:
    """The loss: total = ce_weight · CE + kd_weight · KD + <method>.weight · the method's own term."""

    docs: ClassVar[dict[str, str]] = {  # what each key means, for the generated reference
        "method": "the KD method (`mixkd methods`)",
        "ce_weight": "γ, the cross-entropy weight; null = the method's default",
        "kd_weight": "α, the KD term's weight; null = the method's default",
        "temperature": "T of KD (logit_norm=none)",
        "logit_norm": "none, std (the paper's f/σ(f)) or zscore; null = the method's default",
        "base_temperature": "τ of logit_norm=zscore",
        "init_epochs": "epochs of the init stage (AB, FT, FSP)",
        "init_lr": "the init stage's learning rate; null = the method's",
    }

    method: str = "ce"
    ce_weight: float | None = field(default=None, metadata=_range(0.0))  # γ; null = the method's default
    kd_weight: float | None = field(default=None, metadata=_range(0.0))  # α; null = the method's default
    temperature: float = field(default=4.0, metadata=_range(0.0, open_lo=True))
    # none | std | zscore (see mixkd.distill.norm); null = the method's default (mixkd: std, logitstd: zscore)
    logit_norm: Literal["none", "std", "zscore"] | None = None
    base_temperature: float = field(default=2.0, metadata=_range(0.0, open_lo=True))
    init_epochs: int = field(default=30, metadata=_range(0))  # two-stage methods (AB, FT, FSP)
    init_lr: float | None = field(default=None, metadata=_range(0.0, open_lo=True))  # null = the method's
    # {section name: its typed section}, every declared section present; read as cfg.distill.<name>
    sections: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        types_ = section_types()
        unknown = sorted(set(self.sections) - set(types_))
        if unknown:
            raise ConfigError(f"distill: unknown method section {unknown[0]!r}; sections: {', '.join(types_)}")
        self.sections = {name: self.sections.get(name) or cls() for name, cls in types_.items()}

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


@dataclass
class OptimConfig:
    """SGD and its learning-rate schedule."""

    docs: ClassVar[dict[str, str]] = {  # what each key means, for the generated reference
        "epochs": "training epochs",
        "lr": "SGD's learning rate",
        "momentum": "SGD momentum",
        "nesterov": "Nesterov momentum",
        "weight_decay": "L2 weight decay",
        "schedule": "step: decay at milestones; cosine: to 0 over the epochs",
        "milestones": "the epochs after which the lr decays (schedule=step)",
        "lr_decay": "the factor of each decay",
        "warmup_epochs": "linear warm-up epochs",
    }

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

    docs: ClassVar[dict[str, str]] = {  # what each key means, for the generated reference
        "device": "auto, cpu, cuda or cuda:N",
        "precision": "autocast precision; auto = chosen by measurement per device (docs/speed.md)",
        "channels_last": "channels-last memory layout; auto = where it is faster",
        "compile": "torch.compile of the student's training forward; auto = on for long single-process CPU runs",
        "threads": "CPU threads (null: PyTorch's default)",
        "sync_bn": "synchronised BatchNorm across torchrun processes",
        "tensorboard": "write TensorBoard logs (when installed)",
    }

    device: str = "auto"
    precision: Precision = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
    threads: int | None = field(default=None, metadata=_range(1))
    sync_bn: bool = False
    tensorboard: bool = True


@dataclass
class RunConfig:
    """A whole experiment; saved as config.yaml in every run directory and re-runnable as is."""

    docs: ClassVar[dict[str, str]] = {  # what each key means, for the generated reference
        "seed": "the run's seed (data order, mixing draws, initialisation); an unsigned 64-bit integer",
        "name": "a label for reports; the run folder is --out",
    }

    seed: int = field(default=0, metadata=_range(0, SEED_MAX, why="seeds are unsigned 64-bit integers"))
    name: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    mixing: MixingConfig = field(default_factory=MixingConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


# --------------------------------------------------------------------------- method sections

_SECTION_TYPES: dict[tuple, dict[str, type]] = {}


def _section_class_name(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^0-9a-zA-Z]+", name)) + "Section"


def section_types() -> dict[str, type]:
    """{name: typed section of `distill`}, derived from the parameters each KD method declares.

    Every key is nullable with default null (= the method's published default); its type and range are
    the declared ones. The registry is read when first needed, not at import: config sits below the methods.
    """
    from mixkd.distill import sections  # a runtime lookup of the registry, not an import-time dependency

    declared = sections()
    key = tuple((name, tuple(params.items())) for name, params in declared.items())
    if key not in _SECTION_TYPES:
        out = {}
        for name, params in declared.items():
            fields_ = [(p.name, p.type | None, field(default=None, metadata=_param_range(p))) for p in params.values()]
            cls = dataclasses.make_dataclass(_section_class_name(name), fields_, namespace={
                "__doc__": f"distill.{name}: the parameters {name} declares (null = its published default)."})
            cls.__module__ = __name__  # picklable: the module's __getattr__ finds it by name
            out[name] = cls
        _SECTION_TYPES[key] = out
    return _SECTION_TYPES[key]


def _param_range(p: Param) -> dict:
    return {"range": p.range} if p.range else {}


def __getattr__(name: str) -> Any:  # e.g. DkdSection, for pickle and `from mixkd.config import DkdSection`
    if name == "MixingKeys":
        return mixing_keys_type()
    if name.endswith("Section") and not name.startswith("_"):
        for cls in section_types().values():
            if cls.__name__ == name:
                return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


# PyYAML reads YAML 1.1, whose floats need a dot: `1e-3` and `5E4` come back as strings. Number-typed keys
# take them (the YAML 1.2 spelling of a number); string-typed keys keep them as written.
_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_EXACT_FLOAT_INT = 2**53  # floats at or beyond this may not be the integer the user wrote


class _BadValue(ConfigError):
    """The value has the right type but is not allowed (e.g. NaN): a Union reports this, not a type error."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _show(value: Any) -> str:
    """repr(value), shortened: error messages stay one readable line."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:45]}...({len(text)} characters)"


def _number(value: Any) -> int | float | Decimal | None:
    """`value` as a number if it is one (bools are not), or a string spelling one; else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return Decimal(value.strip())
    return None


def _as_float(key: str, value: Any) -> float | None:
    num = _number(value)
    if num is None:
        return None
    try:
        out = float(num)
    except OverflowError:  # an int beyond the float range
        out = math.inf
    if not math.isfinite(out):
        raise _BadValue(f"{key}: must be a finite number, got {_show(value)}; write a number such as 0.1")
    return out


def _as_int(key: str, value: Any) -> int | None:
    num = _number(value)
    if num is None or isinstance(num, int):
        return num
    if isinstance(num, float):
        if not (math.isfinite(num) and num.is_integer()):
            return None
        if abs(num) >= _EXACT_FLOAT_INT:
            raise _BadValue(f"{key}: {_show(value)} is too large to be exact as a float; write it as an integer")
        return int(num)
    if num != num.to_integral_value():  # a Decimal, from a string such as 5e3
        return None
    if num.adjusted() > 100:
        raise _BadValue(f"{key}: {_show(value)} is too large")
    return int(num)


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against the type hint `tp`; return it converted (int -> float) or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        bad: list[_BadValue] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except _BadValue as e:  # the most specific complaint, unless another type accepts the value
                bad.append(e)
            except ConfigError:
                continue
        if bad:
            raise bad[0]
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
        out = _as_int(key, value)
        if out is not None:
            return out
    elif tp is float:
        out = _as_float(key, value)
        if out is not None:
            return out
    elif tp is str:
        if isinstance(value, str):
            return value
        # YAML 1.1 reads 2024 as a number, yes/no/on/off as booleans and 2024-01-01 as a date
        kinds = ((bool, "true/false"), (datetime.date, "a date"), ((int, float), "a number"))
        kind = next((k for t, k in kinds if isinstance(value, t)), None)
        if kind:
            raise _BadValue(f"{key}: expected a string, got {_show(value)} (YAML read it as {kind}); put it in quotes")
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_show(value)}")


def _check_range(key: str, value: Any, meta: typing.Mapping) -> None:
    r = meta.get("range")
    if value is None or r is None:
        return
    lo, hi, open_lo = r.lo, r.hi, r.open_lo
    why = f" ({r.why})" if r.why else ""
    if lo is not None and (value < lo or (open_lo and value == lo)):
        bound = f"> {lo}" if open_lo else f">= {lo}"
        raise ConfigError(f"{key}: must be {bound}, got {_show(value)}{why}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: must be <= {hi}, got {_show(value)}{why}")


# keys of older recipes -> what replaced them
RENAMED = {
    "distill.gamma": "distill.ce_weight (the cross-entropy weight γ)",
    "distill.alpha": "distill.kd_weight (the KD term's weight α; mixing.alpha stays the Beta(α, α) parameter)",
}


# fields that hold derived keys, which config files write beside the others (see distill_dict, mixing_dict)
_DERIVED = {("DistillConfig", "sections"), ("MixingConfig", "own")}


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if (cls.__name__, f.name) not in _DERIVED}
    sections = section_types() if cls is DistillConfig else {}
    own = mixing_keys_type() if cls is MixingConfig else None
    own_keys = [f.name for f in dataclasses.fields(own)] if own else []
    unknown = [k for k in raw if k not in fields and k not in sections and k not in own_keys]
    if unknown:
        key = f"{prefix}{unknown[0]}"
        if key in RENAMED:
            raise ConfigError(f"{key} was renamed: use {RENAMED[key]}")
        import difflib

        allowed = [*fields, *own_keys, *sections]
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        raise ConfigError(f"unknown config key {key!r}{hint}; allowed here: {', '.join(allowed)}")
    kwargs: dict[str, Any] = {"sections": {}} if sections else {}
    if own:
        kwargs["own"] = _build(own, {k: v for k, v in raw.items() if k in own_keys}, prefix)
    for name, value in raw.items():
        if name in own_keys:
            continue
        if name in sections:
            kwargs["sections"][name] = _build(sections[name], value, f"{prefix}{name}.")
            continue
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
            kept = "[" + ",".join(str(m) for m in o.milestones if 0 < m < o.epochs) + "]"
            raise ConfigError(
                f"optim.milestones: {bad} are outside 1..{o.epochs - 1} (optim.epochs={o.epochs}); "
                f"add optim.milestones={kept} to the command line (the decays a {o.epochs}-epoch run can have), "
                "or raise optim.epochs"
            )
        if o.milestones != sorted(o.milestones):
            raise ConfigError(f"optim.milestones: must be increasing, got {o.milestones}")
    if o.warmup_epochs >= o.epochs:
        raise ConfigError(f"optim.warmup_epochs: must be < optim.epochs ({o.epochs}), got {o.warmup_epochs}")
    if cfg.mixing.sampling == "official" and cfg.mixing.name != "mixup":
        raise ConfigError(f"mixing.sampling=official is the paper's mixup code and applies to mixup only, not "
                          f"mixing.name={cfg.mixing.name}; use mixing.sampling=exact")
    if cfg.runtime.precision == "fp16" and cfg.runtime.device == "cpu":
        raise ConfigError("runtime.precision: fp16 autocast is for GPUs; use bf16 or fp32 on the CPU")


def from_dict(raw: dict) -> RunConfig:
    """Build and validate a RunConfig from a nested mapping."""
    cfg = _build(RunConfig, raw, "")
    _check_consistency(cfg)
    return cfg


def distill_config(**keys: Any) -> DistillConfig:
    """A validated `distill` section from keyword values, method sections as mappings:
    `distill_config(method="dkd", dkd={"nckd_weight": 4})`."""
    return _build(DistillConfig, keys, "distill.")


def mixing_config(**keys: Any) -> MixingConfig:
    """A validated `mixing` section from keyword values: `mixing_config(name="mixup-cutmix", switch_prob=0.3)`."""
    return _build(MixingConfig, keys, "mixing.")


def to_dict(cfg: RunConfig) -> dict:
    """The config as plain nested dicts, every key and section included (see `to_saved_dict` for config.yaml);
    the method sections sit in `distill` beside its other keys, as recipes write them."""
    out = dataclasses.asdict(cfg)
    out["mixing"] = mixing_dict(cfg.mixing)
    out["distill"] = distill_dict(cfg.distill)
    return out


def mixing_dict(cfg: MixingConfig) -> dict:
    """`mixing` as a plain dict: the shared keys, then the mixings' own keys."""
    out = dataclasses.asdict(cfg)
    return {**{k: v for k, v in out.items() if k != "own"}, **out["own"]}


def distill_dict(cfg: DistillConfig) -> dict:
    """`distill` as a plain dict: its keys, then one entry per method section."""
    out = dataclasses.asdict(cfg)
    return {**{k: v for k, v in out.items() if k != "sections"}, **out["sections"]}


def method_sections() -> dict[str, dict]:
    """{name: its defaults as a dict} of distill's per-method sections (dkd, crd, ..., ctkd)."""
    return {name: dataclasses.asdict(cls()) for name, cls in section_types().items()}


def compact_config(raw: dict) -> dict:
    """A config mapping without the method sections of `distill` that do not apply to its method.

    A section is dropped when it belongs to another method than `distill.method` and holds only its defaults
    (all null, or null itself): the method never reads it, and reading the file back fills it in again, so
    `from_dict(compact_config(d))` equals `from_dict(d)` and resume/reuse checks see the same config. A section
    of another method that holds a value stays, since it is what was asked for. Other keys are untouched.
    """
    raw = _compact_mixing(raw)
    distill = raw.get("distill")
    if not isinstance(distill, dict):
        return raw
    method = distill.get("method", DistillConfig.method)
    unused = {name for name, default in method_sections().items()
              if name != method and name in distill and distill[name] in (None, default)}
    return {**raw, "distill": {k: v for k, v in distill.items() if k not in unused}}


def _compact_mixing(raw: dict) -> dict:
    """`raw` without the mixing keys its mixing does not read that hold their defaults (so a mixup run's
    config.yaml reads as it did before CutMix's keys existed)."""
    mixing = raw.get("mixing")
    if not isinstance(mixing, dict):
        return raw
    defaults = mixing_dict(MixingConfig())
    name = mixing.get("name", MixingConfig.name)
    unread = mixing_unread_keys(name) if isinstance(name, str) else set()
    drop = {k for k in unread if k in mixing and mixing[k] == defaults[k]}
    return {**raw, "mixing": {k: v for k, v in mixing.items() if k not in drop}}


def to_saved_dict(cfg: RunConfig) -> dict:
    """What a run's config.yaml holds: the resolved config with only the method section that applies."""
    return compact_config(to_dict(cfg))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def find_recipe(path: str | Path) -> Path:
    """`path`, or for a `configs/...` path that is not here, the recipe of that name shipped with mixkd."""
    path = Path(path)
    if not _is_file(path) and not path.is_absolute() and path.parts[:1] == ("configs",):
        shipped = RECIPE_DIR.joinpath(*path.parts[1:])
        if _is_file(shipped):
            return shipped
    return path


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a name too long for the file system
        return False


def read_yaml_mapping(path: Path, missing_hint: str) -> dict:
    """A YAML file holding a mapping; a missing file, bad YAML or a non-mapping is a one-line ConfigError."""
    if not _is_file(path):
        raise ConfigError(f"{str(path)!r} not found; {missing_hint}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file (byte {e.object[e.start]:#04x} at offset {e.start} "
                          f"is not UTF-8); {missing_hint}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    except (yaml.YAMLError, ValueError) as e:  # PyYAML raises ValueError for e.g. a date like 2024-13-01
        raise ConfigError(f"{path}: not valid YAML ({_first_line(e)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(raw).__name__}")
    return raw


def read_yaml(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """Read a recipe, following its optional `base:` (a path or list of paths relative to the file)."""
    path = find_recipe(path)
    here = path.resolve()
    if here in _chain:
        cycle = " -> ".join(os.path.relpath(p) for p in (*_chain[_chain.index(here):], here))
        raise ConfigError(f"base: cycle {cycle}; a recipe cannot be its own base, remove one of these base: entries")
    raw = read_yaml_mapping(path, "pass a YAML recipe such as configs/quickstart/teacher.yaml")
    bases = raw.pop("base", None)
    names = [] if bases is None else [bases] if isinstance(bases, str) else bases
    if not isinstance(names, list) or not all(isinstance(b, str) and b.strip() for b in names):
        raise ConfigError(f"{path}: base: must be a recipe file or a list of them, relative to the recipe's "
                          f"folder; got {_show(bases)}")
    merged: dict = {}
    for name in names:
        base = path.parent / name
        if not _is_file(base):
            raise ConfigError(f"{path}: base {name!r} not found at {base}; base paths are relative to the recipe")
        merged = _merge(merged, read_yaml(base, (*_chain, here)))
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
    except ValueError as e:  # what PyYAML's constructors raise, e.g. for the date 2024-13-01
        raise ConfigError(f"override {_show(text)}: {_first_line(e)}") from None
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = parsed
    return out


def is_sweep_spec(raw: typing.Any) -> bool:
    """A YAML mapping with a top-level `grid:` is a sweep spec (for `mixkd sweep`), not a run recipe."""
    return isinstance(raw, dict) and "grid" in raw


def is_cohort_plan(raw: typing.Any) -> bool:
    """A YAML mapping with a top-level `members:` is a cohort plan (for `mixkd cohort`), not a run recipe."""
    return isinstance(raw, dict) and "members" in raw


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> RunConfig:
    """Recipe file (optional) + overrides -> validated RunConfig."""
    raw = read_yaml(path) if path else {}
    if is_sweep_spec(raw):
        raise ConfigError(f"{path} is a sweep spec, not a run recipe: run it with `mixkd sweep {path}`")
    if is_cohort_plan(raw):
        raise ConfigError(f"{path} is a cohort plan, not a run recipe: run it with `mixkd cohort {path}`")
    for text in overrides:
        raw = _merge(raw, parse_override(text))
    return from_dict(raw)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_saved_dict(cfg), sort_keys=False))
