"""LassoNet for NODEs: a linear skip with a hierarchy constraint, solved by Hier-Prox.

``mode="inner"``: the skip sits inside the vector field, ``dX/dt = S X + f(X)``.
``mode="outer"``: the skip sits outside the solver, ``X_hat(t) = S x(t0) + ODESolve(f, x(t0))(t)``.
The paper's Eq. 8 is ambiguous about the outer form; this is the reading sparsedyn uses.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..nn.fields import LayerChain, SkipField
from ..nn.masks import freeze_pattern, raw_parameter
from ..nn.ode import ContinuousDepth, replace_field, vector_field
from .base import Method, StepSize, check_choice, check_nonnegative, step_of
from .hier_prox import hier_prox


class LassoNet(Method):
    """``lam * sum_k ||S[:, k]||_2`` with ``||W1[:, k]||_inf <= M ||S[:, k]||_2``.

    Optimised by a gradient step then Hier-Prox (threshold ``lr * lam``) on every feature, so
    ``penalty`` returns the detached value for logging only.
    """

    name = "lassonet"
    strength = "lam"
    stackable_params = ("lam",)

    def __init__(self, lam: float = 1e-3, M: float = 10.0, mode: str = "inner") -> None:
        self.lam = check_nonnegative("lam", lam)
        self.M = check_nonnegative("M", M)
        self.mode = check_choice("mode", mode, ("inner", "outer"))

    def prepare(self, model: nn.Module) -> nn.Module:
        field = vector_field(model)
        if not (isinstance(field, nn.Module) and isinstance(field, LayerChain)):
            raise TypeError(f"LassoNet needs a layer-chain field (an MLP, or a NeuralODE/SecondOrderODE of "
                            f"one); {type(field).__name__} is not one")
        device = next(field.parameters()).device
        if self.mode == "inner":
            if isinstance(field, SkipField):
                return model
            return replace_field(model, SkipField(field).to(device))
        if not isinstance(model, ContinuousDepth):
            raise TypeError("outer LassoNet needs a continuous-depth model (NeuralODE/SecondOrderODE)")
        if model.outer_skip is None:
            n = model.n_state
            model.outer_skip = nn.Linear(n, n, bias=False).to(device)
        return model

    def _skip_and_first(self, model: nn.Module) -> tuple[Any, Any]:
        field = vector_field(model)
        if self.mode == "inner":
            skip = field.skip if isinstance(field, SkipField) else None
        else:
            skip = model.outer_skip if isinstance(model, ContinuousDepth) else None
        if skip is None:
            raise RuntimeError(f"LassoNet ({self.mode}): no skip found; call prepare(model) first")
        # For a SONODE the field reads [x, v]: the hierarchy binds the x columns only.
        return skip, field.chain()[0]

    def finalize(self, model: nn.Module) -> None:
        skip, first = self._skip_and_first(model)
        freeze_pattern(skip, "weight")
        freeze_pattern(first, "weight")

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        """The skip and first layer form the ``"prox"`` group: heavy-ball SGD at the trainer's ``prox_lr``."""
        skip, first = self._skip_and_first(model)
        return {"prox": [raw_parameter(skip, "weight"), raw_parameter(first, "weight")]}

    def penalty(self, model: nn.Module) -> Tensor:
        skip, _ = self._skip_and_first(model)
        return (self.lam * skip.weight.norm(dim=0).sum()).detach()

    def after_step(self, model: nn.Module, lr: float, step_size: StepSize | None = None) -> None:
        """Hier-Prox with threshold ``lam`` times each feature's mean optimizer step on the skip column,
        so ``lam`` is on the loss's scale whatever the optimizer and learning rate."""
        skip, first = self._skip_and_first(model)
        s_raw, w_raw = raw_parameter(skip, "weight"), raw_parameter(first, "weight")
        # a per-output field's first layer is (n_out, hidden, n_in): input k's column spans every network
        w_cols = w_raw.view(-1, w_raw.shape[-1])
        n = s_raw.shape[1]
        with torch.no_grad():
            threshold = step_of(step_size, lr, s_raw).mean(dim=0) * self.lam  # (n_in,)
            new_s, new_w = hier_prox(s_raw, w_cols[:, :n], threshold, self.M)
            s_raw.copy_(new_s)
            w_cols[:, :n].copy_(new_w)
