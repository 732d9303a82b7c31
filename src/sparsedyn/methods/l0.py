"""L0 regularization with hard-concrete gates (Louizos et al. 2018)."""

from __future__ import annotations

from torch import Tensor, nn

from ..nn.gates import GateLayout, add_gate, gates
from ..nn.masks import freeze_pattern
from ..nn.ode import vector_field
from .base import Method, ParamError, check_choice, check_nonnegative, zero_like_model


def gate_field(model: nn.Module, layout: GateLayout, init_drop: float) -> None:
    """Gate every layer of the model's vector-field chain (idempotent)."""
    field = vector_field(model)
    if not hasattr(field, "chain"):
        raise TypeError(f"{type(field).__name__} has no layer chain to gate")
    for layer in field.chain():
        add_gate(layer, "weight", layout, init_drop)


def freeze_gates(model: nn.Module) -> None:
    """Fold each gated layer's deterministic gate into its weight and keep its open gates as a mask."""
    for layer in vector_field(model).chain():
        freeze_pattern(layer, "weight")


def gate_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The vector field's gate parameters, as the ``"gates"`` group (trained at the trainer's ``gate_lr``)."""
    return {"gates": [p for g in gates(vector_field(model)) for p in g.parameters()]}


class L0(Method):
    """``lam * sum P(z != 0)``: the expected number of open gates of the vector field."""

    name = "l0"
    strength = "lam"
    stackable_params = ("lam",)

    def __init__(self, lam: float = 1e-3, layout: GateLayout = "weight", init_drop: float = 0.5) -> None:
        self.lam = check_nonnegative("lam", lam)
        self.layout = check_choice("layout", layout, ("weight", "input"))
        if not 0.0 < float(init_drop) < 1.0:
            raise ParamError("init_drop", f"init_drop must be in (0, 1), got {init_drop}")
        self.init_drop = float(init_drop)

    def prepare(self, model: nn.Module) -> nn.Module:
        gate_field(model, self.layout, self.init_drop)
        return model

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        return gate_parameters(model)

    def finalize(self, model: nn.Module) -> None:
        freeze_gates(model)

    def penalty(self, model: nn.Module) -> Tensor:
        total = zero_like_model(model)
        for g in gates(vector_field(model)):
            total = total + g.prob_nonzero().sum()
        return self.lam * total
