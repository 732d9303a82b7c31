"""The ``trajectories`` task: forecasting a user's own time series (CSV, NPZ, AnnData or arrays).

Each trajectory is forecast from its first observed state, its times counted from there (the dynamics
are taken as autonomous, so trajectories recorded from different clock times line up); the trajectories
are split at random (``split_seed``) into train / val / test by ``val_fraction`` and ``test_fraction``. ``window``
cuts every trajectory into consecutive pieces of that many points first (times shifted to start
at 0: the dynamics are taken as autonomous), so one long series can be learned and scored
too. With ``val_fraction: 0`` the validation split is the training split (checkpoints are
then chosen on the training error). No true graph is known: the learned dependency matrix is
the result (``dependency.pt`` in the run directory, the feature names in ``features.json``).

With ``standardize: true`` (the default) every trajectory is rescaled by the *training* trajectories'
per-feature mean and spread, and time by their median span, before anything is fitted
(:class:`~sparsedyn.series_scaling.SeriesScaling`, written to ``scaling.json``); the run's errors and
forecasts are then in those units, every feature weighing alike. The dependency matrix does not depend on it.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from ..series_scaling import SeriesScaling
from .base import PathField, TaskConfig, register_task
from .forecast import ForecastTask
from .trajectories import Trajectories
from .user_data import DataError, Series, load_series


class TrajectoriesTaskConfig(TaskConfig):
    name: Literal["trajectories"] = "trajectories"
    path: str = PathField(...)
    time: str = "t"  # CSV column, NPZ array or AnnData obs column of the times
    group: str | None = None  # CSV / obs column of the trajectory id
    features: list[str] | None = None  # default: every column but time and group (CSV), all genes (h5ad)
    # time points missing only some features: refused ("error"), or each feature's interior gaps filled
    # linearly in time and edge gaps dropped ("interpolate"; sparsedyn.tasks.user_data.interpolate_gaps)
    missing: Literal["error", "interpolate"] = "error"
    # rows in another time order (a pseudotime table) and rows of one trajectory sharing a time: refused, or
    # sorted / averaged into one state per time (sparsedyn.tasks.time_order)
    sort: bool = False
    duplicates: Literal["error", "average"] = "error"
    window: int | None = Field(None, ge=2)
    val_fraction: float = Field(0.2, ge=0, lt=1)
    test_fraction: float = Field(0.2, ge=0, lt=1)
    split_seed: int = Field(0, ge=0)
    # fit in scaled coordinates (each feature by its training mean and spread, time by the training runs'
    # median span; sparsedyn.series_scaling): a strength then means the same whatever the data's units
    standardize: bool = True


def cut_windows(series: Series, window: int) -> Series:
    """Consecutive, non-overlapping pieces of ``window`` points, each shifted to start at time 0; a
    piece whose first point is missing or with fewer than two observed points is dropped."""
    times, values, names = [], [], []
    for name, t, x in zip(series.names, series.times, series.values):
        for k, start in enumerate(range(0, len(t) - 1, window)):
            tt, xx = t[start:start + window], x[start:start + window]
            observed = ~np.isnan(xx).any(axis=1)
            if len(tt) < 2 or not observed[0] or observed.sum() < 2:
                continue
            times.append(tt - tt[0])
            values.append(xx)
            names.append(f"{name}/{k}")
    return Series(times, values, series.features, names)


SAME_TIME = 1e-6  # to_trajectories: grid times closer than this fraction of the span are one time (float32: ~6e-8)


def to_trajectories(series: Series, idx: list[int]) -> Trajectories:
    """The chosen trajectories on the union of their time grids, a point masked where one lacks it (times
    equal to 1e-10 are one time: shifted windows differ in the last bits).

    Each trajectory is shifted to start at time 0 first. The field is autonomous, so a trajectory's clock
    time carries nothing; unshifted, runs recorded from different clock times started at a masked point of
    the union grid, so they were forecast from a zero state, and a clock of 1e9 seconds lost the steps to
    float32 (tests).

    Grid times closer than :data:`SAME_TIME` x the grid's span are one time (the first of them): the solve
    runs in float32, where they would be equal, and the solver refuses a grid that does not increase. Runs
    stamped in epoch seconds at fractional offsets made such pairs, ~1e-9 of the span apart."""
    times = {i: np.round(series.times[i] - series.times[i][0], 10) for i in idx}
    grid = np.unique(np.concatenate([times[i] for i in idx]))
    if len(grid) > 1:
        grid = grid[np.concatenate([[True], np.diff(grid) > SAME_TIME * (grid[-1] - grid[0])])]
    y = np.zeros((len(idx), len(grid), series.n_features))
    mask = np.zeros((len(idx), len(grid)), dtype=bool)
    for b, i in enumerate(idx):
        pos = np.searchsorted(grid, times[i], side="right") - 1  # the grid time at or before (exact: equal)
        observed = ~np.isnan(series.values[i]).any(axis=1)
        y[b, pos[observed]] = series.values[i][observed]
        mask[b, pos[observed]] = True
    return Trajectories(torch.tensor(grid, dtype=torch.float32), torch.tensor(y, dtype=torch.float32),
                        torch.tensor(mask), meta={"names": [series.names[i] for i in idx]})


@register_task
class TrajectoriesTask(ForecastTask[TrajectoriesTaskConfig]):
    """A user's trajectories split into train / val / test (see the module docstring)."""

    name = "trajectories"
    Config = TrajectoriesTaskConfig
    model_kinds = ("node",)

    def setup(self) -> None:
        c = self.config
        self._build(load_series(c.path, c.time, c.group, c.features, c.missing, c.sort, c.duplicates))

    @classmethod
    def from_series(cls, series: Series, **fields: Any) -> TrajectoriesTask:
        """The task on in-memory trajectories (its config records ``path: "<in memory>"``)."""
        return cls._handed_over("path", series, fields)

    def _build(self, series: Series) -> None:
        window, val_fraction, test_fraction = self.config.window, self.config.val_fraction, self.config.test_fraction
        if window is not None:
            series = cut_windows(series, window)
        self.series, self.feature_names = series, list(series.features)
        n = len(series)
        n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
        n_test = max(1, round(test_fraction * n)) if test_fraction > 0 else 0
        if n - n_val - n_test < 1:
            raise DataError(f"too few trajectories for the split: {n} (val {n_val}, test {n_test}, train needs at "
                            "least 1); lower val_fraction / test_fraction or set window to cut long "
                            "trajectories into pieces")
        perm = np.random.default_rng(self.config.split_seed).permutation(n).tolist()
        test, val, train = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
        self.scaling = None
        if self.config.standardize:
            self.scaling = SeriesScaling.fit(series.subset(train))
            series = self.series = self.scaling.series(series)
        self.splits = {"train": to_trajectories(series, sorted(train))}
        self.splits["val"] = to_trajectories(series, sorted(val)) if val else self.splits["train"]
        if test:
            self.splits["test"] = to_trajectories(series, sorted(test))
        self.eval_splits = ("val", "test") if test else ("val",)

    @property
    def n_observed(self) -> int:
        return len(self.feature_names or [])
