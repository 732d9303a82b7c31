"""The adding problem: sum the two marked values of a length-T sequence (predicting the mean: ~0.167)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from ..nn.modes import eval_mode
from ..nn.sequence_models import SequenceRegressor
from .base import Task, TaskConfig, register_task

MEAN_PREDICTOR_MSE = 1.0 / 6.0  # Var(U1 + U2) for two independent U(0, 1)


@dataclass
class AddingBatch:
    x: Tensor  # (T, B, 2): value, marker
    y: Tensor  # (B,)


def adding_batch(rng: np.random.Generator, size: int, length: int) -> AddingBatch:
    values = rng.random((length, size))
    markers = np.zeros((length, size))
    for b in range(size):
        markers[rng.choice(length, 2, replace=False), b] = 1.0
    target = (values * markers).sum(0)
    x = np.stack([values, markers], -1)
    return AddingBatch(torch.tensor(x, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))


class AddingTaskConfig(TaskConfig):
    name: Literal["adding"]
    sequence_length: int = Field(50, ge=2)
    steps_per_epoch: int = Field(100, gt=0)
    n_val: int = Field(1000, gt=0)
    n_test: int = Field(1000, gt=0)
    data_seed: int = Field(0, ge=0)


@register_task
class AddingTask(Task[AddingTaskConfig]):
    """The adding problem: the sum of the two marked numbers of a sequence, scored by MSE."""

    name = "adding"
    Config = AddingTaskConfig
    model_kinds = ("rnn",)

    monitor = "val_mse"

    def setup(self) -> None:
        c = self.config
        self.T, self.steps_per_epoch = c.sequence_length, c.steps_per_epoch
        self.splits = {"val": adding_batch(np.random.default_rng(c.data_seed + 1), c.n_val, c.sequence_length),
                       "test": adding_batch(np.random.default_rng(c.data_seed + 2), c.n_test, c.sequence_length)}

    def build_model(self, m) -> nn.Module:
        return SequenceRegressor(2, m.hidden, m.cell, m.nonlinearity, m.rnn_bias)

    def train_batches(self, batch_size: int, generator: torch.Generator):
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        for _ in range(self.steps_per_epoch):
            yield adding_batch(rng, batch_size, self.T)

    def loss(self, model: nn.Module, batch: AddingBatch) -> Tensor:
        return ((model(batch.x) - batch.y) ** 2).mean()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        with eval_mode(model), torch.no_grad():
            return {"val_mse": float(self.loss(model, self.splits["val"])),
                    "test_mse": float(self.loss(model, self.splits["test"]))}
