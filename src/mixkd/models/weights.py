"""Reading checkpoints (community, bare, mixkd) and loading them into models with one-line errors."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mixkd.errors import CheckpointError
from mixkd.models.registry import build_model

# wrappers that prefix every key: DistributedDataParallel and torch.compile
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_SHOW = 3  # how many offending keys an error message names


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint file onto the CPU; any failure is a one-line CheckpointError naming the path.

    Only tensors and plain Python values are read (torch.load with weights_only=True, always): unpickling
    anything else can run code, so such files are refused with the one-line way to convert them.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: {'not a file' if path.exists() else 'no such file'}")
    payload = _torch_load(path)
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict, found a {type(payload).__name__}")
    return payload


def extract_state_dict(payload: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split a checkpoint into its model state_dict (wrapper prefixes stripped) and metadata.

    Metadata keys: `format` ('mixkd', 'community' or 'state_dict'), `arch` and `num_classes` (from mixkd
    checkpoints only, else None) and `epoch` (None if absent).
    """
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"checkpoint payload is a {type(payload).__name__}, expected a dict")
    if payload.get("format") == "mixkd":
        if not _is_state_dict(payload.get("model")):
            raise CheckpointError("mixkd checkpoint has no 'model' state_dict")
        state_dict = payload["model"]
        meta = {"format": "mixkd", "arch": payload.get("arch"), "num_classes": payload.get("num_classes")}
    elif _is_state_dict(payload):
        state_dict, meta = payload, {"format": "state_dict", "arch": None, "num_classes": None}
    else:
        key = next((k for k in ("model", "state_dict") if _is_state_dict(payload.get(k))), None)
        if key is None:
            keys = ", ".join(map(str, list(payload)[:8]))
            raise CheckpointError(
                f"no state_dict found: expected a 'model' entry or a bare state_dict (keys: {keys})"
            )
        state_dict = payload[key]
        meta = {"format": "community", "arch": None, "num_classes": None}
    meta["epoch"] = payload.get("epoch") if meta["format"] != "state_dict" else None
    return _strip_wrappers(state_dict), meta


def load_weights(model: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Copy `state_dict` into `model`, or raise a one-line CheckpointError naming what does not fit."""
    state_dict = _strip_wrappers(state_dict)
    expected = model.state_dict()
    # checkpoints from before BatchNorm counted batches lack these counters; the model's own are kept
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint {list(v.shape)} vs model {list(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    problems = [
        _listing(what, items)
        for what, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        )
        if items
    ]
    if problems:
        arch = getattr(model, "arch", type(model).__name__)
        classes = getattr(model, "num_classes", "?")
        raise CheckpointError(f"weights do not fit {arch} with {classes} classes: {'; '.join(problems)}")
    model.load_state_dict(state_dict, strict=False)


def load_model(
    path: str | os.PathLike[str], arch: str | None = None, num_classes: int | None = None
) -> nn.Module:
    """Build the checkpoint's architecture, load its weights and return it in eval mode."""
    return model_from_payload(read_checkpoint(path), path, arch, num_classes)


def model_from_payload(payload: Mapping[str, Any], path: str | os.PathLike[str], arch: str | None = None,
                       num_classes: int | None = None) -> nn.Module:
    """`load_model` of a checkpoint already read (`path` names it in errors)."""
    state_dict, meta = extract_state_dict(payload)
    arch = _agree(path, "arch", meta["arch"], arch)
    if arch is None:
        raise CheckpointError(
            f"checkpoint {path} does not record its architecture; pass --teacher-arch / arch=... to name it"
        )
    num_classes = _agree(path, "num_classes", meta["num_classes"], num_classes)
    if num_classes is None:
        num_classes = _infer_num_classes(path, arch, state_dict)
    model = build_model(arch, num_classes)
    try:
        load_weights(model, state_dict)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    return model.eval()


def non_finite(model: nn.Module) -> list[str]:
    """Names of the model's floating-point weights and buffers that hold NaN or infinity."""
    return [k for k, v in model.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _torch_load(path: Path) -> Any:
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says what matters
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    # bad files surface as RuntimeError, EOFError, UnpicklingError, KeyError, ... depending on the damage
    except Exception as exc:
        names = _unsafe_globals(path, exc)
        if names:
            raise CheckpointError(_needs_more_than_weights(path, names)) from None
        problem = f"cannot be read, truncated or not a PyTorch file? ({_reason(exc)})"
        raise CheckpointError(f"checkpoint {path}: {problem}") from None


def _unsafe_globals(path: Path, exc: BaseException) -> list[str]:
    """The classes or functions the file needs beyond what weights_only=True allows; [] when it is damaged."""
    if "weights only load failed" not in str(exc).lower():
        return []
    try:  # reads the pickle's opcodes without running them (zip-format files)
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        names = []
    return names or re.findall(r"GLOBAL (\S+) was not an allowed global", str(exc))


def _needs_more_than_weights(path: Path, names: list[str]) -> str:
    """Why a file the safe loader refused is refused, and the one command that converts it."""
    what = ", ".join(names[:_SHOW]) + (f", ... (+{len(names) - _SHOW} more)" if len(names) > _SHOW else "")
    src, dst = repr(str(path)), repr(str(path.with_name(path.stem + ".weights.pt")))
    convert = (
        f"python -c \"import torch; c = torch.load({src}, weights_only=False); "
        "m = c.get('model', c.get('state_dict', c)) if isinstance(c, dict) else c; "
        f"torch.save({{'model': m.state_dict() if hasattr(m, 'state_dict') else m}}, {dst})\""
    )
    return (f"checkpoint {path} holds Python objects beyond tensors ({what}); "
            "mixkd loads only weights, because unpickling other objects can run code. "
            f"If you trust the file, convert it once: {convert}")


def _reason(exc: BaseException) -> str:
    """The exception's type and first sentence: torch's messages go on for paragraphs."""
    text = str(exc).strip()
    text = text.split("WeightsUnpickler error:", 1)[-1].strip()  # the part of torch's safe-loader text that says why
    first = text.split("\n", 1)[0].split(". ", 1)[0]
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def _strip_wrappers(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        name = key
        while name.startswith(_WRAPPER_PREFIXES):
            name = name.split(".", 1)[1]
        if name in out:
            raise CheckpointError(
                f"state_dict key {key!r} collides with another once wrapper prefixes are removed"
            )
        out[name] = value
    return out


def _listing(what: str, items: list[str]) -> str:
    more = f", ... (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return f"{len(items)} {what} ({', '.join(items[:_SHOW])}{more})"


def _agree(path: str | os.PathLike[str], what: str, recorded: Any, given: Any) -> Any:
    """The recorded value, or the given one; both present and different is an error."""
    if recorded is not None and given is not None and recorded != given:
        raise CheckpointError(
            f"checkpoint {path} was saved with {what}={recorded!r} but {what}={given!r} was asked for"
        )
    return recorded if recorded is not None else given


def _infer_num_classes(path: str | os.PathLike[str], arch: str, state_dict: Mapping[str, Tensor]) -> int:
    """Read the class count off the classifier weight; the probe model on 'meta' costs no memory."""
    with torch.device("meta"):
        probe = build_model(arch, 1)
    key = f"{getattr(probe, 'head_name', 'fc')}.weight"
    weight = state_dict.get(key)
    if weight is None or weight.ndim != 2:
        raise CheckpointError(
            f"checkpoint {path}: cannot infer num_classes, it has no 2-D {key!r} for arch {arch!r}; "
            "check the arch or pass num_classes=..."
        )
    return int(weight.shape[0])
