"""C-NODE (Aliee et al. 2021): the l1 norm of the product of absolute weight matrices."""

from __future__ import annotations

from torch import Tensor, nn

from ..nn.fields import LayerTransform
from ..nn.ode import vector_field
from .base import Method, check_choice, check_nonnegative, reduce_matrix


def abs_weight(layer: nn.Module) -> Tensor:
    """A layer's effective weight (after its gates and masks), elementwise absolute."""
    weight = layer.weight
    if not isinstance(weight, Tensor):
        raise TypeError(f"{type(layer).__name__}.weight is not a tensor")
    return weight.abs()


def path_weight_matrix(model: nn.Module, signed: bool = False) -> Tensor:
    """``|W_L| @ ... @ |W_1|`` of the field chain on effective weights (signed if asked)."""
    field = vector_field(model)
    if signed:
        return field.chain_product(lambda layer: layer.weight)
    return field.chain_product(abs_weight)


def path_norm(model: nn.Module, transform: LayerTransform, reduction: str) -> Tensor:
    """``reduce_matrix(chain_product(transform), reduction)`` of the model's field for a transform without
    negative entries (gate probabilities, absolute weights), where ``||A||_{1,1}`` is the sum of A's entries:
    formed by matrix-vector products (``LayerChain.chain_entry_sum``), never the (n_out, n_in) product (at 529
    variables and 64-64 hidden units that product and its backward were ~3 ms of a PathReg step). Equal to the
    matrix's norm to float rounding (summed in another order)."""
    field = vector_field(model)
    total = field.chain_entry_sum(transform)
    return total if reduction == "sum" else total / (field.n_out * field.n_in)


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
        if self.linear:  # signed: entries may cancel, the norm needs the matrix
            return self.lam * reduce_matrix(path_weight_matrix(model, signed=True), self.reduction)
        return self.lam * path_norm(model, abs_weight, self.reduction)
