"""The method protocol: every sparsity method is one object with four hooks.

``prepare(model) -> model``  add structure (gates, masks, skips, per-output networks);
``penalty(model) -> Tensor`` the differentiable term added to the task loss;
``after_step(model, lr, step_size)`` proximal steps and projections after each optimizer step
                             (``step_size(p)``: the optimizer's effective per-element step of
                             parameter ``p``, e.g. Adam's ``lr / (sqrt(v_hat) + eps)``);
``on_epoch_end(model, epoch)`` schedules (``epoch`` = number of completed epochs, from 1);
``finalize(model)``          freeze the sparsity pattern before fine-tuning (gates become masks).

The trainer knows methods only through these hooks; :class:`Compose` runs several in order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


class ParamError(ValueError):
    """A bad hyper-parameter value; ``param`` names it (configs report ``methods.<i>.<param>``)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def check_nonnegative(name: str, value: float) -> float:
    """Return ``value`` as float, or raise a :class:`ParamError` naming ``name``.

    Infinity is refused as NaN is: an infinite strength makes every loss infinite (or NaN where a
    weight is zero), and training would fail steps later with a message that does not name it."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ParamError(name, f"{name} must be a number >= 0, got {value!r}") from None
    if not (value >= 0.0 and math.isfinite(value)):  # also rejects NaN
        raise ParamError(name, f"{name} must be a finite number >= 0, got {value}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = tuple(choices)
    if value not in choices:
        raise ParamError(name, f"{name} must be one of {choices}, got {value!r}")
    return value


def reduce_matrix(m: Tensor, reduction: str) -> Tensor:
    """``||m||_{1,1}`` (``"sum"``, the papers' definition) or its mean (reference code)."""
    return m.abs().sum() if reduction == "sum" else m.abs().mean()


def zero_like_model(model: nn.Module) -> Tensor:
    p = next(model.parameters(), None)
    return torch.zeros((), device=p.device if p is not None else None)


StepSize = Callable[[Tensor], Tensor]  # parameter -> the optimizer's effective step, per element


def step_of(step_size: StepSize | None, lr: float, p: Tensor) -> Tensor:
    """``step_size(p)``, or the plain ``lr`` everywhere when no optimizer step is known (e.g. SGD)."""
    return step_size(p) if step_size is not None else torch.full_like(p, float(lr))


class Method:
    """Base class: every hook is a no-op. Subclasses override what they need."""

    name: ClassVar[str] = "method"
    # Declared once per method, read by paths, relative strengths and stacked sweeps (no probing):
    strength: ClassVar[str | None] = None  # the parameter a path raises (None: the method has none)
    penalty_strength: ClassVar[bool] = True  # it weighs a penalty, so a relative strength rescales it
    stackable_params: ClassVar[tuple[str, ...]] = ()  # numbers that change no shape: stacked members may differ

    @property
    def vanilla(self) -> bool:
        """Whether this is no method at all (no penalty, no step hook, no random draws): a lockstep job runs
        such a member's steps without switching its random state in. False unless a subclass knows better."""
        return False

    @property
    def strength_value(self) -> float:
        """The current value of the declared ``strength`` parameter."""
        if self.strength is None:
            raise ValueError(f"{type(self).__name__} declares no strength")
        return float(vars(self)[self.strength])

    @strength_value.setter
    def strength_value(self, value: float) -> None:
        if self.strength is None:
            raise ValueError(f"{type(self).__name__} declares no strength")
        vars(self)[self.strength] = check_nonnegative(self.strength, value)

    def prepare(self, model: nn.Module) -> nn.Module:
        return model

    def penalty(self, model: nn.Module) -> Tensor:
        return zero_like_model(model)

    def after_step(self, model: nn.Module, lr: float, step_size: StepSize | None = None) -> None:
        return None

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        return None

    def finalize(self, model: nn.Module) -> None:
        """Freeze the sparsity pattern for fine-tuning: afterwards the model has no random parts and its
        exact zeros stay zero (the trainer then trains the weights on the task loss alone)."""
        return None

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        """Parameters this method adds that need their own optimizer settings, by role.

        The trainer gives role ``"gates"`` the trainer's ``gate_lr``; everything else trains at ``lr``.
        """
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Compose(Method):
    """Several methods used as one: hooks run in the given order, penalties add up."""

    name = "compose"

    def __init__(self, methods: Iterable[Method]) -> None:
        self.methods = list(methods)

    @property
    def vanilla(self) -> bool:
        return not self.methods

    def prepare(self, model: nn.Module) -> nn.Module:
        for m in self.methods:
            model = m.prepare(model)
        return model

    def penalty(self, model: nn.Module) -> Tensor:
        total = zero_like_model(model)
        for m in self.methods:
            total = total + m.penalty(model)
        return total

    def after_step(self, model: nn.Module, lr: float, step_size: StepSize | None = None) -> None:
        for m in self.methods:
            m.after_step(model, lr, step_size)

    def finalize(self, model: nn.Module) -> None:
        for m in self.methods:
            m.finalize(model)

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        for m in self.methods:
            m.on_epoch_end(model, epoch)

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        groups: dict[str, list[nn.Parameter]] = {}
        for m in self.methods:
            for role, params in m.parameter_groups(model).items():
                groups.setdefault(role, []).extend(params)
        return groups
