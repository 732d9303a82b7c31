"""Methods by name, for configs and the command line."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .base import Method, ParamError
from .cnode import CNODE
from .group_lasso import GroupLasso
from .l0 import L0
from .l1 import L1
from .lassonet import LassoNet
from .magnitude import MagnitudePruning
from .moduli import Moduli
from .pathreg import PathReg

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (L1, L0, PathReg, CNODE, GroupLasso, LassoNet, MagnitudePruning, Moduli)
}


def _typed(cls: type[Method], param: str, value: Any) -> Any:
    """``value`` checked against the constructor's annotation of ``param`` (bools strictly: "False" is not)."""
    hint = typing.get_type_hints(cls.__init__).get(param)
    if hint is None:
        return value
    if hint is bool and not isinstance(value, bool):
        raise ParamError(param, f"{param} must be true or false, got {value!r}")
    try:
        return TypeAdapter(hint).validate_python(value)
    except ValidationError as e:
        raise ParamError(param, f"{param}: {e.errors()[0]['msg'].lower()}, got {value!r}") from None


def parameters_of(name: str | None) -> set[str]:
    """The hyper-parameters method ``name`` takes (empty for an unknown name)."""
    cls = METHODS.get(name) if name is not None else None
    return set(inspect.signature(cls.__init__).parameters) - {"self"} if cls is not None else set()


def build_method(spec: Mapping[str, Any]) -> Method:
    """Build a method from ``{"name": ..., **hyper_parameters}``.

    Errors are :class:`~sparsedyn.methods.base.ParamError` naming the bad key (``name`` for an
    unknown method), so a config can report ``methods.<i>.<key>``.
    """
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in METHODS:
        raise ParamError("name", f"unknown method {name!r}; choose from {sorted(METHODS)}")
    cls = METHODS[name]
    allowed = parameters_of(name)
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ParamError(unknown[0], f"not a parameter of {name}; allowed: {sorted(allowed)}")
    return cls(**{k: _typed(cls, k, v) for k, v in spec.items()})
