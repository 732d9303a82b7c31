"""Strengths relative to the data: one grid from "no effect" to "everything pruned" on every task.

A raw strength lambda is on the scale of the penalty's sum (weights, paths, groups), which differs
by orders of magnitude between tasks and model sizes (PathReg's summed penalty starts ~300x the data
loss on Lotka-Volterra; the Krumsiek data's loss is ~1e-3). With ``trainer.strength: relative`` a
configured strength rho means

    lambda = rho * L_data(theta_0) / U(theta_0),

with ``L_data(theta_0)`` the task loss of the freshly initialised model on one training batch (eval
mode: deterministic gates) and ``U(theta_0)`` the method's penalty at strength 1 there. So at
initialisation the penalty is exactly ``rho`` times the data loss: rho = 1e-3 barely acts, rho ~ 1
competes with the data on equal terms. theta_0 is the run's own fresh initialisation (its seed),
also for a warm-started path point, so a path's strengths share one scale. Methods without a
penalty strength (magnitude pruning: its target sparsity is already relative) are left as they are.
"""

from __future__ import annotations

import copy

from torch import nn

from .base import Compose, Method


def strength_param(method: Method) -> str | None:
    """The name of ``method``'s penalty strength attribute (as the method declares it), or None."""
    return method.strength if method.penalty_strength else None


def unit_penalty(method: Method, model: nn.Module) -> float:
    """The method's penalty at strength 1 on ``model`` (its other settings as configured)."""
    param = strength_param(method)
    if param is None:
        raise ValueError(f"{type(method).__name__} has no penalty strength")
    unit = copy.copy(method)
    unit.strength_value = 1.0
    return float(unit.penalty(model).detach())


def calibrate(method: Method, model: nn.Module, data_loss: float) -> dict[str, float]:
    """Turn each relative strength of ``method`` (a Compose too) into the absolute one, in place; return
    ``{"<method>.<param>": absolute}``. A zero penalty at strength 1 cannot be calibrated: an error."""
    if not data_loss > 0:
        raise ValueError(f"relative strengths need a positive initial data loss, got {data_loss}")
    out: dict[str, float] = {}
    for i, m in enumerate(method.methods if isinstance(method, Compose) else [method]):
        param = strength_param(m)
        if param is None:
            continue
        unit = unit_penalty(m, model)
        if not unit > 0:
            raise ValueError(f"methods.{i} ({m.name}): its penalty at strength 1 is {unit} at initialisation; "
                             "a relative strength cannot be calibrated (use trainer.strength: absolute)")
        m.strength_value = m.strength_value * data_loss / unit
        out[f"{m.name}.{param}"] = m.strength_value
    return out
