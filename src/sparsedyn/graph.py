"""``SparseGraph``: the dependency graph of a user's system from its trajectories, self-tuned, with confidence.

    from sparsedyn import SparseGraph
    g = SparseGraph().fit(X, t=t, feature_names=names)
    g.graph_               # (out, in) edge scores: mean |d f_i / d x_j| of the fitted field at the data
    g.edge_probability_    # (out, in) how often each edge is selected and needed, over random halves
    g.edges_               # one row per edge: source, target, score, probability, sign
    g.simulate(x0, t)      # forecast by integrating the fitted field
    g.plot("graph.png", X[:3], t)  # the graph with edge confidence, and forecasts of three trajectories

The pipeline (each step in its own module):

1. smoothed states and derivatives per trajectory, and difference quotients at interval midpoints
   (:mod:`sparsedyn.derivatives`; irregular times fine); the two designs are fitted alike (steps 2-4) and
   the differences kept only where they predict each held-out trajectory's next observation better
   (:mod:`sparsedyn.interval_error`): with few points per trajectory a smoother is biased, with many and
   noisy ones the differences are noisy;
2. states and derivatives standardised per feature (:class:`~sparsedyn.baselines.Standardiser`), so the
   data's units and scales do not matter; the field is mapped back for forecasts (angles named in
   ``periodic`` stay in radians, unwrapped, and enter the library as their cosine and sine);
3. one batched job (:mod:`sparsedyn.collocation`) fits the hybrid field (linear + degree-2 library + a
   small neural residual, one group penalty per input and output) along a strength path from "no
   edge" down, for K folds over trajectories and the full data at once, and for ``n_subsamples`` random
   halves of the trajectories (only for the design that is kept, and down to the stage step 6 reads);
4. the stage is chosen by the folds' held-out derivative error (mean of log errors, robust to one
   fold that extrapolates badly): ``graph_`` is read at the error minimum, the selected edges at the
   sparsest stage within one standard error of it (the one-standard-error rule); ``graph_`` averages the
   linear and the degree-2 library's graphs (each scaled to its largest off-diagonal score) with weights
   (held-out error)^-4, ``library_graphs_`` holds each; the forecasts use the library whose fold members
   forecast the held-out trajectories better from their first observation (``forecast_errors_``);
5. trajectory matching (:mod:`sparsedyn.shooting`): the forecasting library's selected terms refitted so
   that integrating the field from each observation reaches the next; kept for the forecasts only where
   the folds' refitted members forecast their held-out trajectories better (``refined_``);
6. ``edge_probability_``: over ``n_subsamples`` random halves of the trajectories, how often an edge is
   selected at that stage *and needed*: refitted without its source, the half's selected library terms
   predict the other half worse (:mod:`sparsedyn.loco`), averaged over the libraries tried. Selection
   frequency alone (stability selection, kept as ``edge_stability_``, :meth:`SparseGraph._stability`) was
   over-confident on the benchmark: 84% of its edges at >= 0.9 were true, where a correlated stand-in for
   a parent kept being selected; necessity put 94% true there (``docs/results-graph-recovery.md``).

Self-dependencies are never penalised (most systems' variables decay); report graphs without them.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .baselines.edges import Standardiser, cv_units, simulate, trajectory_folds
from .collocation import (
    HybridField,
    LibrarySystem,
    PathFit,
    adaptive_penalty_scale,
    fit_library_path,
    fit_path,
    lambda_max,
    library_lambda_max,
)
from .derivatives import DerivativeData, derivative_data, difference_data, observed_points, smoother_kind
from .interval_error import ObservedPairs, one_step_error, trajectory_error
from .loco import necessity_frequency
from .shooting import shooting_refit
from .tasks.user_data import (
    MISSING,
    DataError,
    Series,
    forecast_times,
    from_arrays,
    periodic_indices,
    unwrap_phases,
)

try:  # scikit-learn's own classes where it is installed: its tags, `except sklearn...NotFittedError` works
    from sklearn.base import BaseEstimator as _Base
    from sklearn.exceptions import NotFittedError as _NotFittedBase
except ImportError:  # pragma: no cover - scikit-learn is optional
    _Base = object
    _NotFittedBase = RuntimeError


DESIGNS = ("auto", "smoothed", "differences")  # SparseGraph(design=...): the rows it regresses on
# SparseGraph(progress=None) shows its bar from this many variables on: with 30 and 15 x 30 points a default fit
# takes 36 s of CPU on this project's machine (bench/graph_size.py, 2026-12-07; docs/results-graph-recovery.md)
PROGRESS_FEATURES = 20
# poly="auto" fits the degree-2 library up to this many features (30 variables): there a default fit takes
# 36 s of CPU, most of it the degree-2 paths, against 1.5 s for the linear library alone (bench/graph_size.py),
# and memory grows as features^2
MAX_AUTO_POLY_FEATURES = 500
LIBRARY_WEIGHT_POWER = 4.0  # graph_ averages the libraries' graphs with weights (held-out error)^-4


class NotFittedError(_NotFittedBase):
    """Raised by a :class:`SparseGraph` method that needs ``fit`` first."""


class GraphWarning(UserWarning):
    """A fit whose graph or forecasts should not be trusted as they are (the message says why)."""


_Halves = Callable[[int, Callable[[], object]], PathFit]  # (last stage, on_stage) -> the halves' path


@dataclass
class _Design:
    """One way of estimating derivatives, fitted: its scaler, standardised states ``z`` and derivatives ``y``,
    members' row ``weights`` (all members: folds, full data, halves), per library ``(field, path, mean log
    held-out error)`` of the folds' and the full data's members, and per library the random halves' path
    (``halves``: None without halves, or a function that fits it down to a given stage, run only for the
    design that is kept, :meth:`SparseGraph._fit_halves`)."""

    scaler: Standardiser
    z: torch.Tensor
    y: torch.Tensor
    weights: torch.Tensor
    fits: list[tuple[HybridField, PathFit, float]]
    halves: list[PathFit | _Halves | None]

    @property
    def errors(self) -> dict[str, float]:
        """Each library's mean log held-out error at its best stage, by library name."""
        return {_library_name(field): float(cv) for field, _, cv in self.fits}


