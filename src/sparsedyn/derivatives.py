"""Smoothed states and time derivatives of observed trajectories, for regression on ``dx/dt``.

Every graph-recovery tool that regresses derivatives on states (LassoCV "linear Granger", SINDy,
GENIE3 on derivatives, sparsedyn's own collocation stage) needs ``dx/dt`` at the observed points.
Raw finite differences amplify noise by ``1 / dt`` and assume a regular grid. Two smoothers take
irregular times as they are:

- ``"local"`` (default): Savitzky-Golay generalised to uneven times: at each point a weighted
  (tricube) quadratic fit to its ``k`` nearest points in time; the value and slope of that fit are
  the smoothed state and derivative. ``k`` is chosen per feature (pooled over trajectories) by
  leave-one-out error, exact and cheap for a linear smoother (``(y - y_hat) / (1 - H_ii)``).
- ``"spline"``: a cubic smoothing spline per feature and trajectory
  (:func:`scipy.interpolate.make_smoothing_spline`, penalty by generalised cross-validation);
  about 50x slower than ``"local"`` (scipy's GCV loops in Python).

Missing points (NaN rows) are left out of the fit and of the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.interpolate import make_smoothing_spline

from .tasks.user_data import DataError, Series

MIN_POINTS = 5  # a GCV smoothing spline needs at least five observed points


@dataclass
class DerivativeData:
    """Observed points of every trajectory stacked: smoothed states ``x`` (N, n), derivatives ``dxdt``
    (N, n), and ``trajectory`` (N,), the index of the trajectory each row came from."""

    x: np.ndarray
    dxdt: np.ndarray
    trajectory: np.ndarray

    @property
    def n_trajectories(self) -> int:
        return int(self.trajectory.max()) + 1 if len(self.trajectory) else 0


WINDOWS = (5, 7, 9, 11, 15)  # candidate neighbourhood sizes of the local smoother


def nearest_neighbours(t: np.ndarray, k: int) -> np.ndarray:
    """(T, min(k, T)): for each of the strictly increasing times ``t``, the indices of its ``k`` nearest times
    (itself first), nearest first and ties to the earlier index: the first ``k`` columns of a stable argsort of
    the (T, T) distance matrix, without forming it. In one dimension a point's ``k`` nearest neighbours are a
    run of ``k`` consecutive points around it, grown one point at a time towards the nearer side (the earlier on
    a tie); each run is then put in order. Memory and time O(T k): the distance matrix took 6.7 GB and most of a
    fit's 24 s for one trajectory of 20,000 points."""
    t = np.asarray(t, dtype=float)
    T = len(t)
    if T and not (np.diff(t) > 0).all():
        raise ValueError("nearest_neighbours needs strictly increasing times")
    k = min(k, T)
    centre = np.arange(T)
    left, right = centre.copy(), centre + 1  # the run [left, right)
    for _ in range(k - 1):
        gap_left = np.where(left > 0, t - t[np.maximum(left - 1, 0)], np.inf)
        gap_right = np.where(right < T, t[np.minimum(right, T - 1)] - t, np.inf)
        earlier = gap_left <= gap_right
        left = np.where(earlier, left - 1, left)
        right = np.where(earlier, right, right + 1)
    run = left[:, None] + np.arange(k)  # (T, k), ascending indices
    return np.take_along_axis(run, np.argsort(np.abs(t[run] - t[:, None]), axis=1, kind="stable"), axis=1)


def _local_fits(t: np.ndarray, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local weighted quadratic fits at every point of one trajectory with ``k`` nearest neighbours:
    values (T, n), slopes (T, n) and the hat matrix's diagonal (T,).

    Each fit is in the window's own time unit (offsets divided by the window's half-width, so in [-1, 1]):
    in the data's unit the normal equations hold 1, dt^2 and dt^4, whose ratio is ~1e-13 for times in
    thousandths of the trajectory's span and beyond float precision for a span of 1e6 (seconds over days),
    and the fit then lost its curvature or its constant. The result is the same quadratic, so the smoother
    no longer depends on the unit of time (test)."""
    order = nearest_neighbours(t, k)  # (T, k)
    dt = t[order] - t[:, None]  # (T, k)
    h = np.abs(dt).max(axis=1, keepdims=True) * 1.0001
    u = dt / h  # offsets in half-widths of the window
    w = (1 - np.abs(u) ** 3) ** 3  # tricube
    A = np.stack([np.ones_like(u), u, u**2], axis=2)  # (T, k, 3)
    AtW = A.transpose(0, 2, 1) * w[:, None, :]  # (T, 3, k)
    inv = np.linalg.pinv(AtW @ A)  # (T, 3, 3)
    coef = inv @ AtW @ x[order]  # (T, 3, n)
    hat = np.einsum("tj,tjk->tk", inv[:, 0, :], AtW)[:, 0]  # weight of the centre point on itself (nearest: first)
    return coef[:, 0], coef[:, 1] / h, hat


def _local_smooth(times: list[np.ndarray], values: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per trajectory, the local smoother's values and slopes, each feature at the window of :data:`WINDOWS`
    with the least leave-one-out error over all trajectories (every window fitted once)."""
    n = values[0].shape[1]
    err = np.zeros((len(WINDOWS), n))
    fits = []
    for t, x in zip(times, values):
        fits.append([_local_fits(t, x, k) for k in WINDOWS])
        for w, (fit, _, hat) in enumerate(fits[-1]):
            if WINDOWS[w] > len(t) and w > 0:  # a window longer than a trajectory is not a candidate
                err[w] = np.inf
            else:
                err[w] += (((x - fit) / np.clip(1 - hat, 1e-3, None)[:, None]) ** 2).sum(axis=0)
    best = np.argmin(err, axis=0)  # (n,) window index per feature
    columns = np.arange(n)
    return [(np.stack([f[w][0] for w in range(len(WINDOWS))])[best, :, columns].T,
             np.stack([f[w][1] for w in range(len(WINDOWS))])[best, :, columns].T) for f in fits]


