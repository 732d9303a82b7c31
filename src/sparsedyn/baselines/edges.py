"""The classical graph-recovery tools a user compares sparsedyn with, on the same derivative data.

Each regresses smoothed derivatives (:mod:`sparsedyn.derivatives`) on states, both standardised
(so an edge score is comparable across features and outputs, and the data's units do not matter),
and returns an :class:`EdgeEstimate`: an edge-score matrix ``scores[i, j]`` (how strongly ``dx_i/dt``
depends on ``x_j``) and, where the tool has one, a derivative model that forecasts by integration.

- ``lasso_linear``: LassoCV per output on the states ("linear Granger"), folds over trajectories (over blocks
  of time for a single trajectory, :func:`cv_units`, as SparseGraph's).
- ``lasso_poly``: the same on degree-2 polynomial features; an edge scores the summed |coefficient|
  of every feature that contains ``x_j``.
- ``sindy``: pysindy's sequentially thresholded least squares on the degree-2 library, the threshold
  chosen by cross-validation over trajectories (error of the held-out derivatives).
- ``trees``: GENIE3 on derivatives: one extremely randomised tree ensemble per output, the edge score
  its impurity importance of ``x_j``.

scikit-learn and pysindy are the dev extra's; nothing here reimplements their solvers.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..derivatives import DerivativeData

Derivative = Callable[[np.ndarray], np.ndarray]  # states (N, n) in data units -> dx/dt (N, n)


@dataclass
class EdgeEstimate:
    """A tool's result: ``scores`` (n_out, n_in, higher = more likely an edge), its fit time in seconds,
    and ``derivative`` (None where the tool has no usable vector field)."""

    name: str
    scores: np.ndarray
    seconds: float
    derivative: Derivative | None = field(default=None, repr=False)


@dataclass
class Standardiser:
    """Per-feature affine maps of states and derivatives to mean 0, standard deviation 1."""

    x_mean: np.ndarray
    x_scale: np.ndarray
    d_mean: np.ndarray
    d_scale: np.ndarray

    @classmethod
    def fit(cls, data: DerivativeData) -> Standardiser:
        def scale(a: np.ndarray) -> np.ndarray:
            s = a.std(axis=0)
            return np.where(s > 0, s, 1.0)

        return cls(data.x.mean(axis=0), scale(data.x), data.dxdt.mean(axis=0), scale(data.dxdt))

    def states(self, x: np.ndarray) -> np.ndarray:
        return (x - self.x_mean) / self.x_scale

    def derivatives(self, d: np.ndarray) -> np.ndarray:
        return (d - self.d_mean) / self.d_scale

    def derivative_units(self, d_std: np.ndarray) -> np.ndarray:
        return d_std * self.d_scale + self.d_mean


def trajectory_folds(trajectory: np.ndarray, k: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``k`` (train, test) row-index splits that keep each trajectory whole (at least two folds)."""
    from sklearn.model_selection import GroupKFold

    groups = np.unique(trajectory)
    if len(groups) < 2:
        raise ValueError("cross-validation over trajectories needs at least two trajectories")
    return list(GroupKFold(n_splits=min(k, len(groups))).split(trajectory, groups=trajectory))