@contextmanager
def _fit_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads and ``n`` BLAS threads for numpy and scipy (threadpoolctl),
    restoring the caller's counts after it: a fit's thread count is part of the fit (its ``fit_seconds_``
    is CPU time, which numpy's own thread pool inflated at 30 variables)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(threads)


DUPLICATE_CORRELATION = 0.999  # features this correlated over every observed point are one signal to the fit


def duplicate_pairs(observed: np.ndarray, names: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs of features whose values over every observed point (rows of ``observed``, NaN rows of missing
    points skipped) have |correlation| >= :data:`DUPLICATE_CORRELATION`: a copy, a change of unit, a sensor read
    twice. The fit cannot tell their edges apart (measured: an exact copy of a parent got probability 0.95 for
    its child, as the parent did). Constant features are left to their own warning."""
    rows = observed[~np.isnan(observed).any(axis=1)]
    spread = rows.std(axis=0)
    varying = np.flatnonzero(spread > 0)
    if len(rows) < 3 or len(varying) < 2:
        return []
    z = (rows[:, varying] - rows[:, varying].mean(axis=0)) / spread[varying]
    correlation = np.abs(z.T @ z) / len(rows)
    i, j = np.nonzero(np.triu(correlation >= DUPLICATE_CORRELATION, k=1))
    return [(names[varying[a]], names[varying[b]]) for a, b in zip(i, j)]


def _library_name(field: HybridField) -> str:
    return "degree 2" if field.poly else "linear"


def average_library_graphs(graphs: dict[str, np.ndarray], errors: dict[str, float],
                           power: float = LIBRARY_WEIGHT_POWER) -> np.ndarray:
    """The libraries' scaled graphs averaged with weights error^-``power`` (``errors``: mean log held-out
    errors, so the weight is exp(-power * error)). ``graph_`` is this at ``LIBRARY_WEIGHT_POWER``: averaging
    rather than keeping the lower-error library alone ranked the true edges better on held-out benchmark
    instances (``docs/results-graph-recovery.md``); the steep power keeps a library that predicts clearly
    worse (a spurious degree-2 fit to a linear system) from diluting the graph."""
    weights = np.array([math.exp(-power * errors[name]) for name in graphs])
    return sum(w * g for w, g in zip(weights / weights.sum(), graphs.values()))


class SparseGraph(_Base):
    """Self-tuning sparse hybrid vector field for graph recovery (see the module docstring).

    Parameters: ``hidden`` units of each output's neural residual (0: library only), ``poly`` degree-2
    library terms (``"auto"``: fit the linear and, up to 30 variables, the degree-2 library, forecast with
    the one that forecasts held-out trajectories better (``forecast_errors_``) and average their graphs with
    weights (held-out derivative error)^-4; ``library_errors_`` and ``library_graphs_`` hold both),
    ``n_stages`` strengths on the path (from the strength at which no edge enters down to
    ``min_ratio`` times it), ``steps`` Adam steps per stage, ``folds`` over trajectories, ``n_subsamples``
    halves of the trajectories for edge probabilities (0: none; ``edge_probability_`` is then whether each
    library's chosen stage selects the edge, averaged over the libraries: no probability), ``expected_false``
    the stability-selection bound on false edges among those with probability >= 0.9, ``smooth`` the
    derivative smoother (True or ``"local"``: the local quadratic smoother, the default; ``"spline"``: a GCV
    smoothing spline per trajectory, slower and no better on the benchmark's hard regimes; False: finite
    differences of the raw values; see :func:`~sparsedyn.derivatives.derivative_data`),
    ``design`` the regression rows (``"smoothed"``: states and derivatives of the smoother at the observed
    points; ``"differences"``: difference quotients at interval midpoints,
    :func:`~sparsedyn.derivatives.difference_data`; ``"auto"``: fit both, keep the differences only where they
    forecast the held-out trajectories' next observation better beyond one standard error; ``design_`` and
    ``design_errors_`` say which and why, ``design_graphs_`` the ``graph_`` of each design fitted), ``seed``
    every random choice, ``threads`` torch threads for the fit, ``progress`` a progress bar over the path
    stages on stderr (``None``: shown on an interactive terminal from ``PROGRESS_FEATURES`` variables on,
    where a default fit takes a minute or more on one core), ``refine`` trajectory matching of the
    forecasting field after collocation (:mod:`sparsedyn.shooting`; kept where the folds forecast better:
    ``refined_``, ``refine_errors_``; library fields only, ``hidden=0``), ``adaptive`` the adaptive group
    lasso's power (0, the default: off; ``gamma > 0``: each library's path is fitted twice, the second time
    with each group's penalty divided by (its norm at the first path's densest stage, relative to the mean)^gamma,
    :func:`~sparsedyn.collocation.adaptive_penalty_scale`; library fields only; it did not rank edges better
    on the benchmark, ``docs/results-graph-recovery.md``), ``missing`` what to do with time points where only
    some features are missing (``"error"``, the default, names the first such point; ``"interpolate"``: each
    feature's interior gaps filled linearly in time from its own observations and points with a gap at a
    trajectory's start or end dropped, :func:`~sparsedyn.tasks.user_data.interpolate_gaps`; ``n_interpolated_``
    and ``n_dropped_points_`` count them). Points missing every feature are left out in either case.
    ``periodic``: the features (names or column indices) that are angles in radians (phases of oscillators,
    headings): each trajectory's values are unwrapped, and the library takes ``cos x_j`` and ``sin x_j`` in place
    of ``x_j`` (:mod:`sparsedyn.collocation`), so that couplings such as ``sin(x_j - x_i)`` are in it; forecasts
    are unwrapped phases, and ``sign_`` is read with every angle at 0 (the other features at their means).
    Library fields only (``hidden=0``); other periods: convert to radians first.

    How well the fit predicts: ``cv_mse_``, the folds' held-out derivative error at the stage ``graph_`` is read
    at, in standardised units (1: what predicting the training mean scores; a ``GraphWarning`` when it is not
    below 1). The folds hold out whole trajectories, or for a single trajectory contiguous blocks of its time.
    ``constant_features_`` (features that never vary) and ``duplicate_features_`` (pairs of features that are one
    signal up to scale and offset, :func:`duplicate_pairs`) name what the data cannot resolve, each with a warning.
    """

    def __init__(self, hidden: int = 0, poly: bool | str = "auto", n_stages: int = 20, min_ratio: float = 3e-4,
                 steps: int = 150, lr: float = 0.02, folds: int = 5, n_subsamples: int = 10,
                 expected_false: float = 2.0, randomize: float = 1.0, smooth: bool | str = True, design: str = "auto",
                 seed: int = 0, threads: int = 1, progress: bool | None = None, refine: bool = True,
                 adaptive: float = 0.0, missing: str = "error",
                 periodic: Collection[int | str] | None = None) -> None:
        self.hidden, self.poly, self.n_stages, self.min_ratio = hidden, poly, n_stages, min_ratio
        self.adaptive, self.missing = adaptive, missing
        self.randomize = randomize
        self.steps, self.lr, self.folds, self.n_subsamples = steps, lr, folds, n_subsamples
        self.expected_false = expected_false
        self.smooth, self.design, self.seed, self.threads = smooth, design, seed, threads
        self.progress, self.refine = progress, refine
        self.periodic = periodic

    # -- scikit-learn protocol -------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        import inspect

        return {p: getattr(self, p) for p in inspect.signature(type(self).__init__).parameters if p != "self"}

    def set_params(self, **params: Any) -> SparseGraph:
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"SparseGraph has no parameter {k!r}; parameters: {', '.join(valid)}")
            setattr(self, k, v)
        return self

    def _check_params(self) -> None:
        checks = {"hidden": self.hidden >= 0, "poly": self.poly in (True, False, "auto"),
                  "n_stages": self.n_stages >= 2, "min_ratio": 0 < self.min_ratio < 1,
                  "steps": self.steps >= 1, "lr": self.lr > 0, "folds": self.folds >= 2,
                  "n_subsamples": self.n_subsamples >= 0,
                  "expected_false": self.expected_false > 0, "randomize": 0 < self.randomize <= 1,
                  "design": self.design in DESIGNS, "smooth": smoother_kind(self.smooth) is not None,
                  "threads": self.threads >= 1, "progress": self.progress in (None, True, False),
                  "refine": self.refine in (True, False), "adaptive": self.adaptive >= 0,
                  "missing": self.missing in MISSING,
                  "periodic": self.periodic is None or (not isinstance(self.periodic, str | bytes)
                                                       and isinstance(self.periodic, Collection))}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"SparseGraph: bad {bad[0]}={getattr(self, bad[0])!r}")
        if self.periodic is not None and len(self.periodic) and self.hidden:
            raise ValueError(f"SparseGraph: periodic features need a library field (hidden=0), "
                             f"got hidden={self.hidden}")

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, t: Any = None, masks: Any = None,
            feature_names: Sequence[str] | None = None) -> SparseGraph:
        """Fit to trajectories ``X`` observed at times ``t`` (as :func:`~sparsedyn.tasks.user_data.from_arrays`
        takes them; ``y`` is scikit-learn's unused slot). Folds and subsamples are over trajectories; a single
        trajectory is cut into contiguous blocks of time for them."""
        self._check_params()
        with _fit_threads(self.threads):  # torch's and numpy's: the thread count is part of the fit
            return self._fit(X, t, masks, feature_names)

    def _fit(self, X: Any, t: Any, masks: Any, feature_names: Sequence[str] | None) -> SparseGraph:
        start = time.process_time()
        series = from_arrays(X, t, masks, feature_names, self.missing)
        self.periodic_ = periodic_indices(self.periodic, series.features)
        series = unwrap_phases(series, self.periodic_)
        self.n_interpolated_, self.n_dropped_points_ = series.interpolated, series.dropped
        smoothed = derivative_data(series, self.smooth)
        groups = self._cv_groups(smoothed.trajectory)
        # the held-out groups of each fold, shared by every design so that their errors compare fold by fold
        held_out = [np.unique(groups[test]) for _, test in trajectory_folds(groups, self.folds)]
        self.n_folds_ = len(held_out)
        if self.design != "auto":
            names = [self.design]
        else:  # one trajectory's blocks of time differ between the designs: the smoother alone
            names = ["smoothed", "differences"] if len(np.unique(smoothed.trajectory)) >= 2 else ["smoothed"]
        candidates = {name: smoothed if name == "smoothed" else difference_data(series) for name in names}
        libraries = self._libraries(series.n_features, len(self.periodic_))
        if self.progress is None:  # from PROGRESS_FEATURES variables on, on a terminal (tqdm's disable=None)
            disable = None if series.n_features >= PROGRESS_FEATURES else True
        else:
            disable = not self.progress
        paths = 2 if self.adaptive and not self.hidden else 1  # the adaptive group lasso fits a second path
        total = (len(candidates) * len(libraries) * paths * self.n_stages
                 + (len(libraries) if self.n_subsamples else 0))  # the halves' stages are added when known
        with tqdm(total=total, desc="SparseGraph", unit="stage", disable=disable) as bar:
            designs = {name: self._fit_design(data, held_out, libraries, bar.update)
                       for name, data in candidates.items()}
            pairs = ObservedPairs.of(series)
            if len(designs) > 1:
                self.design_errors_ = self._one_step_errors(designs, pairs, held_out)
                self.design_ = self._pick_design(self.design_errors_)
            else:
                self.design_errors_ = {}
                self.design_ = next(iter(designs))
            chosen = designs[self.design_]
            # one trajectory: its folds are blocks of time, not trajectories; the derivative error decides
            self.forecast_errors_ = (self._library_forecast_errors(chosen, series, held_out)
                                     if len(np.unique(pairs.trajectory)) >= 2 else {})
            library_graphs = {name: self._library_graphs(design) for name, design in designs.items()}
            self.design_graphs_ = {name: average_library_graphs(library_graphs[name], design.errors)
                                   for name, design in designs.items()}
            fits, self.scaler_ = chosen.fits, chosen.scaler
            # the libraries' folds' held-out derivative errors at each path's best stage (mean log error)
            self.library_errors_ = chosen.errors
            self.library_graphs_ = library_graphs[self.design_]
            self.field_, self.path_, _ = min(fits, key=self._forecast_rank)
            self.poly_ = self.field_.poly
            self.feature_names_in_ = list(series.features)
            self.n_features_in_ = series.n_features
            observed = np.concatenate(series.values)
            self.constant_features_ = [name for name, spread in zip(self.feature_names_in_, np.nanmax(observed, 0)
                                                                     - np.nanmin(observed, 0)) if not spread > 0]
            self.duplicate_features_ = duplicate_pairs(observed, self.feature_names_in_)
            self._choose(self.path_)
            self.refined_ = False
            self.refine_errors_: dict[str, float] = {}
            if self.refine and self.forecast_errors_ and not self.hidden:
                self._refine(chosen, pairs, series, held_out)
            halves = self._fit_halves(chosen, bar)
            # stable under every library tried: the mean of each library's selection frequencies
            self.edge_stability_ = np.mean([self._stability_of(path, half) for (_, path, _), half
                                            in zip(fits, halves)], axis=0)
            if self.n_subsamples:  # selected and needed, averaged over the libraries; without halves: the selection
                necessity = []
                for (field, path, _), half in zip(fits, halves):
                    assert half is not None  # every library has its halves' path when there are halves
                    necessity.append(self._necessity_of(field, path, half, chosen.z, chosen.y, chosen.weights))
                    bar.update()
                self.edge_probability_ = np.mean(necessity, axis=0)
            else:
                self.edge_probability_ = self.edge_stability_
        self.fit_seconds_ = time.process_time() - start
        self._warn()
        return self

    def _libraries(self, n: int, n_periodic: int = 0) -> list[bool]:
        """Which libraries to fit (False: linear, True: degree 2). ``poly="auto"`` fits both while the degree-2
        library has at most ``MAX_AUTO_POLY_FEATURES`` features (30 variables) and the linear one alone beyond,
        with a warning: its cost grows as the square of its n^2 / 2 features."""
        if self.poly != "auto":
            return [bool(self.poly)]
        lifted = n + n_periodic  # a periodic variable enters as two features, its cosine and sine
        features = 1 + lifted + lifted * (lifted + 1) // 2
        if n_periodic and features <= MAX_AUTO_POLY_FEATURES:
            # phases interact through differences, sin(x_j - x_i) = sin_j cos_i - cos_j sin_i: products of the
            # features; the linear library adds only each phase's own cosine and sine, and forecasts the drift
            return [True]
        if features <= MAX_AUTO_POLY_FEATURES:
            return [False, True]
        warnings.warn(f"SparseGraph: {n} variables make {features} degree-2 library features, more than "
                      f"poly='auto' fits ({MAX_AUTO_POLY_FEATURES}, 30 variables): the linear library alone is "
                      "fitted (poly=True forces the degree-2 one; its cost grows as the square of the features)",
                      GraphWarning, stacklevel=4)
        return [False]

    def _fit_design(self, data: DerivativeData, held_out: list[np.ndarray], libraries: list[bool],
                    on_stage: Callable[[], object]) -> _Design:
        """Standardise one design's rows and fit every library's path on them, for every member."""
        scaler = Standardiser.fit(data)
        if self.periodic_:  # angles stay in radians: the field takes their cosines and sines
            keep = np.zeros(data.x.shape[1], dtype=bool)
            keep[list(self.periodic_)] = True
            scaler = dataclasses.replace(scaler, x_mean=np.where(keep, 0.0, scaler.x_mean),
                                         x_scale=np.where(keep, 1.0, scaler.x_scale))
        z = torch.as_tensor(scaler.states(data.x), dtype=torch.float32)
        y = torch.as_tensor(scaler.derivatives(data.dxdt), dtype=torch.float32)
        weights = self._members(self._cv_groups(data.trajectory), held_out)
        fits = [self._fit_path(poly, z, y, weights, data.x.shape[1], on_stage) for poly in libraries]
        return _Design(scaler, z, y, weights, [fit[:3] for fit in fits], [fit[3] for fit in fits])

    def _one_step_errors(self, designs: dict[str, _Design], pairs: ObservedPairs, held_out: list[np.ndarray]
                         ) -> dict[str, np.ndarray]:
        """Per design, each fold's one-step-ahead error on its held-out trajectories of the design's
        lowest-derivative-error library (:meth:`_fold_one_step_errors`)."""
        return {name: self._fold_one_step_errors(design, min(design.fits, key=lambda f: f[2]), pairs, held_out)
                for name, design in designs.items()}

    def _library_forecast_errors(self, design: _Design, series: Series, held_out: list[np.ndarray]
                                 ) -> dict[str, float]:
        """Per library of a design, the mean log over folds of its fold members' error (at the path's best
        stage) in forecasting the fold's held-out trajectories from their first observation
        (:func:`~sparsedyn.interval_error.trajectory_error`, averaged over the fold's trajectories): the
        forecasts use the lower. Both libraries are fitted to the same derivatives, but the lower derivative
        error did not pick the better forecaster: on the benchmark (336 data sets) this raised the forecast
        R^2 by +0.070 [+0.024, +0.116] in the hard regimes, paired against choosing by derivative error, and
        by +0.087 [+0.012, +0.180] on held-out instances (``docs/results-graph-recovery.md``)."""
        errors = {}
        for field, path, _ in design.fits:
            field.load_state_dict(path.states[self._cv_curve(path)[2]])
            errors[_library_name(field)] = self._fold_forecast_error(field, design.scaler, series, held_out)
        return errors

    @staticmethod
    def _fold_forecast_error(field: HybridField, scaler: Standardiser, series: Series,
                             held_out: list[np.ndarray]) -> float:
        """Mean log over folds of fold member ``f``'s mean error in forecasting fold ``f``'s held-out
        trajectories from their first observation (:func:`~sparsedyn.interval_error.trajectory_error`)."""
        observed = observed_points(series)
        scale = np.concatenate([x for _, x in observed]).std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        folds = [trajectory_error(field.member(f), scaler, [observed[int(k)] for k in ids], scale).mean()
                 for f, ids in enumerate(held_out)]
        return float(np.mean(np.log(np.clip(folds, 1e-12, None))))

    def _fold_one_step_errors(self, design: _Design, fit: tuple[HybridField, PathFit, float], pairs: ObservedPairs,
                              held_out: list[np.ndarray]) -> np.ndarray:
        """Each fold's one-step-ahead error on its held-out trajectories
        (:func:`~sparsedyn.interval_error.one_step_error`) of one library's fold members at the path's best
        stage, capped at persistence's (repeating the last observation): a field that forecasts worse than
        that, or blows up, has no skill, and one blow-up must not outweigh the other folds."""
        scale = pairs.start.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        rows = [np.isin(pairs.trajectory, ids) for ids in held_out]
        persistence = np.array([np.mean(((pairs.end[r] - pairs.start[r]) / scale) ** 2) for r in rows])
        field, path, _ = fit
        field.load_state_dict(path.states[self._cv_curve(path)[2]])
        raw = np.array([one_step_error(field.member(f), design.scaler, pairs, r, scale) for f, r in enumerate(rows)])
        return np.fmin(np.nan_to_num(raw, nan=np.inf), persistence)

    def _refine(self, design: _Design, pairs: ObservedPairs, series: Series, held_out: list[np.ndarray]) -> None:
        """Trajectory matching (:func:`~sparsedyn.shooting.shooting_refit`) of the forecasting library's
        folds' and full-data members at the path's best stage; the refitted full-data field replaces
        ``fitted_`` (forecasts and derivatives; ``graph_``, ``sign_`` and the edges stay the collocation
        fit's) only if the refitted fold members forecast their held-out trajectories better
        (``refine_errors_``: mean log error over the folds, before and after)."""
        full = self.n_folds_
        self.field_.load_state_dict(self.path_.states[self.best_stage_])
        rows = np.array([~np.isin(pairs.trajectory, ids) for ids in held_out] + [np.ones(len(pairs.dt), bool)])
        # the field holds the folds' and the full data's members (the halves are fitted apart); the refit is a copy
        refit = shooting_refit(self.field_, design.scaler, pairs, rows)  # under fit()'s thread count
        before = self.forecast_errors_[_library_name(self.field_)]
        after = self._fold_forecast_error(refit, design.scaler, series, held_out)
        self.refine_errors_ = {"collocation": before, "trajectory matching": after}
        if after < before:
            self.refined_, self.fitted_ = True, refit.member(full)

    def _forecast_rank(self, fit: tuple[HybridField, PathFit, float]) -> tuple[float, float]:
        """Sort key of the library that forecasts: its held-out forecast error (``forecast_errors_``; absent
        for one trajectory, whose folds are blocks of time), then its derivative error."""
        name = _library_name(fit[0])
        return self.forecast_errors_.get(name, 0.0), fit[2]

    def _library_graphs(self, design: _Design) -> dict[str, np.ndarray]:
        """Per library of a design: the full data's mean |Jacobian| at the library's best stage, divided by its
        largest off-diagonal score (so that the libraries' graphs average on one scale)."""
        off = ~np.eye(design.z.shape[1], dtype=bool)
        graphs = {}
        for field, path, _ in design.fits:
            g = path.jacobian[self._cv_curve(path)[2], self.n_folds_].numpy().astype(float)
            top = g[off].max() if off.any() else 0.0
            graphs[_library_name(field)] = g / top if top > 0 else g
        return graphs

    @staticmethod
    def _pick_design(errors: dict[str, np.ndarray]) -> str:
        """Difference quotients only where they predict the held-out observations better than the smoothed
        derivatives by more than one standard error of the folds' paired log-error differences (the smoother
        is the default: with much noise both are at the noise floor and differ by chance)."""
        gap = np.log(np.clip(errors["differences"], 1e-12, None)) - np.log(np.clip(errors["smoothed"], 1e-12, None))
        gap = gap[np.isfinite(gap)]
        if len(gap) < 2:
            return "smoothed"
        return "differences" if gap.mean() + gap.std(ddof=1) / math.sqrt(len(gap)) < 0 else "smoothed"

    def _fit_path(self, poly: bool, z: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, n: int,
                  on_stage: Callable[[], object] | None = None
                  ) -> tuple[HybridField, PathFit, float, PathFit | _Halves | None]:
        """One library's path: the field and path of the folds' and the full data's members, their best mean
        log held-out error over the folds, and the random halves' path (see :class:`_Design`).

        The plain library path (the default) fits the folds and the full data first and leaves the halves for
        later: they only serve ``edge_probability_`` and ``edge_stability_``, which read them down to the
        one-standard-error stage of the design that is kept, so a design that is not kept, and the stages
        past that one, are never fitted for them. Members are independent and their quadratic problems are
        sliced from one computed for all of them, so the numbers are those of fitting all members at once, bit
        for bit (test); at 30 variables a default fit takes 0.61x the time. The adaptive path (whose
        second path needs every member's first one) and the neural residual fit all members at once."""
        if self.hidden == 0:  # quadratic loss: FISTA on Gram matrices
            randomised = self._penalty_scale(n)  # the path starts where the plain penalty admits an edge
            if not self.adaptive:
                return self._fit_deferred(poly, z, y, weights, randomised, on_stage)
            field, path = self._library_path(poly, z, y, weights, randomised, None, on_stage)
            # a second path, each group's penalty set by its norm on the first
            scale = adaptive_penalty_scale(self._adaptive_norms(path), field.off_diagonal, self.adaptive)
            scale = scale if randomised is None else scale * randomised
            field, path = self._library_path(poly, z, y, weights, scale, scale, on_stage)
        else:
            field = HybridField(len(weights), n, self.hidden, poly, torch.Generator().manual_seed(self.seed))
            lambdas = self._lambdas(lambda_max(field, z, y, weights))
            path = fit_path(field, z, y, weights, lambdas, self.steps, self.lr, on_stage)
        return self._split(field, path)

    def _member_slices(self) -> tuple[slice, slice]:
        """The members of a fit's rows (:meth:`_members`): the folds' and the full data's, then the halves'."""
        return slice(0, self.n_folds_ + 1), slice(self.n_folds_ + 1, None)

    def _split(self, field: HybridField, path: PathFit) -> tuple[HybridField, PathFit, float, PathFit | None]:
        """A path of every member as :meth:`_fit_path` returns it: the folds' and the full data's members, their
        best error, and the halves' path (None without halves)."""
        head, rest = self._member_slices()
        halves = path.select(rest, field) if self.n_subsamples else None
        path = path.select(head, field)
        return field.members(head), path, float(self._cv_curve(path)[0].min()), halves

    def _fit_deferred(self, poly: bool, z: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
                      randomised: torch.Tensor | None, on_stage: Callable[[], object] | None
                      ) -> tuple[HybridField, PathFit, float, _Halves | None]:
        """The plain library path of the folds' and the full data's members now, the halves' deferred
        (:meth:`_fit_path`): the same initial values, strengths and quadratic problems as fitting every
        member at once."""
        head, rest = self._member_slices()
        field = HybridField(len(weights), z.shape[1], 0, poly, torch.Generator().manual_seed(self.seed),
                            periodic=self.periodic_)
        lambdas = self._lambdas(library_lambda_max(field, z, y, weights, None))
        system = LibrarySystem.of(field, z, y, weights)  # every member's, sliced below
        halves = (self._deferred_halves(field.members(rest), z, y, weights[rest], lambdas,
                                        None if randomised is None else randomised[rest], system.select(rest))
                  if self.n_subsamples else None)
        field = field.members(head)
        path = fit_library_path(field, z, y, weights[head], lambdas, self.steps,
                                None if randomised is None else randomised[head], on_stage, system.select(head))
        return field, path, float(self._cv_curve(path)[0].min()), halves

    def _deferred_halves(self, field: HybridField, z: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
                         lambdas: torch.Tensor, scale: torch.Tensor | None, system: LibrarySystem) -> _Halves:
        """The halves' library path (``field``: their members, untrained; ``system`` their rows of every
        member's quadratic problem) as a function of the last stage it needs."""

        def fit(last: int, on_stage: Callable[[], object]) -> PathFit:
            return fit_library_path(field, z, y, weights, lambdas[: last + 1], self.steps, scale, on_stage, system)

        return fit

    def _fit_halves(self, design: _Design, bar: Any) -> list[PathFit | None]:
        """The kept design's halves' paths, fitting the deferred ones down to their library's
        one-standard-error stage (the progress bar's total grows by those stages)."""
        out = []
        for (_, path, _), halves in zip(design.fits, design.halves):
            if callable(halves):
                last = self._cv_curve(path)[3]
                bar.total += last + 1
                bar.refresh()
                halves = halves(last, bar.update)
            out.append(halves)
        return out

    def _library_path(self, poly: bool, z: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
                      scale: torch.Tensor | None, top_scale: torch.Tensor | None,
                      on_stage: Callable[[], object] | None) -> tuple[HybridField, PathFit]:
        """A library field (no residual) fitted along the path, every member, each group's penalty multiplied by
        ``scale`` (M, n, n) where given; the path starts at the strength from which no edge enters under the
        factors ``top_scale`` (None: the plain penalty)."""
        field = HybridField(len(weights), z.shape[1], 0, poly, torch.Generator().manual_seed(self.seed),
                            periodic=self.periodic_)
        lambdas = self._lambdas(library_lambda_max(field, z, y, weights, top_scale))
        return field, fit_library_path(field, z, y, weights, lambdas, self.steps, scale, on_stage)

    def _lambdas(self, top: float) -> torch.Tensor:
        """The path's ``n_stages`` strengths, from ``top`` down to ``min_ratio`` times it (geometric)."""
        return top * torch.logspace(0, math.log10(self.min_ratio), self.n_stages)

    @staticmethod
    def _adaptive_norms(path: PathFit) -> torch.Tensor:
        """The group norms (M, n, n) the adaptive path's penalty factors come from: each member's at the first
        path's densest stage (nearly least squares)."""
        return path.norms[-1]

    def _penalty_scale(self, n: int) -> torch.Tensor | None:
        """The randomised lasso (Meinshausen & Buehlmann 2010, section 3.1) for the subsample members: each
        group's penalty divided by a weight drawn uniformly from ``[randomize, 1]`` (1: no randomisation);
        the folds' and the full data's members keep the plain penalty."""
        if self.randomize >= 1.0 or not self.n_subsamples:
            return None
        generator = torch.Generator().manual_seed(self.seed + 7)
        draws = self.randomize + (1 - self.randomize) * torch.rand(self.n_subsamples, n, n, generator=generator)
        return torch.cat([torch.ones(self.n_folds_ + 1, n, n), 1.0 / draws])

    def _cv_groups(self, trajectory: np.ndarray) -> np.ndarray:
        """The units that folds and subsamples draw: the trajectories, or for one trajectory its
        ``2 x folds`` contiguous blocks of time (blocked cross-validation; derivatives were smoothed
        over the whole trajectory first)."""
        try:
            return cv_units(trajectory, self.folds)
        except ValueError:
            raise DataError(f"SparseGraph needs at least two trajectories, or one with at least 4 time points "
                            f"(its strength is cross-validated over them); got {len(trajectory)} points") from None

    def _members(self, groups: np.ndarray, held_out: list[np.ndarray]) -> torch.Tensor:
        """0/1 row weights (M, N): each fold's training rows (all but its ``held_out`` groups), all rows, then
        the subsamples' rows (random halves of the groups)."""
        rows = [~np.isin(groups, ids) for ids in held_out]
        rows.append(np.ones(len(groups), dtype=bool))
        ids = np.unique(groups)
        rng = np.random.default_rng(self.seed)
        for _ in range(self.n_subsamples):
            half = rng.choice(ids, size=max(1, len(ids) // 2), replace=False)
            rows.append(np.isin(groups, half))
        return torch.as_tensor(np.array(rows), dtype=torch.float32)

    def _cv_curve(self, path: PathFit) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Mean and standard error over folds of the log held-out error per stage, the error-minimising
        stage, and the sparsest stage within one standard error of it (the lambdas decrease)."""
        log_err = torch.log(path.val_mse[:, : self.n_folds_].clamp_min(1e-12))
        mean = log_err.mean(dim=1).numpy()
        se = (log_err.std(dim=1) / math.sqrt(self.n_folds_)).numpy()
        best = int(np.argmin(mean))
        return mean, se, best, int(np.flatnonzero(mean <= mean[best] + se[best]).min())

    def _choose(self, path: PathFit) -> None:
        """The CV curve of the chosen library and the stages read off it."""
        full = self.n_folds_
        self.cv_mean_, self.cv_se_, best, self.stage_ = self._cv_curve(path)
        self.best_stage_ = best
        self.lambdas_ = path.lambdas.numpy()
        self.strength_ = float(self.lambdas_[self.stage_])
        self.graph_ = self.design_graphs_[self.design_]  # the same read-out: best stage, full data
        selected = path.norms[self.stage_, full].numpy() > 0
        np.fill_diagonal(selected, True)
        self.support_ = selected
        self.field_.load_state_dict(path.states[best])
        self.fitted_ = self.field_.member(full)  # the reported field: the full data's, at the best stage
        self.sign_ = np.sign(self._signed_jacobian())
        self.train_mse_ = float(path.train_mse[best, full])
        self.cv_mse_ = float(np.exp(self.cv_mean_[best]))

    def _stability_of(self, path: PathFit, halves: PathFit | None) -> np.ndarray:
        """One library's stability-selection frequencies, over the halves' path (``halves``, None without
        them) down to the library's one-standard-error stage (``path``: the folds' and the full data's)."""
        stage = self._cv_curve(path)[3]
        selected = path.norms[stage, self.n_folds_].numpy() > 0
        n = selected.shape[0]
        subs = halves.norms[: stage + 1].numpy() > 0 if halves is not None else np.zeros((stage + 1, 0, n, n), bool)
        return self._stability(subs, selected, stage)

    def _necessity_of(self, field: HybridField, path: PathFit, halves: PathFit, z: torch.Tensor,
                      y: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
        """One library's necessity frequencies (:func:`~sparsedyn.loco.necessity_frequency`): each random
        half's selection (``halves``' path) at the library's one-standard-error stage (``path``'s), refitted on
        the half and scored on the other half (``weights``: every member's rows, the halves' last)."""
        stage = self._cv_curve(path)[3]
        rows = self._member_slices()[1]
        return necessity_frequency(z, y, weights, rows, halves.norms[stage].numpy() > 0, field.poly,
                                   periodic=field.periodic)

    def _stability(self, subs: np.ndarray, selected: np.ndarray, stage: int) -> np.ndarray:
        """Stability selection (Meinshausen & Buehlmann 2010) over the path's strong end: an edge's
        probability is its highest selection frequency across the subsamples at any stage from the top
        down to the first one whose subsamples select on average ``q = sqrt(expected_false x (2 x 0.9 - 1)
        x p)`` or more of the ``p`` possible edges (never past the one-standard-error stage). Under their
        assumptions, and were the grid continuous, the edges with probability >= 0.9 would hold at most
        ``expected_false`` false ones on average; the benchmark measures what they hold. ``subs`` (stages,
        subsamples, n, n) says which groups each subsample kept."""
        n = self.n_features_in_
        if not len(subs[0]):
            probability = selected.astype(float)
        else:
            off = ~np.eye(n, dtype=bool)
            q_max = math.sqrt(self.expected_false * 0.8 * off.sum())
            counts = subs[:, :, off].sum(axis=2).mean(axis=1)  # (stages,) mean edges a subsample keeps
            reached = np.flatnonzero(counts >= q_max)  # the grid is discrete: the first stage to reach q
            last = min(int(reached.min()) if len(reached) else stage, stage)
            probability = subs[: last + 1].mean(axis=1).max(axis=0)
        np.fill_diagonal(probability, 1.0)
        return probability

    def _signed_jacobian(self) -> np.ndarray:
        """``df_i/dx_j`` of the reported field at the data's mean state (standardised units)."""
        z = torch.as_tensor(self.scaler_.states(self.scaler_.x_mean[None]), dtype=torch.float32)[0]
        jac = torch.autograd.functional.jacobian(lambda v: self.fitted_(v[None])[0, 0], z)
        return jac.detach().numpy()

    def _warn(self) -> None:
        if self.duplicate_features_:
            pairs = ", ".join(f"{a} ~ {b}" for a, b in self.duplicate_features_[:5])
            more = f" and {len(self.duplicate_features_) - 5} more pairs" if len(self.duplicate_features_) > 5 else ""
            warnings.warn(f"SparseGraph: {pairs}{more} are the same signal up to scale and offset (|correlation| >= "
                          f"{DUPLICATE_CORRELATION}): the data cannot tell an edge out of one from an edge out of the "
                          "other, and edge_probability_ may call both needed; drop one of each pair",
                          GraphWarning, stacklevel=4)
        if self.constant_features_:
            warnings.warn(f"SparseGraph: {self.constant_features_} do not vary in the data, so no edge out of "
                          "them can be estimated (their scores are 0); drop them or add trajectories where "
                          "they move", GraphWarning, stacklevel=4)
        off = ~np.eye(self.n_features_in_, dtype=bool)
        if off.any() and not self.graph_[off].any():
            warnings.warn("SparseGraph: no edge between variables at all: the stage that predicts held-out "
                          "derivatives best is the one that cuts every edge, so graph_ and edges_ score every edge 0 "
                          "(the data do not support any dependency this fit can see)", GraphWarning, stacklevel=4)
        elif off.any() and not self.support_[off].any():  # one variable has no edge to miss
            warnings.warn("SparseGraph: the selected graph has no edge between variables (the one-standard-error "
                          "stage cuts them all); graph_ still ranks candidate edges by the best-fitting stage",
                          GraphWarning, stacklevel=4)
        if self.cv_mse_ >= 1.0:
            warnings.warn(f"SparseGraph: the held-out derivative error ({self.cv_mse_:.3g} in standardised units) "
                          "is no better than predicting the training mean (1.0): the graph is not supported by "
                          "the fit", GraphWarning, stacklevel=4)

    # -- read-outs -----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "graph_"):
            raise NotFittedError("this SparseGraph is not fitted yet: call fit(X, t=...) first")

    @property
    def edges_(self) -> list[dict[str, Any]]:
        """Every edge between distinct variables, best first: source, target, score, probability, sign,
        selected (in the one-standard-error graph)."""
        self._check_fitted()
        names, rows = self.feature_names_in_, []
        for i in range(self.n_features_in_):
            for j in range(self.n_features_in_):
                if i != j:
                    rows.append({"source": names[j], "target": names[i], "score": float(self.graph_[i, j]),
                                 "probability": float(self.edge_probability_[i, j]),
                                 "sign": int(self.sign_[i, j]), "selected": bool(self.support_[i, j])})
        return sorted(rows, key=lambda r: (-r["score"], r["source"], r["target"]))

    def plot(self, path: str | Path, X: Any = None, t: Any = None, truth: np.ndarray | None = None,
             **options: Any) -> Path:
        """Write the graph with each edge's confidence and, given trajectories ``X`` at times ``t``, their
        forecasts next to the observations, to ``path`` (PNG; :func:`~sparsedyn.graph_figure.plot_graph`)."""
        from .graph_figure import plot_graph

        if Path(path).is_dir():
            raise DataError(f"{path}: is a folder; plot needs a file name (e.g. {Path(path) / 'graph.png'})")
        return plot_graph(self, path, X, t, truth, **options)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        """The fitted field (at the error-minimising stage) in the data's units: states (N, n) -> dx/dt (N, n)."""
        self._check_fitted()
        states = np.atleast_2d(np.asarray(x, dtype=float))
        n = self.n_features_in_
        if states.ndim != 2 or states.shape[1] != n:
            raise DataError(f"x must be ({n},) or (N, {n}) states, got shape {np.shape(x)}")
        if not np.isfinite(states).all():
            raise DataError("x contains NaN or inf")
        return self._derivative(states)

    def _derivative(self, states: np.ndarray) -> np.ndarray:
        """:meth:`derivative` unchecked, for the solver's many calls (a trial state past a blow-up may be inf, and
        its NaN is what :meth:`simulate` reads as one)."""
        z = torch.as_tensor(self.scaler_.states(states), dtype=torch.float32)
        with torch.no_grad():
            out = self.fitted_(z)[0].numpy().astype(float)
        return self.scaler_.derivative_units(out)

    def simulate(self, x0: Any, t: Any) -> np.ndarray:
        """Forecast from initial state(s) ``x0`` ((n,) or (B, n), as :meth:`SparseODE.simulate
        <sparsedyn.estimator.SparseODE.simulate>` takes them) over times ``t`` ((T,); decreasing times forecast
        backwards): (T, n) or (B, T, n); NaN after a blow-up, with a :class:`GraphWarning` that says when (a silent
        NaN would read as missing data)."""
        self._check_fitted()
        x = np.asarray(x0, dtype=float)
        n = self.n_features_in_
        if x.shape[-1:] != (n,) or x.ndim > 2 or not np.isfinite(x).all():
            raise DataError(f"x0 must be ({n},) or (B, {n}) finite values, got shape {x.shape}")
        scale = np.abs(self.scaler_.x_mean) + 10 * self.scaler_.x_scale
        bounded = np.ones(n, dtype=bool)  # an unwrapped phase grows without bound; its rate is bounded
        bounded[list(getattr(self, "periodic_", ()))] = False
        bound = float(scale[bounded].max()) * 10 if bounded.any() else math.inf
        t = forecast_times(t)
        forecast = np.stack([simulate(self._derivative, row, t, bound=bound, bounded=bounded,
                                      centre=self.scaler_.x_mean, spread=self.scaler_.x_scale)
                             for row in np.atleast_2d(x)])  # (B, T, n)
        blown = np.isnan(forecast).any(axis=2)  # (B, T)
        if blown.any():
            first = min(int(np.argmax(row)) for row in blown if row.any())
            which = "" if x.ndim == 1 else f" of {int(blown.any(axis=1).sum())} of {len(x)} initial states"
            why = ("a degree-2 library can do so far from the data (this fit forecasts with it; SparseGraph(poly="
                   "False) fits the linear one alone)" if self.field_.poly else "this fit's linear field has a "
                   "growing mode (as the data's system may have, or as a field the data determine poorly can: see "
                   "the fit's warnings)")
            warnings.warn(f"SparseGraph.simulate: the forecast{which} left the data's range (|x| beyond 10 x (|mean| "
                          f"+ 10 sd)) before t = {t[first]:.4g} and is NaN from there on; {why}", GraphWarning,
                          stacklevel=2)
        return forecast[0] if x.ndim == 1 else forecast