def smooth_trajectory(t: np.ndarray, x: np.ndarray, smooth: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed values and derivatives of one trajectory ``x`` (T, n) at its times ``t`` (T,).

    With ``smooth=False`` (or fewer than :data:`MIN_POINTS` points) the values are kept and the
    derivative is the second-order finite difference for uneven steps (``numpy.gradient``)."""
    t = np.asarray(t, dtype=float)
    x = np.asarray(x, dtype=float)
    if len(t) < 2:
        raise DataError(f"a trajectory needs at least two observed points for a derivative, got {len(t)}")
    if not smooth or len(t) < MIN_POINTS:
        return x.copy(), np.gradient(x, t, axis=0, edge_order=1 if len(t) < 3 else 2)
    values, slopes = np.empty_like(x), np.empty_like(x)
    for j in range(x.shape[1]):
        column = x[:, j]
        if np.ptp(column) == 0:  # a constant feature: GCV has nothing to smooth
            values[:, j], slopes[:, j] = column, 0.0
            continue
        spline = make_smoothing_spline(t, column)
        values[:, j], slopes[:, j] = spline(t), spline.derivative()(t)
    return values, slopes


def observed_points(series: Series) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per trajectory, its times (T_i,) and values (T_i, n) at the observed points (missing NaN rows left out)."""
    out = []
    for t, x in zip(series.times, series.values):
        seen = ~np.isnan(x).any(axis=1)
        out.append((np.asarray(t, dtype=float)[seen], x[seen]))
    return out


MIN_INTERVAL = 0.5  # difference_data: shortest interval, as a fraction of the trajectory's median step


def _intervals(t: np.ndarray, min_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end indices of consecutive intervals of ``t`` at least ``min_fraction`` x the median step
    long: a point closer than that to the interval's start is skipped (its difference would be mostly noise)."""
    shortest = min_fraction * float(np.median(np.diff(t)))
    starts, ends, k = [], [], 0
    for j in range(1, len(t)):
        if t[j] - t[k] >= shortest:
            starts.append(k)
            ends.append(j)
            k = j
    return np.array(starts, dtype=int), np.array(ends, dtype=int)


def difference_data(series: Series, min_fraction: float = MIN_INTERVAL) -> DerivativeData:
    """Difference quotients at interval midpoints: for consecutive observed points ``a < b`` of a
    trajectory, the state ``(x_a + x_b) / 2`` and the derivative ``(x_b - x_a) / (t_b - t_a)``.

    Why: with few points per trajectory a smoother has too little to fit (7 points spanning several
    oscillations), and its derivatives are biased; the difference quotient is the exact mean of the
    derivative over the interval, and the midpoint rule makes the regression second-order accurate in the
    step (the implicit midpoint scheme). Its noise grows as ``1 / dt``, so intervals shorter than
    ``min_fraction`` x the median step are merged into the next. Missing points are skipped."""
    xs, ds, ids = [], [], []
    for k, (t, x) in enumerate(observed_points(series)):
        if len(t) < 2:
            raise DataError(f"a trajectory needs at least two observed points for a difference, got {len(t)}")
        a, b = _intervals(t, min_fraction)
        xs.append(0.5 * (x[a] + x[b]))
        ds.append((x[b] - x[a]) / (t[b] - t[a])[:, None])
        ids.append(np.full(len(a), k))
    return DerivativeData(np.concatenate(xs), np.concatenate(ds), np.concatenate(ids))


def smoother_kind(smooth: Any) -> str | None:
    """``"local"``, ``"spline"`` or ``"none"`` for a valid ``smooth`` of :func:`derivative_data` (True is
    ``"local"``, False ``"none"``), None for anything else: the one list of them (``SparseGraph`` checks its
    parameter with it before any work)."""
    kind = "local" if smooth is True else ("none" if smooth is False else smooth)
    return kind if isinstance(kind, str) and kind in ("local", "spline", "none") else None


def derivative_data(series: Series, smooth: bool | str = True) -> DerivativeData:
    """Smoothed states and derivatives of every trajectory of ``series`` (observed points only), stacked.

    ``smooth``: ``"local"`` or True (the local quadratic smoother), ``"spline"`` (:func:`smooth_trajectory`),
    or False (finite differences of the raw values)."""
    kind = smoother_kind(smooth)
    if kind is None:
        raise ValueError(f"smooth must be 'local', 'spline', True or False, got {smooth!r}")
    times, values = (list(column) for column in zip(*observed_points(series)))
    if kind == "local" and min(map(len, times)) >= MIN_POINTS:
        smoothed = _local_smooth(times, values)
    else:
        smoothed = [smooth_trajectory(t, x, kind == "spline") for t, x in zip(times, values)]
    xs, ds, ids = [], [], []
    for k, (value, slope) in enumerate(smoothed):
        xs.append(value)
        ds.append(slope)
        ids.append(np.full(len(value), k))
    return DerivativeData(np.concatenate(xs), np.concatenate(ds), np.concatenate(ids))
