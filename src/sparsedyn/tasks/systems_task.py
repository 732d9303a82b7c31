"""Forecasting on a synthetic system: train/val/test splits and the OOD test variants."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from .base import TaskConfig, register_task
from .forecast import ForecastTask
from .systems import SYSTEMS, make_system
from .trajectories import Trajectories

OOD_SPLITS = ("test", "test_shift", "test_extrap", "test_intervention")


class SystemTaskConfig(TaskConfig):
    name: Literal["systems"] = "systems"
    system: str = "sparse_tanh"
    system_params: dict[str, Any] = Field(default_factory=dict)
    n_train: int = Field(32, gt=0)
    n_val: int = Field(8, gt=0)
    n_test: int = Field(16, gt=0)
    t_end: float = Field(3.0, gt=0)
    n_points: int = Field(30, ge=2)
    noise: float = Field(0.0, ge=0)
    irregular: float = Field(0.0, ge=0, lt=1)
    shift: float = 1.0
    extrapolate: float = Field(2.0, gt=1)
    intervention: dict[int, float] | None = None
    data_seed: int = Field(0, ge=0)

    @field_validator("system")
    @classmethod
    def _system_known(cls, v: str) -> str:
        if v not in SYSTEMS:
            raise ValueError(f"unknown system {v!r}; choose from {sorted(SYSTEMS)}")
        return v

    @field_validator("system_params")
    @classmethod
    def _system_builds(cls, v: dict[str, Any], info) -> dict[str, Any]:
        make_system(info.data.get("system", "sparse_tanh"), **v)
        return v


@register_task
class SystemTask(ForecastTask[SystemTaskConfig]):
    """Data and metrics for learning a system's dynamics from trajectories.

    Splits: ``train`` (noisy, optionally irregular), ``val``, ``test`` (clean, in
    distribution), ``test_shift`` (initial conditions shifted by ``shift``), ``test_extrap``
    (scored on ``(t_end, extrapolate * t_end]``) and ``test_intervention`` (``do(x_k = c)``,
    the model intervened the same way).
    """

    name = "systems"
    Config = SystemTaskConfig
    model_kinds = ("node", "sonode", "sindy")

    def setup(self) -> None:
        c = self.config
        n_train, n_val, n_test, t_end, n_points = c.n_train, c.n_val, c.n_test, c.t_end, c.n_points
        noise, irregular, shift, extrapolate = c.noise, c.irregular, c.shift, c.extrapolate
        self.system = system = make_system(c.system, **c.system_params)
        self.intervention = dict(c.intervention) if c.intervention is not None else {0: 1.0}
        system.intervened_indices(self.intervention)  # validates the variable index
        rng = np.random.default_rng(c.data_seed)
        t = np.linspace(0.0, t_end, n_points)
        dt = t[1] - t[0] if n_points > 1 else t_end
        t_long = np.arange(0.0, extrapolate * t_end + dt / 2, dt)
        obs = system.observed

        def make(k, t_grid, noise_sd=0.0, drop=0.0, shift_by=0.0, do=None, score_from=None):
            x0 = system.sample_x0(rng, k, shift_by)
            states = system.simulate(x0, t_grid, do)[..., obs]
            y = states + noise_sd * rng.normal(size=states.shape)
            mask = rng.random(y.shape[:2]) >= drop
            mask[:, 0] = True
            return Trajectories(torch.tensor(t_grid, dtype=torch.float32),
                                torch.tensor(y, dtype=torch.float32), torch.tensor(mask), do, score_from)

        self.splits: dict[str, Trajectories] = {
            "train": make(n_train, t, noise, irregular),
            "val": make(n_val, t, noise),
            "test": make(n_test, t),
            "test_shift": make(n_test, t, shift_by=shift),
            "test_extrap": make(n_test, t_long, score_from=t_end + 1e-9),
            "test_intervention": make(n_test, t, do=self.intervention),
        }

    eval_splits = ("val", *OOD_SPLITS)

    @property
    def n_observed(self) -> int:
        return len(self.system.observed)

    @property
    def supports_sonode(self) -> bool:
        """A SONODE fits a second-order system observed in its positions only."""
        return self.system.second_order and len(self.system.observed) * 2 == self.system.n

    @property
    def truth(self) -> np.ndarray:
        """The true adjacency the learned vector field should have."""
        return self.system.adjacency
