"""The Krumsiek myeloid network made identifiable: many initial states and single-gene interventions.

The scanpy simulation behind the ``krumsiek`` task starts every realisation from one progenitor
state, so its trajectories are nearly low-dimensional and the 11-gene graph is barely identifiable.
Here the network's own rules (:class:`~sparsedyn.tasks.boolean_ode.BooleanODE`, Odefy's continuous
form, the graph exact by construction) are simulated from initial states drawn uniformly in
``[0, 1]^11``, observationally and under interventions the model is told about: for every gene a
knockout ``do(x_k = 0)`` and an over-expression ``do(x_k = 1)`` (22 conditions). ``held_out`` of
the 22 (drawn with ``data_seed``) are never trained on: ``test_intervention_mse`` scores forecasts
under them (out of distribution); ``test_mse`` scores observational forecasts from new states.

Training visits the conditions round-robin (a mini-batch holds one condition, so the model is
intervened the same way as the data; the order of conditions is fixed, trajectories within one are
shuffled by the run's generator), so members of a stacked job see the same condition at each step.
The SINDy baseline fits the observational training trajectories (pysindy has no interventions).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from ..analysis import ranking_metrics, thin
from ..nn.modes import eval_mode
from .base import TaskConfig, register_task
from .boolean_ode import BooleanODE
from .forecast import ForecastTask
from .trajectories import Trajectories


class KrumsiekInterventionsConfig(TaskConfig):
    name: Literal["krumsiek_interventions"]
    n_per_condition: int = Field(16, ge=1)  # training trajectories per condition (observational + each training do)
    n_val_per_condition: int = Field(4, ge=1)
    n_test: int = Field(32, ge=1)  # observational test trajectories
    n_test_per_held_out: int = Field(16, ge=1)
    held_out: int = Field(6, ge=1, le=21)  # interventions never trained on
    t_end: float = Field(4.0, gt=0)
    n_points: int = Field(21, ge=2)
    noise: float = Field(0.01, ge=0)
    data_seed: int = Field(0, ge=0)


def all_interventions(n: int) -> list[dict[int, float]]:
    """Knockout then over-expression of every variable: ``[{0: 0.0}, {0: 1.0}, {1: 0.0}, ...]``."""
    return [{k: c} for k in range(n) for c in (0.0, 1.0)]


@register_task
class KrumsiekInterventionsTask(ForecastTask[KrumsiekInterventionsConfig]):
    """Forecast the myeloid network under observed and held-out interventions; ``truth`` is its 30 edges."""

    name = "krumsiek_interventions"
    Config = KrumsiekInterventionsConfig
    model_kinds = ("node", "sindy")
    eval_splits = ("val", "test", "test_intervention")

    def setup(self) -> None:
        c = self.config
        n_per_condition, n_val_per_condition, n_test = c.n_per_condition, c.n_val_per_condition, c.n_test
        n_test_per_held_out, held_out, t_end, n_points = c.n_test_per_held_out, c.held_out, c.t_end, c.n_points
        noise, seed = c.noise, c.data_seed
        self.network = BooleanODE()
        self.genes = self.feature_names = list(self.network.genes)
        n = self.network.n
        options = all_interventions(n)
        if not 1 <= held_out < len(options):
            raise ValueError(f"held_out must be in [1, {len(options) - 1}], got {held_out}")
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(options))
        self.held_out = [options[i] for i in sorted(order[:held_out])]
        self.trained = [None] + [options[i] for i in sorted(order[held_out:])]  # None: observational
        t = np.linspace(0.0, t_end, n_points)
        self.noise = noise

        def make(k: int, do: dict[int, float] | None) -> Trajectories:
            x0 = rng.random((k, n))
            y = self.network.simulate(x0, t, do)
            y = y + noise * rng.normal(size=y.shape)
            if do:  # the intervened gene is held exactly: the model is told its value
                for g, c in do.items():
                    y[:, :, g] = c
            return Trajectories(torch.tensor(t, dtype=torch.float32), torch.tensor(y, dtype=torch.float32),
                                torch.ones(y.shape[:2], dtype=torch.bool), do)

        self.conditions: dict[str, list[Trajectories]] = {
            "train": [make(n_per_condition, do) for do in self.trained],
            "val": [make(n_val_per_condition, do) for do in self.trained],
            "test_intervention": [make(n_test_per_held_out, do) for do in self.held_out],
        }
        self.splits = {"train": self.conditions["train"][0], "val": self.conditions["val"][0],
                       "test": make(n_test, None)}

    @property
    def n_observed(self) -> int:
        return self.network.n

    @property
    def truth(self) -> np.ndarray:
        return self.network.adjacency

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Trajectories]:
        """Mini-batches of one condition each, conditions in turn (round-robin, fixed order)."""
        per_condition = [list(c.batches(batch_size, generator)) for c in self.conditions["train"]]
        for i in range(max(map(len, per_condition))):
            for batches in per_condition:
                if i < len(batches):
                    yield batches[i]

    def evaluate(self, model: nn.Module, splits: tuple[str, ...] | None = None) -> dict[str, float]:
        """``val_mse`` (mean over training conditions), ``test_mse`` (observational, new initial states),
        ``test_intervention_mse`` (mean over the held-out interventions)."""
        out = {}
        with eval_mode(model), torch.no_grad():
            for s in splits or self.eval_splits:
                parts: list[Any] = self.conditions.get(s, [self.splits.get(s)])
                if parts[0] is None:
                    raise KeyError(f"no split {s!r}")
                out[f"{s}_mse"] = float(np.mean([float(self.loss(model, d)) for d in parts]))
        return out

    def true_jacobian_recovery(self, max_points: int = 1000) -> dict[str, float]:
        """The ceiling of the Jacobian read-out: the *true* field's mean ``|J|`` at the same (thinned)
        training states that :func:`~sparsedyn.analysis.jacobian_recovery` scores a model at, ranked
        against the graph. Every gene decays (``- x_i``), so the true diagonal is nonzero for all 11
        genes while only those whose rule names themselves are self-loops of the graph."""
        x = thin(self.field_inputs("train"), max_points).double().numpy()
        return ranking_metrics(np.abs(self.network.jacobian(x)).mean(axis=0), self.truth)

    def field_inputs(self, split: str = "train") -> Tensor:
        """Observed states of every condition of ``split`` (train: all training conditions)."""
        parts = self.conditions.get(split, [self.splits[split]])
        return torch.cat([d.y[d.mask] for d in parts])
