"""C-NODE (Aliee et al. 2021): the l1 norm of the product of absolute weight matrices."""

from __future__ import annotations

from torch import Tensor, nn

from ..nn.ode import vector_field
from .base import Method, check_choice, check_nonnegative, reduce_matrix


def path_weight_matrix(model: nn.Module, signed: bool = False) -> Tensor:
    """``|W_L| @ ... @ |W_1|`` of the field chain on effective weights (signed if asked)."""
    field = vector_field(model)
    if signed:
        return field.chain_product(lambda layer: layer.weight)
    return field.chain_product(lambda layer: layer.weight.abs())


class CNODE(Method):
    """``lam * || |W_{L+1}| ... |W_1| ||_{1,1}``; ``linear=True`` uses the signed product."""

    name = "cnode"
    strength = "lam"
    stackable_params = ("lam",)

    def __init__(self, lam: float = 1e-3, linear: bool = False, reduction: str = "sum") -> None:
        self.lam = check_nonnegative("lam", lam)
        self.linear = bool(linear)
        self.reduction = check_choice("reduction", reduction, ("sum", "mean"))

    def penalty(self, model: nn.Module) -> Tensor:
        return self.lam * reduce_matrix(path_weight_matrix(model, self.linear), self.reduction)
