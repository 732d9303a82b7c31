"""One-step-ahead error of fitted fields on held-out trajectories: a yardstick for comparing fields fitted to
different derivative estimates.

:class:`~sparsedyn.graph.SparseGraph` can regress on smoothed derivatives or on difference quotients
(:mod:`sparsedyn.derivatives`). Their held-out *derivative* errors are on different targets and cannot be
compared; both fields can be asked the same question of the raw data instead: from each observed state of a
held-out trajectory, integrated to the next observation time, how far is the field from what was observed?
The answer does not depend on how derivatives were estimated.
"""

from __future__ import annotations

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


def one_step_error(field: HybridField, scaler: Standardiser, pairs: ObservedPairs, rows: np.ndarray,
                   scale: np.ndarray, substeps: int = SUBSTEPS) -> float:
    """Mean squared error, per feature in units of ``scale`` (n,), of predicting ``pairs.end[rows]`` from
    ``pairs.start[rows]`` by integrating the one-member ``field`` (standardised by ``scaler``) with RK4."""
    if not rows.any():
        return float("nan")
    x_scale = torch.as_tensor(scaler.x_scale, dtype=torch.float32)
    d_scale = torch.as_tensor(scaler.d_scale, dtype=torch.float32)
    d_mean = torch.as_tensor(scaler.d_mean, dtype=torch.float32)

    def rate(z: torch.Tensor) -> torch.Tensor:  # dz/dt in the field's standardised states
        return (field(z)[0] * d_scale + d_mean) / x_scale

    z = torch.as_tensor(scaler.states(pairs.start[rows]), dtype=torch.float32)
    h = torch.as_tensor(pairs.dt[rows] / substeps, dtype=torch.float32)[:, None]
    with torch.no_grad():
        for _ in range(substeps):
            k1 = rate(z)
            k2 = rate(z + h / 2 * k1)
            k3 = rate(z + h / 2 * k2)
            k4 = rate(z + h * k3)
            z = torch.nan_to_num(z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), nan=BOUND).clamp(-BOUND, BOUND)
    predicted = z.double().numpy() * scaler.x_scale + scaler.x_mean
    return float(np.mean(((predicted - pairs.end[rows]) / scale) ** 2))