def cv_units(trajectory: np.ndarray, k: int) -> np.ndarray:
    """The units that ``k``-fold cross-validation holds out (one label per row, rows in time order within a
    trajectory): the trajectories, or for a single trajectory its ``2 k`` contiguous blocks of time (blocked
    cross-validation: a random split of one record's rows would score interpolation between neighbours).
    A single trajectory of fewer than 4 rows has no two blocks of two: a ``ValueError`` says so."""
    if len(np.unique(trajectory)) >= 2:
        return trajectory
    blocks = min(2 * k, len(trajectory) // 2)
    if blocks < 2:
        raise ValueError(f"cross-validation needs at least two trajectories, or one with at least 4 time points; "
                         f"got {len(trajectory)} points")
    return np.arange(len(trajectory)) * blocks // len(trajectory)


def _poly(n: int):
    from sklearn.preprocessing import PolynomialFeatures

    poly = PolynomialFeatures(degree=2, include_bias=False)
    poly.fit(np.zeros((1, n)))
    return poly


def _edge_scores(coef: np.ndarray, powers: np.ndarray) -> np.ndarray:
    """(n_out, n_features) coefficients -> (n_out, n_in): summed |coef| of the features containing x_j."""
    return np.abs(coef) @ (powers > 0).astype(float)


def _linear_field(scaler: Standardiser, transform: Callable[[np.ndarray], np.ndarray], coef: np.ndarray,
                  intercept: np.ndarray) -> Derivative:
    def derivative(x: np.ndarray) -> np.ndarray:
        z = transform(scaler.states(np.atleast_2d(x)))
        return scaler.derivative_units(z @ coef.T + intercept)

    return derivative


def _lasso(data: DerivativeData, degree: int, seed: int) -> EdgeEstimate:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LassoCV

    start = time.perf_counter()
    scaler = Standardiser.fit(data)
    z, y = scaler.states(data.x), scaler.derivatives(data.dxdt)
    n = z.shape[1]
    poly = _poly(n) if degree == 2 else None
    transform = poly.transform if poly is not None else (lambda a: a)
    features = transform(z)
    powers = poly.powers_ if poly is not None else np.eye(n)
    folds = trajectory_folds(cv_units(data.trajectory, 5))
    coef, intercept = np.zeros((n, features.shape[1])), np.zeros(n)
    with warnings.catch_warnings():  # weakly regularised points of the CV grid may stop short; say nothing
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i in range(n):
            model = LassoCV(cv=folds, random_state=seed, max_iter=5000).fit(features, y[:, i])
            coef[i], intercept[i] = model.coef_, model.intercept_
    name = "lasso_poly" if degree == 2 else "lasso_linear"
    return EdgeEstimate(name, _edge_scores(coef, powers), time.perf_counter() - start,
                        _linear_field(scaler, transform, coef, intercept))


def lasso_linear(data: DerivativeData, seed: int = 0) -> EdgeEstimate:
    """LassoCV of each standardised derivative on the standardised states (folds over trajectories)."""
    return _lasso(data, 1, seed)


def lasso_poly(data: DerivativeData, seed: int = 0) -> EdgeEstimate:
    """LassoCV on degree-2 polynomial features of the standardised states."""
    return _lasso(data, 2, seed)


def sindy(data: DerivativeData, seed: int = 0, thresholds: np.ndarray | None = None) -> EdgeEstimate:
    """pysindy's STLSQ on the degree-2 library (with a constant), the threshold chosen by the mean
    squared error of held-out trajectories' derivatives (3 folds) over ``thresholds`` (default 8 from 0.01 to 1)."""
    import pysindy as ps

    start = time.perf_counter()
    scaler = Standardiser.fit(data)
    z, y = scaler.states(data.x), scaler.derivatives(data.dxdt)
    n = z.shape[1]
    poly = _poly(n)
    features = np.hstack([np.ones((len(z), 1)), poly.transform(z)])
    grid = np.geomspace(0.01, 1.0, 8) if thresholds is None else np.asarray(thresholds)
    errors = np.zeros(len(grid))
    with warnings.catch_warnings():  # STLSQ warns for every threshold that cuts all terms of an output
        warnings.simplefilter("ignore")
        for train, test in trajectory_folds(cv_units(data.trajectory, 3), 3):
            for g, threshold in enumerate(grid):
                opt = ps.STLSQ(threshold=float(threshold), alpha=0.05).fit(features[train], y[train])
                errors[g] += float(((features[test] @ opt.coef_.T - y[test]) ** 2).mean())
        best = float(grid[int(np.argmin(errors))])
        coef = ps.STLSQ(threshold=best, alpha=0.05).fit(features, y).coef_
    intercept, coef = coef[:, 0], coef[:, 1:]
    return EdgeEstimate("sindy", _edge_scores(coef, poly.powers_), time.perf_counter() - start,
                        _linear_field(scaler, poly.transform, coef, intercept))


def trees(data: DerivativeData, seed: int = 0, n_estimators: int = 300) -> EdgeEstimate:
    """GENIE3 on derivatives: per output an ExtraTreesRegressor (``max_features="sqrt"``); the edge
    score is the importance of ``x_j`` for ``dx_i/dt`` (each output's importances sum to one)."""
    from sklearn.ensemble import ExtraTreesRegressor

    start = time.perf_counter()
    scaler = Standardiser.fit(data)
    z, y = scaler.states(data.x), scaler.derivatives(data.dxdt)
    n = z.shape[1]
    scores = np.zeros((n, n))
    for i in range(n):
        forest = ExtraTreesRegressor(n_estimators=n_estimators, max_features="sqrt", random_state=seed + i,
                                     n_jobs=1).fit(z, y[:, i])
        scores[i] = forest.feature_importances_
    return EdgeEstimate("trees", scores, time.perf_counter() - start)


BASELINES: dict[str, Callable[..., EdgeEstimate]] = {
    "lasso_linear": lasso_linear, "lasso_poly": lasso_poly, "sindy": sindy, "trees": trees,
}


def simulate(derivative: Derivative, x0: np.ndarray, t: np.ndarray, bound: float = 1e6,
             bounded: np.ndarray | None = None, centre: np.ndarray | None = None,
             spread: np.ndarray | None = None) -> np.ndarray:
    """Integrate ``dx/dt = derivative(x)`` from ``x0`` over the times ``t`` (LSODA); a blow-up beyond
    ``bound`` (or a failed solve) returns NaN from there on, which scores as a failed forecast. ``bounded``
    (n,) bool: the variables the bound watches (all by default; an unwrapped phase grows without bound).
    ``centre`` and ``spread`` (n,): the solver's coordinates are ``(x - centre) / spread`` (``derivative``,
    ``bound`` and the result stay in x's units), so that its relative tolerance applies to the dynamics and not
    to an offset: a state of 1e9 + O(1) at rtol 1e-5 is otherwise resolved to 1e4. The defaults (0, 1) integrate
    x itself."""
    from scipy.integrate import solve_ivp

    t = np.asarray(t, dtype=float)
    x0 = np.asarray(x0, dtype=float)
    out = np.full((len(t), len(x0)), np.nan)
    shift = np.zeros(len(x0)) if centre is None else np.asarray(centre, dtype=float)
    unit = np.ones(len(x0)) if spread is None else np.asarray(spread, dtype=float)

    def blown(_t: float, u: np.ndarray) -> float:
        x = shift + unit * u
        return bound - float(np.abs(x if bounded is None else x[bounded]).max(initial=0.0))

    blown.terminal = True  # type: ignore[attr-defined]
    sol = solve_ivp(lambda _t, u: derivative((shift + unit * u)[None])[0] / unit, (t[0], t[-1]), (x0 - shift) / unit,
                    t_eval=t, method="LSODA", events=blown, rtol=1e-5, atol=1e-7)
    out[: sol.y.shape[1]] = shift + unit * sol.y.T
    return out
