"""GroupLasso for NODEs (Bellot et al. 2022): one network per output, input-column groups."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..nn.fields import MLP, GroupedMLP
from ..nn.masks import freeze_pattern, raw_parameter
from ..nn.ode import replace_field, vector_field
from .base import Method, StepSize, check_nonnegative, step_of


def group_soft_threshold(w: Tensor, threshold: float | Tensor, dim: int) -> Tensor:
    """``w * max(0, 1 - threshold / ||w||_2)`` with the norm taken over ``dim`` (``threshold`` a number or
    a tensor broadcasting against the norms, i.e. ``w``'s shape with ``dim`` of size 1)."""
    norm = w.norm(dim=dim, keepdim=True)
    scale = torch.clamp(1.0 - threshold / norm.clamp_min(1e-30), min=0.0)
    return w * scale


class GroupLasso(Method):
    """``lam * sum_i sum_k ||W1_i[:, k]||_2`` on per-output networks.

    ``prepare`` swaps an MLP field for a :class:`GroupedMLP` with ``hidden`` units per
    output network (default: the MLP's own hidden sizes). With ``proximal=True`` (default)
    a group soft-threshold after each step makes groups exactly zero, and ``penalty``
    returns the (detached) value for logging only.
    """

    name = "group_lasso"
    strength = "lam"
    stackable_params = ("lam",)

    def __init__(self, lam: float = 1e-3, hidden: tuple[int, ...] | None = None, proximal: bool = True) -> None:
        self.lam = check_nonnegative("lam", lam)
        self.hidden = tuple(hidden) if hidden is not None else None
        self.proximal = bool(proximal)

    def prepare(self, model: nn.Module) -> nn.Module:
        field = vector_field(model)
        if isinstance(field, GroupedMLP):
            return model
        if not isinstance(field, MLP):
            raise TypeError(f"GroupLasso needs an MLP field to split per output, got {type(field).__name__}")
        grouped = GroupedMLP(field.n_in, field.n_out, self.hidden or field.hidden, field.activation_name)
        return replace_field(model, grouped.to(next(field.parameters()).device))

    @staticmethod
    def _first_weight(model: nn.Module) -> tuple[nn.Module, Any]:
        field = vector_field(model)
        if not isinstance(field, GroupedMLP):
            raise RuntimeError("GroupLasso needs a GroupedMLP field: call prepare(model) first")
        return field.layers[0], field.layers[0].weight  # (n_out, hidden, n_in)

    def penalty(self, model: nn.Module) -> Tensor:
        _, w = self._first_weight(model)
        value = self.lam * w.norm(dim=1).sum()
        return value.detach() if self.proximal else value

    def after_step(self, model: nn.Module, lr: float, step_size: StepSize | None = None) -> None:
        """Group soft-threshold by ``lam`` times each group's mean optimizer step: a proximal gradient
        step in the optimizer's own metric, so ``lam`` is on the loss's scale whatever the learning rate."""
        if not self.proximal or self.lam == 0:
            return
        layer, _ = self._first_weight(model)
        raw = raw_parameter(layer, "weight")
        with torch.no_grad():
            step = step_of(step_size, lr, raw).mean(dim=1, keepdim=True)
            raw.copy_(group_soft_threshold(raw, step * self.lam, dim=1))

    def finalize(self, model: nn.Module) -> None:
        freeze_pattern(self._first_weight(model)[0], "weight")
