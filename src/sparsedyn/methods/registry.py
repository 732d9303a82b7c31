"""Methods by name, for configs and the command line."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from .base import Method
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


def build_method(spec: Mapping[str, Any]) -> Method:
    """Build a method from ``{"name": ..., **hyper_parameters}``; errors name the bad key."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in METHODS:
        raise ValueError(f"name: unknown method {name!r}; choose from {sorted(METHODS)}")
    cls = METHODS[name]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"{unknown[0]}: not a parameter of {name}; allowed: {sorted(allowed)}")
    return cls(**spec)
