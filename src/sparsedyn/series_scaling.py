"""Trajectories on a common scale for a neural ODE: each feature standardised, time in units of a typical span.

A neural ODE's field starts near zero with weights of order one, and a strength is a number next to its
data loss; both assume data of order one. A user's data are in their own units (a population in the
thousands, a concentration in nanomolar, time in seconds over days), and the same strength then prunes
everything on one data set and nothing on another. :class:`~sparsedyn.estimator.SparseODE` fits in the
scaled coordinates ``z = (x - mean) / scale`` and ``tau = t / t_scale`` and maps back everything it returns
(forecasts in the data's units, derivatives ``dx/dt = scale * dz/dtau / t_scale``), so that multiplying a
feature or the time axis by a constant changes nothing but the units of its answers (tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tasks.user_data import Series


@dataclass(frozen=True)
class SeriesScaling:
    """Per feature ``mean`` (n,) and ``scale`` (n,) (the spread of the observed points; 1 where a feature is
    constant), and ``t_scale`` (the median time span of the trajectories; 1 where they have none)."""

    mean: np.ndarray
    scale: np.ndarray
    t_scale: float

    @classmethod
    def identity(cls, n: int) -> SeriesScaling:
        return cls(np.zeros(n), np.ones(n), 1.0)

    @classmethod
    def fit(cls, series: Series) -> SeriesScaling:
        observed = np.concatenate([x[~np.isnan(x).any(axis=1)] for x in series.values])
        scale = observed.std(axis=0)
        spans = [float(t[-1] - t[0]) for t in series.times if len(t) > 1]
        t_scale = float(np.median(spans)) if spans else 1.0
        return cls(observed.mean(axis=0), np.where(scale > 0, scale, 1.0), t_scale if t_scale > 0 else 1.0)

    def series(self, series: Series) -> Series:
        """``series`` in scaled coordinates (missing points stay NaN)."""
        return Series([t / self.t_scale for t in series.times], [self.states(x) for x in series.values],
                      series.features, series.names)

    def states(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.scale

    def unstates(self, z: np.ndarray) -> np.ndarray:
        return z * self.scale + self.mean

    def derivatives(self, dz_dtau: np.ndarray) -> np.ndarray:
        """``dx/dt`` in the data's units from the scaled field's ``dz/dtau``."""
        return dz_dtau * self.scale / self.t_scale

    def as_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "t_scale": self.t_scale}

    @classmethod
    def from_dict(cls, state: dict) -> SeriesScaling:
        return cls(np.asarray(state["mean"], dtype=float), np.asarray(state["scale"], dtype=float),
                   float(state["t_scale"]))
