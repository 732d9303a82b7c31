"""L1 penalty on every prunable weight (biases excluded)."""

from __future__ import annotations

from torch import Tensor, nn

from ..nn.prunable import prunable_weights
from .base import Method, check_choice, check_nonnegative, zero_like_model


class L1(Method):
    """``lam * sum |W_eff|`` over the prunable weights of the model.

    ``include="nonrecurrent"`` skips the recurrent matrices ``W_hh`` (the [MODULI] language
    model: moduli on ``W_hh``, L1 on every other weight).
    """

    name = "l1"
    strength = "lam"
    stackable_params = ("lam",)

    def __init__(self, lam: float = 1e-3, include: str = "all") -> None:
        self.lam = check_nonnegative("lam", lam)
        self.include = check_choice("include", include, ("all", "nonrecurrent"))

    def penalty(self, model: nn.Module) -> Tensor:
        total = zero_like_model(model)
        for _, module, attr in prunable_weights(model):
            if self.include == "all" or attr != "weight_hh":
                total = total + getattr(module, attr).abs().sum()
        return self.lam * total
