"""PathReg (Aliee et al. 2022, Eq. 9-12): penalise the expected number of input-output paths."""

from __future__ import annotations

from torch import Tensor, nn

from ..nn.gates import GateLayout, gate_of
from ..nn.masks import raw_parameter
from ..nn.ode import vector_field
from .base import check_choice, check_nonnegative
from .cnode import abs_weight, path_norm
from .gated import GatedMethod


def _prob_nonzero(layer: nn.Module) -> Tensor:
    gate = gate_of(layer, "weight")
    if gate is None:
        raise RuntimeError("PathReg needs gated layers: call prepare(model) first")
    return gate.prob_nonzero().expand(tuple(raw_parameter(layer, "weight").shape))


def expected_paths(model: nn.Module) -> Tensor:
    """``A_z = G_{L+1} @ ... @ G_1`` with ``G_l = P(z_l != 0)``: expected open paths (out, in)."""
    return vector_field(model).chain_product(_prob_nonzero)


class PathReg(GatedMethod):
    """``lambda_paths * ||A_z|| + lambda_weights * || |W z| ... ||`` (C-NODE on gated weights).

    Uses the gate probabilities (deterministic, differentiable), one gate per weight by
    default; ``layout="input"`` reproduces the reference's rank-1 per-input gates.
    """

    name = "pathreg"
    strength = "lambda_paths"
    stackable_params = ("lambda_paths", "lambda_weights")

    def __init__(
        self, lambda_paths: float = 1e-3, lambda_weights: float = 0.0, layout: GateLayout = "weight",
        init_drop: float = 0.5, reduction: str = "sum",
    ) -> None:
        super().__init__(layout, init_drop)
        self.lambda_paths = check_nonnegative("lambda_paths", lambda_paths)
        self.lambda_weights = check_nonnegative("lambda_weights", lambda_weights)
        self.reduction = check_choice("reduction", reduction, ("sum", "mean"))

    def penalty(self, model: nn.Module) -> Tensor:
        total = self.lambda_paths * path_norm(model, _prob_nonzero, self.reduction)
        if self.lambda_weights > 0:
            total = total + self.lambda_weights * path_norm(model, abs_weight, self.reduction)
        return total
