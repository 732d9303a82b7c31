"""Hard-concrete gates (Louizos et al. 2018) attached to weights through `parametrize`.

A gate multiplies a weight entry-wise: the effective weight is ``W * z``. In training ``z``
is a stretched, clamped concrete sample; in eval mode it is the deterministic gate.

One noise sample per model forward: the gated layer draws new noise ``u`` at each of its
forwards in training mode (a forward pre-hook added by :func:`add_gate`), so a gated plain
MLP sees a fresh random network at every step. A continuous-depth model calls its field many
times in one forward; it takes the sampling over (:func:`hold_gates`: one draw per solve,
reused by every field evaluation, the adjoint's backward solve included).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .masks import parametrizations_of

BETA = 2.0 / 3.0
GAMMA = -0.1
ZETA = 1.1
_EPS = 1e-6

GateLayout = Literal["weight", "input"]


def gate_shape(weight_shape: torch.Size | tuple[int, ...], layout: GateLayout) -> tuple[int, ...]:
    """Shape of the gate tensor for a weight of ``weight_shape`` (..., out, in)."""
    if layout == "weight":
        return tuple(weight_shape)
    if layout == "input":
        return (*weight_shape[:-2], 1, weight_shape[-1])
    raise ValueError(f"gate layout must be 'weight' or 'input', got {layout!r}")


class HardConcrete(nn.Module):
    """A parametrization ``W -> W * z`` with hard-concrete gates ``z``.

    Args:
        weight_shape: shape of the gated weight (..., out, in).
        layout: ``"weight"`` (one gate per weight, default) or ``"input"`` (one gate per
            input neuron, broadcast over rows).
        init_drop: initial drop probability ``p``; ``log_alpha ~ N(log((1-p)/p), 0.01)``.
    """

    def __init__(
        self, weight_shape: torch.Size | tuple[int, ...], layout: GateLayout = "weight",
        init_drop: float = 0.5,
    ) -> None:
        super().__init__()
        if not 0.0 < init_drop < 1.0:
            raise ValueError(f"init_drop must be in (0, 1), got {init_drop}")
        self.layout = layout
        shape = gate_shape(weight_shape, layout)
        mean = math.log((1.0 - init_drop) / init_drop)
        self.log_alpha = nn.Parameter(torch.randn(shape) * 0.01 + mean)
        self._u: Tensor | None = None
        self.held = False  # True: a containing model (an ODE solver) draws the noise, not the layer

    def resample(self) -> None:
        """Draw fresh uniform noise; training-mode accesses reuse it until the next draw."""
        self._u = torch.rand_like(self.log_alpha).clamp(_EPS, 1.0 - _EPS)

    def sample(self, u: Tensor | None = None) -> Tensor:
        """The training gate ``z`` for noise ``u`` (broadcast against the gate's shape);
        default: the current noise, drawn if there is none yet."""
        if u is None:
            if self._u is None or self._u.shape != self.log_alpha.shape:
                self.resample()
            u = self._u
        assert u is not None
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / BETA)
        return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def deterministic(self) -> Tensor:
        """The eval gate ``clamp(sigmoid(log_alpha) (zeta - gamma) + gamma, 0, 1)``."""
        return (torch.sigmoid(self.log_alpha) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def prob_nonzero(self) -> Tensor:
        """``P(z != 0) = sigmoid(log_alpha - beta log(-gamma / zeta))`` (differentiable)."""
        return torch.sigmoid(self.log_alpha - BETA * math.log(-GAMMA / ZETA))

    def gate(self) -> Tensor:
        return self.sample() if self.training else self.deterministic()

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.gate()


def gate_of(module: nn.Module, name: str = "weight") -> HardConcrete | None:
    """The hard-concrete gate on ``module.<name>``, or None."""
    if not parametrize.is_parametrized(module, name):
        return None
    for p in parametrizations_of(module)[name]:
        if isinstance(p, HardConcrete):
            return p
    return None


def add_gate(
    module: nn.Module, name: str = "weight", layout: GateLayout = "weight", init_drop: float = 0.5
) -> HardConcrete:
    """Attach a gate to ``module.<name>`` (idempotent: an existing gate is returned)."""
    existing = gate_of(module, name)
    if existing is not None:
        if existing.layout != layout:
            raise ValueError(
                f"{name} already has a {existing.layout!r} gate; cannot add a {layout!r} one"
            )
        return existing
    weight = getattr(module, name)
    gate = HardConcrete(weight.shape, layout, init_drop).to(weight.device)
    parametrize.register_parametrization(module, name, gate)
    if not getattr(module, "_resamples_gates", False):
        module.register_forward_pre_hook(_resample_on_forward)
        setattr(module, "_resamples_gates", True)  # noqa: B010 - a flag torch's Module typing does not declare
    return gate


def _resample_on_forward(module: nn.Module, args) -> None:
    """Forward pre-hook of a gated layer: a new noise sample per forward in training mode."""
    for plist in getattr(module, "parametrizations", {}).values():
        for p in plist:
            if isinstance(p, HardConcrete) and p.training and not p.held:
                p.resample()


def gates(model: nn.Module) -> Iterator[HardConcrete]:
    """All hard-concrete gates in ``model``."""
    return (m for m in model.modules() if isinstance(m, HardConcrete))


def resample_gates(model: nn.Module) -> None:
    """Draw one new gate sample for every gate of ``model``."""
    for g in gates(model):
        g.resample()


def hold_gates(model: nn.Module) -> None:
    """Take sampling over from ``model``'s gated layers and draw one sample (once per forward of
    ``model``): every layer call until the next :func:`hold_gates` reuses it."""
    for g in gates(model):
        g.held = True
        g.resample()
