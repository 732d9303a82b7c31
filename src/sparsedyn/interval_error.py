"""One-step-ahead and trajectory errors of fitted fields on held-out trajectories: yardsticks for comparing
fields fitted to different derivative estimates, and libraries by how they forecast.

:class:`~sparsedyn.graph.SparseGraph` can regress on smoothed derivatives or on difference quotients
(:mod:`sparsedyn.derivatives`). Their held-out *derivative* errors are on different targets and cannot be
compared; both fields can be asked the same question of the raw data instead: from each observed state of a
held-out trajectory, integrated to the next observation time, how far is the field from what was observed?
The answer does not depend on how derivatives were estimated.

The same integration from each held-out trajectory's first point to its end (:func:`trajectory_error`) asks
the fields the forecasting question itself: it picks the library that forecasts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .baselines.edges import Standardiser
from .collocation import HybridField
from .derivatives import observed_points
from .tasks.user_data import Series

SUBSTEPS = 4  # RK4 steps per interval between observations
BOUND = 1e3  # states beyond this many standard deviations count as a blow-up (clamped)


@dataclass
class ObservedPairs:
    """Consecutive observed points of every trajectory: ``start`` and ``end`` states (P, n), the time
    between them ``dt`` (P,), and ``trajectory`` (P,) the index of the trajectory of each pair."""

    start: np.ndarray
    end: np.ndarray
    dt: np.ndarray
    trajectory: np.ndarray

    @classmethod
    def of(cls, series: Series) -> ObservedPairs:
        starts, ends, dts, ids = [], [], [], []
        for k, (t, x) in enumerate(observed_points(series)):
            starts.append(x[:-1])
            ends.append(x[1:])
            dts.append(np.diff(t))
            ids.append(np.full(len(t) - 1, k))
        return cls(np.concatenate(starts), np.concatenate(ends), np.concatenate(dts), np.concatenate(ids))


def standardised_rate(derivative: Callable[[torch.Tensor], torch.Tensor], scaler: Standardiser
                      ) -> Callable[[torch.Tensor], torch.Tensor]:
    """dz/dt in the standardised states ``z`` of a field whose ``derivative(z)`` is in standardised
    derivative units (what the fields fit): mapped back to data units, then to those of ``z``."""
    x_scale = torch.as_tensor(scaler.x_scale, dtype=torch.float32)
    d_scale = torch.as_tensor(scaler.d_scale, dtype=torch.float32)
    d_mean = torch.as_tensor(scaler.d_mean, dtype=torch.float32)
    return lambda z: (derivative(z) * d_scale + d_mean) / x_scale


def state_bound(field: HybridField) -> torch.Tensor:
    """(n,) the clamp of each standardised state: ``BOUND``, none for a periodic variable (an angle in radians,
    unwrapped: it grows with every turn while its rate stays bounded)."""
    bound = torch.full((field.n,), BOUND)
    bound[list(field.periodic)] = math.inf
    return bound


def _rate(field: HybridField, scaler: Standardiser) -> Callable[[torch.Tensor], torch.Tensor]:
    """dz/dt of the one-member ``field`` in its standardised states."""
    return standardised_rate(lambda z: field(z)[0], scaler)


def _advance(rate, z: torch.Tensor, dt: torch.Tensor, substeps: int, bound: torch.Tensor) -> torch.Tensor:
    """``substeps`` RK4 steps of length ``dt / substeps`` (per row, (B, 1)), a blow-up clamped at ``bound``
    (:func:`state_bound`)."""
    h = dt / substeps
    for _ in range(substeps):
        k1 = rate(z)
        k2 = rate(z + h / 2 * k1)
        k3 = rate(z + h / 2 * k2)
        k4 = rate(z + h * k3)
        z = torch.clamp(torch.nan_to_num(z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), nan=BOUND), -bound, bound)
    return z


def one_step_error(field: HybridField, scaler: Standardiser, pairs: ObservedPairs, rows: np.ndarray,
                   scale: np.ndarray, substeps: int = SUBSTEPS) -> float:
    """Mean squared error, per feature in units of ``scale`` (n,), of predicting ``pairs.end[rows]`` from
    ``pairs.start[rows]`` by integrating the one-member ``field`` (standardised by ``scaler``) with RK4."""
    if not rows.any():
        return float("nan")
    z = torch.as_tensor(scaler.states(pairs.start[rows]), dtype=torch.float32)
    dt = torch.as_tensor(pairs.dt[rows], dtype=torch.float32)[:, None]
    with torch.no_grad():
        z = _advance(_rate(field, scaler), z, dt, substeps, state_bound(field))
    predicted = z.double().numpy() * scaler.x_scale + scaler.x_mean
    return float(np.mean(((predicted - pairs.end[rows]) / scale) ** 2))


def trajectory_error(field: HybridField, scaler: Standardiser, trajectories: list[tuple[np.ndarray, np.ndarray]],
                     scale: np.ndarray, substeps: int = SUBSTEPS) -> np.ndarray:
    """Per trajectory ``(times (T_i,), values (T_i, n))``, the mean squared error (per feature in units of
    ``scale``) over its points of the forecast from its first point, by integrating the one-member ``field``
    with RK4 from observation to observation (all trajectories at once), capped at the error of repeating the
    first point: a forecast worse than that, or one that blows up, has no skill."""
    length = max(len(t) for t, _ in trajectories)
    # pad each trajectory by repeating its last time (steps of length 0 leave the state where it is)
    times = np.stack([np.concatenate([t, np.full(length - len(t), t[-1])]) for t, _ in trajectories])
    dts = torch.as_tensor(np.diff(times, axis=1), dtype=torch.float32)
    z = torch.as_tensor(scaler.states(np.stack([x[0] for _, x in trajectories])), dtype=torch.float32)
    rate, path, bound = _rate(field, scaler), [z], state_bound(field)
    with torch.no_grad():
        for k in range(length - 1):
            z = _advance(rate, z, dts[:, k: k + 1], substeps, bound)
            path.append(z)
    predicted = torch.stack(path, dim=1).double().numpy() * scaler.x_scale + scaler.x_mean  # (B, T, n)
    errors = []
    for b, (_, x) in enumerate(trajectories):
        forecast = np.mean(((predicted[b, : len(x)] - x) / scale) ** 2)
        errors.append(np.fmin(forecast, float(np.mean(((x - x[0]) / scale) ** 2))))
    return np.array(errors)
