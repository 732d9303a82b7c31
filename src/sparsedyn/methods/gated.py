"""What the gate-based methods (L0, PathReg) share: hard-concrete gates on every layer of the vector
field's chain, trained in their own parameter group, folded into masks when fine-tuning begins."""

from __future__ import annotations

from torch import nn

from ..nn.fields import LayerChain
from ..nn.gates import GateLayout, add_gate, gates
from ..nn.masks import freeze_pattern
from ..nn.ode import vector_field
from .base import Method, ParamError, check_choice


def gate_field(model: nn.Module, layout: GateLayout, init_drop: float) -> None:
    """Gate every layer of the model's vector-field chain (idempotent)."""
    field = vector_field(model)
    if not isinstance(field, LayerChain):
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


class GatedMethod(Method):
    """Base of the methods that gate the vector field: ``layout`` ("weight": one gate per weight,
    "input": one per input column) and ``init_drop`` (initial probability that a gate is closed) are
    validated here; subclasses add their penalty."""

    def __init__(self, layout: GateLayout = "weight", init_drop: float = 0.5) -> None:
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
