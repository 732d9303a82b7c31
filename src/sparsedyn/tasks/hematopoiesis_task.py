"""Hematopoiesis forecasting: learn gene-expression dynamics on one donor, forecast unseen donors.

Protocol of Aliee et al. (2022): one NODE over all 529 genes is trained on the three lineages
(erythroid, monocyte, B) of donor ``12``, each lineage a trajectory in pseudotime from its own
initial state (:func:`~sparsedyn.tasks.hematopoiesis.initial_state`); held-out donors ``11``,
``21``, ``24`` (no erythroid lineage) and ``36`` are forecast from their own initial states.
The score of a donor is the **sum over its lineages** of the per-lineage MSE (mean over cells
and genes); ``test_mse`` is its mean over the test donors. With no validation donor in the
protocol, checkpoints are chosen on the training donor's error in eval mode (``train_mse``).

``x0_noise`` (not in the reference; default 0): each training step starts the lineages from their
initial states plus Gaussian noise of that standard deviation, drawn from the run's data generator.
Held-out donors start 0.06-0.10 (rms per gene) away from donor 12's initial states, off the three
trajectories a field is otherwise fitted on; the noise asks the field to bring nearby states back.

Lineages are observed at different pseudotimes: each split is solved on the union of its
lineages' times and every lineage scored only at its own cells (masks).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from ..analysis import dependency_matrix, parent_selectivity, spurious_feature_sparsity
from ..nn.modes import eval_mode
from ..nn.stacked import stacked_forecast
from .base import PathField, TaskConfig, register_task
from .forecast import ForecastTask
from .hematopoiesis import TEST_DONORS, TRAIN_DONOR, Lineage, load_donor, transcription_factors
from .trajectories import Trajectories

ENV_VAR = "SPARSEDYN_HEMATOPOIESIS_DIR"


def lineage_trajectories(lineages: list[Lineage]) -> Trajectories:
    """Lineages on the union of their times, masked to their own cells; ``meta["x0"]`` initial states."""
    t = np.unique(np.concatenate([lin.times for lin in lineages]))
    y = np.zeros((len(lineages), len(t), lineages[0].X.shape[1]))
    mask = np.zeros((len(lineages), len(t)), dtype=bool)
    for b, lin in enumerate(lineages):
        idx = np.searchsorted(t, lin.times)
        y[b, idx], mask[b, idx] = lin.X, True
    x0 = torch.tensor(np.stack([lin.x0 for lin in lineages]), dtype=torch.float32)
    return Trajectories(torch.tensor(t, dtype=torch.float32), torch.tensor(y, dtype=torch.float32),
                        torch.tensor(mask), meta={"x0": x0})


def interpolate(grid: Tensor, values: Tensor, t: Tensor) -> Tensor:
    """Piecewise-linear interpolation of ``values`` (B, G, n) given at ``grid`` (G,) to times ``t`` (T,)."""
    if t.min() < grid[0] or t.max() > grid[-1]:
        raise ValueError(f"times must lie in [{float(grid[0])}, {float(grid[-1])}]")
    right = torch.searchsorted(grid, t).clamp(1, len(grid) - 1)
    left = right - 1
    w = ((t - grid[left]) / (grid[right] - grid[left]))[None, :, None]
    return values[:, left] * (1 - w) + values[:, right] * w


def summed_lineage_mse(pred: Tensor, data: Trajectories) -> Tensor:
    """Sum over lineages of each lineage's MSE over its own cells and all genes."""
    w = data.mask.to(pred.dtype)
    per_lineage = (((pred - data.y) ** 2).mean(-1) * w).sum(1) / w.sum(1).clamp_min(1.0)
    return per_lineage.sum()


class HematopoiesisTaskConfig(TaskConfig):
    """Donor 12 -> held-out donors (sparsedyn.tasks.hematopoiesis_task); default $SPARSEDYN_HEMATOPOIESIS_DIR."""

    name: Literal["hematopoiesis"]
    data_dir: str | None = PathField(None)
    test_donors: list[str] = Field(default_factory=lambda: list(TEST_DONORS), min_length=1)
    steps_per_epoch: int = Field(10, gt=0)
    grid_points: int = Field(51, ge=2)  # solver output grid on [0, 1], interpolated to the cells' times
    start: Literal["reference", "lineage_z"] = "reference"  # initial state (sparsedyn.tasks.hematopoiesis)
    x0_noise: float = Field(0.0, ge=0)  # sd of noise on the training initial states per step (0: reference)


