"""Continuous-depth models: a first-order neural ODE and a second-order one (SONODE).

Both draw **one** gate sample per forward (:func:`~sparsedyn.nn.gates.hold_gates`) and reuse
it for every vector-field evaluation of the solve, the adjoint's backward solve included
(``parametrize.cached`` computes each effective weight once per forward), so the field is a
fixed function inside one solve and adaptive step control stays valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torchdiffeq import odeint, odeint_adjoint

from .fixed_grid import FIXED_GRID_SOLVERS, solve_fixed_grid
from .fused_rk4 import can_fuse, fused_rk4_solve
from .gates import hold_gates

SOLVERS = ("dopri5", "dopri8", "bosh3", "adaptive_heun", "rk4", "euler", "midpoint")

Intervention = Mapping[int, float]


def _intervention_mask(n: int, intervention: Intervention | None, like: Tensor) -> Tensor | None:
    if not intervention:
        return None
    keep = torch.ones(n, dtype=like.dtype, device=like.device)
    for k in intervention:
        if not 0 <= int(k) < n:
            raise ValueError(f"intervention on variable {k}, but the state has {n} variables")
        keep[int(k)] = 0.0
    return keep


def _apply_intervention(x0: Tensor, intervention: Intervention | None) -> Tensor:
    if not intervention:
        return x0
    x0 = x0.clone()
    for k, c in intervention.items():
        x0[..., int(k)] = float(c)
    return x0


class ContinuousDepth(nn.Module):
    """Base of the continuous-depth models (NeuralODE, SecondOrderODE): a vector ``field``, an optional
    ``outer_skip`` (``S x0`` added to every predicted state, set by outer LassoNet), the shared solver
    options and the one-sample-per-forward rule. Methods and read-outs test ``isinstance`` against this
    class instead of probing attributes."""

    field: Any  # a vector field module (MLP, GroupedMLP, SkipField, ...): read through its duck-typed API
    outer_skip: nn.Linear | None

    def __init__(
        self, solver: str = "dopri5", rtol: float = 1e-3, atol: float = 1e-4,
        step_size: float | None = None, adjoint: bool = False, fixed_grid_loop: bool = True,
        native_solve: bool = True,
    ) -> None:
        super().__init__()
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose from {SOLVERS}")
        if not (_positive_finite(rtol) and _positive_finite(atol)):
            raise ValueError(f"rtol and atol must be finite numbers > 0, got rtol={rtol}, atol={atol}")
        if step_size is not None and not _positive_finite(step_size):  # 0 made the solver loop forever
            raise ValueError(f"step_size must be a finite number > 0 (or None: the observation grid), got {step_size}")
        self.solver, self.rtol, self.atol = solver, rtol, atol
        self.step_size, self.adjoint = step_size, adjoint
        self.outer_skip = None
        self.fixed_grid_loop = fixed_grid_loop
        self.native_solve = native_solve  # the fused rk4 solve in C where it applies (nn.fused_native)

    def __setstate__(self, state: dict) -> None:
        state.setdefault("native_solve", True)  # a model pickled before the native kernel existed
        super().__setstate__(state)

    @property
    def n_state(self) -> int:
        """The number of observed state variables (the field's outputs)."""
        return int(self.field.n_out)

    def _solve(self, func: nn.Module, y0: Tensor, t: Tensor) -> Tensor:
        if t.dim() != 1 or t.numel() < 2:
            raise ValueError(f"t must be a 1-d tensor of >= 2 increasing times, got shape {tuple(t.shape)}")
        weight = next(func.parameters(), None)
        if weight is not None and y0.dtype != weight.dtype:
            raise ValueError(f"the initial state is {y0.dtype} but the model's parameters are {weight.dtype}: "
                             f"convert one to the other (model.to({y0.dtype}) or x0.to({weight.dtype}))")
        if self.training:
            hold_gates(self)
        if self.adjoint:
            # The adjoint needs the raw parameters; gates reuse the one noise sample.
            options = {"step_size": self.step_size} if self.step_size is not None else None
            return odeint_adjoint(func, y0, t, adjoint_params=tuple(self.parameters()), method=self.solver,
                                  rtol=self.rtol, atol=self.atol, options=options)
        with parametrize.cached():
            second = isinstance(func, _SecondOrder)
            if (self.fixed_grid_loop and self.solver == "rk4" and isinstance(func, (_FirstOrder, _SecondOrder))
                    and can_fuse([func.field], y0, self.native_solve, second) and bool((t[1:] > t[:-1]).all())):
                return fused_rk4_solve(func.field, y0, t, self.step_size, func.keep, self.native_solve, second)
            return integrate(func, y0, t, self.solver, self.rtol, self.atol, self.step_size, self.fixed_grid_loop)

    def _add_skip(self, x: Tensor, x0: Tensor, keep: Tensor | None) -> Tensor:
        """``x + S x0`` (outer LassoNet's skip), zero on intervened variables (they stay at their value)."""
        if self.outer_skip is None:
            return x
        s = self.outer_skip(x0)
        return x + (s if keep is None else s * keep)[:, None, :]


def integrate(func: nn.Module, y0: Tensor, t: Tensor, solver: str, rtol: float, atol: float,
              step_size: float | None, fixed_grid_loop: bool = True) -> Tensor:
    """``odeint``'s result; fixed-grid solvers over increasing times run the lean loop of
    :mod:`~sparsedyn.nn.fixed_grid` (same numbers, less overhead) unless ``fixed_grid_loop`` is False."""
    if fixed_grid_loop and solver in FIXED_GRID_SOLVERS and bool((t[1:] > t[:-1]).all()):
        return solve_fixed_grid(func.forward, y0, t, solver, step_size)
    options = {"step_size": step_size} if step_size is not None else None
    return odeint(func, y0, t, method=solver, rtol=rtol, atol=atol, options=options)


class _FirstOrder(nn.Module):
    field: Any

    def __init__(self, field: nn.Module, keep: Tensor | None) -> None:
        super().__init__()
        self.field, self.keep = field, keep

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        dx = self.field(x)
        return dx if self.keep is None else dx * self.keep


def _positive_finite(value: object) -> bool:
    """Whether a solver setting is a finite number > 0 (False for NaN, infinity and non-numbers)."""
    try:
        return bool(math.isfinite(float(value)) and float(value) > 0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


class NeuralODE(ContinuousDepth):
    """``dX/dt = field(X)``; ``forward(x0 (B, n), t (T,)) -> X (B, T, n)``.

    ``outer_skip`` (set by outer LassoNet) adds ``S x0`` to every predicted state.
    ``intervention={k: c}`` solves the intervened system ``do(x_k = c)``.
    """

    def __init__(self, field: nn.Module, **solver_options) -> None:
        super().__init__(**solver_options)
        self.field = field

    def forward(self, x0: Tensor, t: Tensor, intervention: Intervention | None = None) -> Tensor:
        if x0.dim() != 2 or x0.shape[1] != self.n_state:
            raise ValueError(f"x0 must have shape (batch, {self.n_state}), got {tuple(x0.shape)}")
        keep = _intervention_mask(self.n_state, intervention, x0)
        x0 = _apply_intervention(x0, intervention)
        x = self._solve(_FirstOrder(self.field, keep), x0, t).transpose(0, 1)
        return self._add_skip(x, x0, keep)

    def path_weights(self, transform) -> Tensor:
        out = self.field.path_weights(transform)
        return out if self.outer_skip is None else out + transform(self.outer_skip)


class _SecondOrder(nn.Module):
    def __init__(self, field: nn.Module, n: int, keep: Tensor | None) -> None:
        super().__init__()
        self.field, self.n, self.keep = field, n, keep

    def forward(self, t: Tensor, state: Tensor) -> Tensor:
        v = state[..., self.n:]
        a = self.field(state)
        if self.keep is not None:
            a = a * self.keep
        return torch.cat([v, a], dim=-1)


class SecondOrderODE(ContinuousDepth):
    """SONODE (Norcliffe et al. 2020): ``x' = v``, ``v' = field([x, v])``, ``v0 = init_velocity(x0)``.

    ``field`` maps ``2n -> n``; ``init_velocity`` maps ``n -> n`` and is trained end to end.
    Where the data give the initial velocity (e.g. from the first observed frames), pass
    ``forward(..., v0=...)``; with ``init_velocity=None`` it is then required.
    Only positions are returned: ``forward(x0 (B, n), t) -> (B, T, n)``.
    """

    def __init__(self, field: Any, init_velocity: nn.Module | None, **solver_options) -> None:
        super().__init__(**solver_options)
        if field.n_in != 2 * field.n_out:
            raise ValueError(f"a SONODE field maps 2n -> n, got {field.n_in} -> {field.n_out}")
        self.field = field
        self.init_velocity: Any = init_velocity  # None: v0 is given to forward

    def forward(self, x0: Tensor, t: Tensor, intervention: Intervention | None = None,
                v0: Tensor | None = None) -> Tensor:
        n = self.n_state
        if x0.dim() != 2 or x0.shape[1] != n:
            raise ValueError(f"x0 must have shape (batch, {n}), got {tuple(x0.shape)}")
        if v0 is not None and v0.shape != x0.shape:
            raise ValueError(f"v0 must have the shape of x0 {tuple(x0.shape)}, got {tuple(v0.shape)}")
        if v0 is None and self.init_velocity is None:
            raise ValueError("this SONODE has no init_velocity network: pass v0")
        keep = _intervention_mask(n, intervention, x0)
        x0 = _apply_intervention(x0, intervention)
        v0 = self.init_velocity(x0) if v0 is None else v0
        if keep is not None:
            v0 = v0 * keep
        state = self._solve(_SecondOrder(self.field, n, keep), torch.cat([x0, v0], -1), t)
        x = state[..., :n].transpose(0, 1)
        return self._add_skip(x, x0, keep)

    def path_weights(self, transform) -> Tensor:
        out = self.field.path_weights(transform)  # (n, 2n): accelerations on [x, v]
        if self.outer_skip is None:
            return out
        n = self.n_state
        return torch.cat([out[:, :n] + transform(self.outer_skip), out[:, n:]], dim=1)


def vector_field(model: nn.Module) -> Any:
    """The vector field of a continuous-depth model (the model itself if it is a field)."""
    return model.field if isinstance(model, ContinuousDepth) else model


def replace_field(model: nn.Module, new_field: nn.Module) -> nn.Module:
    """Put ``new_field`` in place of ``model``'s field (or return it if model is a field)."""
    if isinstance(model, ContinuousDepth):
        model.field = new_field
        return model
    return new_field
