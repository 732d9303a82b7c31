"""L0 regularization with hard-concrete gates (Louizos et al. 2018)."""

from __future__ import annotations

from torch import Tensor, nn

from ..nn.gates import GateLayout, gates
from ..nn.ode import vector_field
from .base import check_nonnegative, zero_like_model
from .gated import GatedMethod


class L0(GatedMethod):
    """``lam * sum P(z != 0)``: the expected number of open gates of the vector field."""

    name = "l0"
    strength = "lam"
    stackable_params = ("lam",)

    def __init__(self, lam: float = 1e-3, layout: GateLayout = "weight", init_drop: float = 0.5) -> None:
        super().__init__(layout, init_drop)
        self.lam = check_nonnegative("lam", lam)

    def penalty(self, model: nn.Module) -> Tensor:
        total = zero_like_model(model)
        for g in gates(vector_field(model)):
            total = total + g.prob_nonzero().sum()
        return self.lam * total