@register_task
class HematopoiesisTask(ForecastTask[HematopoiesisTaskConfig]):
    """Train on donor 12's three lineages; ``test_<donor>_mse`` and their mean ``test_mse``."""

    name = "hematopoiesis"
    Config = HematopoiesisTaskConfig
    model_kinds = ("node",)

    monitor = "train_mse"

    def setup(self) -> None:
        c = self.config
        chosen = c.data_dir or os.environ.get(ENV_VAR)
        if not chosen:
            raise FileNotFoundError(f"no hematopoiesis data directory: pass data_dir or set ${ENV_VAR}")
        self.grid_points, self.start, self.x0_noise = c.grid_points, c.start, float(c.x0_noise)
        self.path, self.steps_per_epoch = Path(chosen), c.steps_per_epoch
        self.genes: list[str] = []
        self.splits = {"train": self._donor(TRAIN_DONOR)}
        for donor in c.test_donors:
            self.splits[f"test_{donor}"] = self._donor(donor)
        self.test_donors = tuple(c.test_donors)
        tfs = transcription_factors(self.path)
        self.tf_mask = np.array([g in tfs for g in self.genes])

    def _donor(self, donor: str) -> Trajectories:
        lineages = list(load_donor(self.path, donor, self.start).values())
        self.genes = self.genes or lineages[0].genes
        if any(lin.genes != self.genes for lin in lineages):
            raise ValueError(f"donor {donor}: its lineages list other genes than donor {TRAIN_DONOR}'s")
        return lineage_trajectories(lineages)

    @property
    def n_observed(self) -> int:
        return len(self.genes)

    def train_batches(self, batch_size: int, generator: torch.Generator):
        """The whole training donor (three trajectories), ``steps_per_epoch`` times; with ``x0_noise``
        each time from freshly perturbed initial states (drawn from ``generator``)."""
        train = self.splits["train"]
        for _ in range(self.steps_per_epoch):
            if self.x0_noise == 0:
                yield train
                continue
            x0 = train.meta["x0"]
            noisy = x0 + self.x0_noise * torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
            yield replace(train, meta={**train.meta, "x0": noisy})

    def predict(self, model: nn.Module, data: Trajectories) -> Tensor:
        """Solve on a regular grid of ``grid_points`` times, then interpolate linearly to the cells' times.

        The union of a donor's pseudotimes has ~1,000-3,000 points; asking the solver for every
        one costs a Python-level step each, while the interpolation is one vectorised gather.
        """
        grid = torch.linspace(0.0, 1.0, self.grid_points, dtype=data.t.dtype)
        on_grid = model(data.meta["x0"], grid)  # (B, G, n)
        return interpolate(grid, on_grid, data.t)

    def predict_stacked(self, models: Sequence[nn.Module], batches: Sequence[Trajectories]) -> Tensor:
        grid = torch.linspace(0.0, 1.0, self.grid_points, dtype=batches[0].t.dtype)
        on_grid = stacked_forecast(models, torch.stack([b.meta["x0"] for b in batches]), grid)
        return torch.stack([interpolate(grid, g, b.t) for g, b in zip(on_grid, batches)])

    def score(self, pred: Tensor, data: Trajectories) -> Tensor:
        return summed_lineage_mse(pred, data)

    def evaluate(self, model: nn.Module, splits: tuple[str, ...] | None = None) -> dict[str, float]:
        with eval_mode(model), torch.no_grad():
            out = {f"{s}_mse": float(self.loss(model, self.splits[s])) for s in self.splits}
        out["test_mse"] = float(np.mean([out[f"test_{d}_mse"] for d in self.test_donors]))
        return out

    def analyse(self, model: nn.Module) -> dict[str, float]:
        """Spurious feature sparsity (zero dependencies on genes that are not TFs; higher is better) and the
        TF vs non-TF selectivity of the cuts beside a null that cuts the lowest-variance genes (variance
        over the training donor's observed cells): see :func:`~sparsedyn.analysis.parent_selectivity`."""
        D = dependency_matrix(model, "structural")
        train = self.splits["train"]
        variances = train.y[train.mask].var(dim=0).numpy()
        sel = parent_selectivity(D, self.tf_mask, variances)
        return {"spurious_feature_sparsity": spurious_feature_sparsity(D, self.tf_mask),
                "tf_selectivity": sel["selectivity"], "null_tf_selectivity": sel["null_selectivity"]}
