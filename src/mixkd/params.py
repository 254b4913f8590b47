"""How a KD method declares its parameters, once: keyword parameters with a type, a default and a range.

A method's parameters are the keyword-only arguments of a callable: a feature term's `__init__`, or the
`Params` dataclass a distiller declares. The annotation gives the type (`Literal[...]` for a choice) and,
through `Annotated[..., Range(...)]` or the aliases below, the allowed range; the default is the published
one. `mixkd.config` derives each method's typed config section from this declaration, so the defaults,
types and ranges of a method live in its own file and nowhere else.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass
from typing import Annotated, Any


@dataclass(frozen=True)
class Range:
    """Allowed values lo <= v <= hi (lo < v with open_lo); None = unbounded; `why` is added to the error."""

    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    why: str = ""


NonNegative = Annotated[float, Range(0.0)]
Positive = Annotated[float, Range(0.0, open_lo=True)]
Share = Annotated[float, Range(0.0, 1.0)]  # a share in [0, 1]
Count = Annotated[int, Range(1)]  # at least 1
NonNegativeInt = Annotated[int, Range(0)]
Epochs = NonNegativeInt


@dataclass(frozen=True)
class Param:
    """One declared parameter: its type (int, float, str, bool or a Literal), published default and range."""

    name: str
    type: Any
    default: Any
    range: Range | None = None


def declared(obj: Any, skip: typing.Collection[str] = ()) -> dict[str, Param]:
    """{name: Param} of `obj`'s keyword parameters: the fields of a dataclass, or a function's keyword-only
    arguments (those in `skip`, such as inputs a distiller supplies, left out)."""
    if dataclasses.is_dataclass(obj):
        hints = typing.get_type_hints(obj, include_extras=True)
        items = [(f.name, hints[f.name], f.default) for f in dataclasses.fields(obj)]
    else:
        hints = typing.get_type_hints(obj, include_extras=True)
        items = [(p.name, hints.get(p.name, Any), p.default) for p in inspect.signature(obj).parameters.values()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY]
    out = {}
    for name, hint, default in items:
        if name in skip:
            continue
        if default is inspect.Parameter.empty or default is dataclasses.MISSING:
            raise TypeError(f"{getattr(obj, '__qualname__', obj)}: parameter {name!r} needs a published default")
        tp, rng = hint, None
        if typing.get_origin(hint) is Annotated:
            tp, *extras = typing.get_args(hint)
            rng = next((e for e in extras if isinstance(e, Range)), None)
        out[name] = Param(name, tp, default, rng)
    return out


def defaults(params: dict[str, Param]) -> dict[str, Any]:
    """{name: published default}."""
    return {name: p.default for name, p in params.items()}
