"""Binary weight masks through ``torch.nn.utils.parametrize``.

The effective weight is ``original * mask``. Masked entries therefore get zero gradient,
the original parameter object never changes (an existing optimizer keeps working), an
all-ones mask is a no-op, and ``state_dict`` round-trips (the mask is a buffer).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize


class Mask(nn.Module):
    """A parametrization ``W -> W * mask`` with a 0/1 buffer ``mask``."""

    mask: Tensor

    def __init__(self, shape: torch.Size | tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones(shape))

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.mask


def mask_of(module: nn.Module, name: str = "weight") -> Mask | None:
    """The mask on ``module.<name>``, or None."""
    if not parametrize.is_parametrized(module, name):
        return None
    for p in parametrizations_of(module)[name]:
        if isinstance(p, Mask):
            return p
    return None


def add_mask(module: nn.Module, name: str = "weight") -> Mask:
    """Attach an all-ones mask to ``module.<name>`` (idempotent)."""
    existing = mask_of(module, name)
    if existing is not None:
        return existing
    weight = getattr(module, name)
    mask = Mask(weight.shape).to(weight.device)
    parametrize.register_parametrization(module, name, mask)
    return mask


def raw_parameter(module: nn.Module, name: str = "weight") -> nn.Parameter:
    """The trainable tensor behind ``module.<name>`` (the original if parametrized)."""
    if parametrize.is_parametrized(module, name):
        return parametrizations_of(module)[name].original
    return getattr(module, name)


def parametrizations_of(module: nn.Module) -> Any:
    """``module.parametrizations`` (a ModuleDict torch adds at run time; its type is not declared)."""
    return module.parametrizations


def squash(model: nn.Module) -> nn.Module:
    """Make every parametrization permanent: weights become plain effective parameters.

    Gates are evaluated deterministically (eval mode) before removal.
    """
    was_training = model.training
    model.eval()
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for name in list(parametrizations_of(module).keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    model.train(was_training)
    return model


def freeze_pattern(module: nn.Module, name: str = "weight") -> Mask:
    """Make ``module.<name>``'s current effective weight (in eval mode: deterministic gates, masks
    applied) its raw weight, and mask its exact zeros: every other parametrization (gates) is removed.

    Used before fine-tuning: the function is unchanged, the model has no random parts left, and
    pruned entries stay exactly zero under any optimizer.
    """
    was_training = module.training
    module.eval()
    with torch.no_grad():
        effective = getattr(module, name).detach().clone()
    if parametrize.is_parametrized(module, name):
        parametrize.remove_parametrizations(module, name, leave_parametrized=False)
    with torch.no_grad():
        getattr(module, name).copy_(effective)
    mask = add_mask(module, name)
    mask.mask.copy_((effective != 0).to(mask.mask.dtype))
    module.train(was_training)
    return mask
