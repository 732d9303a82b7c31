"""What every trajectory-forecasting task shares: splits of :class:`Trajectories` scored by masked MSE."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..nn.fields import MLP, GroupedMLP
from ..nn.modes import eval_mode
from ..nn.ode import NeuralODE, SecondOrderODE
from ..nn.stacked import stackable, stacked_forecast
from .base import ConfigT, Task
from .trajectories import Trajectories, masked_mse, stacked_masked_mse

STACKED_MSE_BELOW = 8192
"""Predicted values per member below which :meth:`ForecastTask.stacked_loss` computes the members' MSEs in one
computation: there each member's own is bound by per-operation overhead (81 members of 800 values: the lockstep
step 0.88x), while for large members the stacked copies of the data cost more than the calls they save (32 members
of 32,000 values: 1.02-1.08x; ``python bench/lockstep_bookkeeping.py --n200 --force-stacked-mse``)."""


def _aligned(batches: Sequence[Trajectories]) -> bool:
    """Whether ``batches`` share a time grid, a batch size and an intervention (one stacked solve fits)."""
    first = batches[0]
    return all(len(b) == len(first) and b.intervention == first.intervention
               and (b.t is first.t or torch.equal(b.t, first.t)) for b in batches[1:])


class _Constant(nn.Module):
    """A predictor that learns nothing: the initial state held (``value=None``) or one fixed state."""

    def __init__(self, value: Tensor | None = None) -> None:
        super().__init__()
        self.value = value

    def forward(self, x0: Tensor, t: Tensor, intervention=None, **_) -> Tensor:
        state = x0 if self.value is None else self.value.to(x0.dtype).expand_as(x0)
        return state[:, None, :].expand(x0.shape[0], len(t), x0.shape[1])


def vector_field_for(n_in: int, n_out: int, m) -> nn.Module:
    """The vector field a config's ``model`` section ``m`` asks for: a shared MLP, or one network per output
    (:class:`~sparsedyn.nn.fields.GroupedMLP`) with ``model.field: per_output``."""
    if m.field == "per_output":
        return GroupedMLP(n_in, n_out, m.hidden, m.activation)
    return MLP(n_in, n_out, m.hidden, m.activation)


def node_model(n: int, m) -> NeuralODE:
    """A NODE with a field on ``n`` variables (:func:`vector_field_for`), from a config's ``model`` section."""
    return NeuralODE(vector_field_for(n, n, m), solver=m.solver, rtol=m.rtol, atol=m.atol,
                     step_size=m.step_size, adjoint=m.adjoint, fixed_grid_loop=m.fixed_grid_loop,
                     native_solve=m.native_solve)


class ForecastTask(Task[ConfigT]):
    """Base of the forecasting tasks (synthetic systems, motion capture, hematopoiesis).

    A subclass fills ``self.splits`` (``val`` and its test splits, and ``train`` unless it
    overrides :meth:`train_batches` and :meth:`field_inputs`) and sets ``eval_splits``; models
    are called as ``model(x0, t, ...)`` through :meth:`predict`, which a subclass may override
    (e.g. to hand a second-order model its initial velocity).
    ``truth`` is the true dependency graph where one is known, else ``None``.
    """

    monitor = "val_mse"
    has_vector_field = True
    velocity_from_data = False  # a SONODE's initial velocity comes from the data, not a network
    eval_splits: tuple[str, ...] = ("val", "test")
    splits: dict[str, Trajectories]

    @property
    def supports_sonode(self) -> bool:
        """Whether the data is second-order and observed in positions only (default: no)."""
        return False

    @property
    def n_observed(self) -> int:
        raise NotImplementedError

    def build_model(self, m) -> nn.Module:
        """A NODE (``kind: node``) or SONODE (``kind: sonode``) with MLP fields on the observed variables."""
        n = self.n_observed
        solver = dict(solver=m.solver, rtol=m.rtol, atol=m.atol, step_size=m.step_size, adjoint=m.adjoint,
                      fixed_grid_loop=m.fixed_grid_loop, native_solve=m.native_solve)
        if m.kind == "node":
            return node_model(n, m)
        if m.kind != "sonode":
            raise ValueError(f"model.kind: {m.kind!r} has no torch model for task {self.name!r}")
        if not self.supports_sonode:
            raise ValueError(f"model.kind: sonode needs second-order data observed in positions only; this "
                             f"{self.name} task's data are not")
        velocity = None if self.velocity_from_data else MLP(n, n, m.velocity_hidden, m.activation)
        return SecondOrderODE(vector_field_for(2 * n, n, m), velocity, **solver)

    def train_batches(self, batch_size: int, generator):
        """Shuffled mini-batches of the training trajectories."""
        return self.splits["train"].batches(batch_size, generator)

    def predict(self, model: nn.Module, data: Trajectories) -> Tensor:
        return model(data.x0, data.t, intervention=data.intervention)

    def score(self, pred: Tensor, data: Trajectories) -> Tensor:
        """The loss of prediction ``pred`` on ``data`` (masked MSE)."""
        return masked_mse(pred, data)

    def loss(self, model: nn.Module, data: Trajectories) -> Tensor:
        return self.score(self.predict(model, data), data)

    def predict_stacked(self, models: Sequence[nn.Module], batches: Sequence[Trajectories]) -> Tensor:
        """Every member's :meth:`predict` on its own batch as one stacked forecast ``(M, B, T, n)``."""
        first = batches[0]
        return stacked_forecast(models, torch.stack([b.x0 for b in batches]), first.t, first.intervention)

    def can_stack(self, models: Sequence[nn.Module], batches: Sequence[Trajectories]) -> bool:
        """Whether :meth:`stacked_loss` applies: stackable models (:func:`~sparsedyn.nn.stacked.stackable`),
        batches sharing a time grid, size and intervention, and a :meth:`predict_stacked` matching
        :meth:`predict` (a subclass that changes one and not the other is never stacked)."""
        cls = type(self)
        if cls.predict is not ForecastTask.predict and cls.predict_stacked is ForecastTask.predict_stacked:
            return False
        return stackable(models) is None and _aligned(batches)

    def stacked_loss(self, models: Sequence[nn.Module], batches: Sequence[Trajectories]) -> list[Tensor]:
        """Each member's :meth:`loss` on its batch, from one stacked forecast (check :meth:`can_stack`); the
        members' masked MSEs in one computation where :meth:`score` is this class's own."""
        pred = self.predict_stacked(models, batches)
        if (type(self).score is ForecastTask.score and len({b.score_from for b in batches}) == 1
                and pred[0].numel() < STACKED_MSE_BELOW):
            return stacked_masked_mse(pred, batches)
        return [self.score(p, b) for p, b in zip(pred, batches)]

    def evaluate(self, model: nn.Module, splits: tuple[str, ...] | None = None) -> dict[str, float]:
        """``{<split>_mse: value}`` with the model in eval mode (deterministic gates)."""
        with eval_mode(model), torch.no_grad():
            return {f"{s}_mse": float(self.loss(model, self.splits[s])) for s in (splits or self.eval_splits)}

    def trivial_baselines(self) -> dict[str, dict[str, float]]:
        """The task's own metrics for two predictors that learn nothing: holding the initial state
        (persistence from the first observation) and the training data's mean state."""
        return {"initial_state": self.evaluate(_Constant()),
                "train_mean": self.evaluate(_Constant(self.field_inputs("train").mean(0)))}

    def field_inputs(self, split: str = "train") -> Tensor:
        """Observed states, flattened to (points, n) (for Jacobian dependency scores)."""
        d = self.splits[split]
        return d.y[d.mask]
