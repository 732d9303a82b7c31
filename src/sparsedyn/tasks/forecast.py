"""What every trajectory-forecasting task shares: splits of :class:`Trajectories` scored by masked MSE."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..analysis import eval_mode
from .trajectories import Trajectories, masked_mse


class ForecastTask:
    """Base of the forecasting tasks (synthetic systems, motion capture, hematopoiesis).

    A subclass fills ``self.splits`` (``val`` and its test splits, and ``train`` unless it
    overrides :meth:`train_batches` and :meth:`field_inputs`) and sets ``eval_splits``; models
    are called as ``model(x0, t, ...)`` through :meth:`predict`, which a subclass may override
    (e.g. to hand a second-order model its initial velocity).
    ``truth`` is the true dependency graph where one is known, else ``None``.
    """

    monitor = "val_mse"
    eval_splits: tuple[str, ...] = ("val", "test")
    truth = None
    splits: dict[str, Trajectories]

    def train_batches(self, batch_size: int, generator):
        """Shuffled mini-batches of the training trajectories."""
        return self.splits["train"].batches(batch_size, generator)

    def predict(self, model: nn.Module, data: Trajectories) -> Tensor:
        return model(data.x0, data.t, intervention=data.intervention)

    def loss(self, model: nn.Module, data: Trajectories) -> Tensor:
        return masked_mse(self.predict(model, data), data)

    def evaluate(self, model: nn.Module, splits: tuple[str, ...] | None = None) -> dict[str, float]:
        """``{<split>_mse: value}`` with the model in eval mode (deterministic gates)."""
        with eval_mode(model), torch.no_grad():
            return {f"{s}_mse": float(self.loss(model, self.splits[s])) for s in (splits or self.eval_splits)}

    def field_inputs(self, split: str = "train") -> Tensor:
        """Observed states, flattened to (points, n) (for Jacobian dependency scores)."""
        d = self.splits[split]
        return d.y[d.mask]
