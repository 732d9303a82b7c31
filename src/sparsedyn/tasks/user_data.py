"""Users' own time series: arrays, CSV, NPZ or AnnData read into checked trajectories.

Every reader returns a :class:`Series` (per trajectory its times and values, the feature names)
after the same checks, each error naming the problem: non-numeric columns, NaN or inf where a
value is observed, unsorted or duplicate times, a single time point, an unobserved initial state.
A missing value is a whole time point left out of a trajectory (NaN in every feature, or ``False``
in a mask): the models observe whole states, so a point with only some features missing is an
error (drop the point or impute it), unless the reader is asked for ``missing="interpolate"``
(:func:`interpolate_gaps`: each feature's interior gaps filled linearly in time from its own
observations, points missing some features at a trajectory's start or end dropped). Rows in another
order and points sharing a time are errors too, unless asked for ``sort=True`` and
``duplicates="average"`` (:mod:`~sparsedyn.tasks.time_order`: pseudotime tables, replicates).

File layouts (``time``, ``group`` and ``features`` name columns / keys):

- **CSV** (``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz``): one row per observation, separated by commas,
  semicolons or tabs (read off the header line; a semicolon file may use decimal commas); a ``time`` column
  (numbers, or ISO 8601 date-times such as ``2024-01-01 10:30``, read as seconds since the earliest), an
  optional ``group`` column (trajectory id; rows of a trajectory sorted by time, or ``sort=True``), feature
  columns (default: every other column).
- **NPZ**: ``x`` of shape (T, n) or (B, T, n), the times under ``time`` (default ``t``) of shape
  (T,) or (B, T), optional ``mask`` (B, T) and ``features`` (n,).
- **AnnData** (``.h5ad``, the ``singlecell`` extra): cells are observations; time from
  ``obs[time]`` (e.g. a pseudotime), trajectory from ``obs[group]`` (e.g. a lineage), genes
  from ``var_names``; cells are sorted by time within their trajectory.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .csv_table import parse_csv
from .series import DataError, NonNumericError, Series, among
from .time_order import DUPLICATES, average_duplicate_times, sort_by_time

_AVERAGE = ("; if the points are samples of one state (cells at one pseudotime, replicates), average them: "
            "duplicates='average', sparsedyn graph --duplicates average")
MISSING = ("error", "interpolate")  # what a reader does with a time point where only some features are missing


def _partly_missing(x: np.ndarray) -> np.ndarray:
    """(T,) True at the time points of ``x`` (T, n) with some features NaN but not all."""
    nan = np.isnan(x)
    return nan.any(axis=1) & ~nan.all(axis=1)


def interpolate_gaps(series: Series) -> Series:
    """``series`` with every time point that has some features missing (NaN) but not all completed: each
    feature's value there linearly interpolated in time between its own nearest observations in the same
    trajectory (irregular times fine); a point outside a feature's observed span (a gap at a trajectory's
    start or end) is dropped instead, as nothing brackets it. Points missing every feature stay missing.
    The counts go in ``interpolated`` and ``dropped``.

    Why linear: it assumes nothing beyond continuity between two observations and never overshoots them;
    the derivative smoother and the difference quotients then treat the filled values as observations, so
    use it for scattered gaps, not for a feature missing over long stretches."""
    times, values, filled, dropped = [], [], 0, 0
    for name, t, x in zip(series.names, series.times, series.values):
        nan, partial = np.isnan(x), _partly_missing(x)
        if not partial.any():
            times.append(t)
            values.append(x)
            continue
        x = x.copy()
        for j in np.flatnonzero(nan[partial].any(axis=0)):
            seen = ~nan[:, j]
            if not seen.any():
                raise DataError(f"trajectory {name!r}: feature {series.features[j]!r} is never observed, so its "
                                "gaps cannot be interpolated")
            inside = partial & nan[:, j] & (t > t[seen].min()) & (t < t[seen].max())
            x[inside, j] = np.interp(t[inside], t[seen], x[seen, j])
            filled += int(inside.sum())
        keep = ~_partly_missing(x)
        dropped += int((~keep).sum())
        times.append(t[keep])
        values.append(x[keep])
    return replace(series, times=times, values=values, interpolated=series.interpolated + filled,
                   dropped=series.dropped + dropped)


def order_times(series: Series, sort: bool, duplicates: str) -> Series:
    """The readers' step before the checks: each trajectory sorted by time if ``sort``, then its points that
    share a time averaged if ``duplicates="average"`` (:mod:`~sparsedyn.tasks.time_order`; the merged points
    are counted in ``averaged``)."""
    if duplicates not in DUPLICATES:
        raise ValueError(f"duplicates must be one of {DUPLICATES}, got {duplicates!r}")
    if not sort and duplicates == "error":
        return series
    times, values, merged = [], [], 0
    for t, x in zip(series.times, series.values):
        if sort:
            t, x = sort_by_time(t, x)
        if duplicates == "average":
            t, x, k = average_duplicate_times(t, x)
            merged += k
        times.append(t)
        values.append(x)
    return replace(series, times=times, values=values, averaged=series.averaged + merged)


def check_series(series: Series, where: str = "data", missing: str = "error", duplicate_hint: str = "",
                 sort: bool = False, duplicates: str = "error") -> Series:
    """The checks every reader shares (see the module docstring); returns ``series``, first sorted by time
    within each trajectory if ``sort``, with points sharing a time averaged if ``duplicates="average"``
    (:func:`order_times`), and with its partly missing points interpolated if
    ``missing="interpolate"`` (:func:`interpolate_gaps`). ``duplicate_hint`` ends the message of a duplicate
    time (a reader's advice for its own layout)."""
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {MISSING}, got {missing!r}")
    series = order_times(series, sort, duplicates)
    if missing == "interpolate":
        try:
            series = interpolate_gaps(series)
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
    if not series.values:
        raise DataError(f"{where}: no trajectories")
    n = series.n_features
    if n < 1:
        raise DataError(f"{where}: no feature columns")
    if len(set(series.features)) != n:
        twice = sorted({f for f in series.features if series.features.count(f) > 1})
        raise DataError(f"{where}: duplicate feature names {twice}")
    for name, t, x in zip(series.names, series.times, series.values):
        label = f"{where}: trajectory {name!r}"
        if x.ndim != 2 or x.shape[1] != n:
            raise DataError(f"{label}: values must be (time points, {n} features), got shape {x.shape}")
        if t.shape != (x.shape[0],):
            raise DataError(f"{label}: {t.shape[0] if t.ndim == 1 else t.shape} times for {x.shape[0]} time points")
        if x.shape[0] < 2:
            raise DataError(f"{label}: a single time point (n_samples = 1); a trajectory needs at least two to "
                            "learn dynamics from")
        if not np.isfinite(t).all():
            raise DataError(f"{label}: times contain NaN or inf")
        steps = np.diff(t)
        if (steps == 0).any():
            k = int(np.argmax(steps == 0))
            raise DataError(f"{label}: duplicate time {t[k]:g} (points {k} and {k + 1}){duplicate_hint or _AVERAGE}")
        if (steps < 0).any():
            k = int(np.argmax(steps < 0))
            raise DataError(f"{label}: times are not sorted ({t[k]:g} then {t[k + 1]:g} at point {k + 1}); if the "
                            "rows are in another order on purpose (a pseudotime table, an export sorted by another "
                            "column), ask for them sorted: sort=True, sparsedyn graph --sort")
        if np.isinf(x).any():
            raise DataError(f"{label}: inf in feature {series.features[int(np.argwhere(np.isinf(x))[0, 1])]!r}")
        nan, partial = np.isnan(x), _partly_missing(x)
        if partial.any():
            k = int(np.argmax(partial))
            cols = [series.features[j] for j in np.flatnonzero(nan[k])]
            raise DataError(f"{label}: time {t[k]:g} has NaN in {cols} but not in every feature; sparsedyn "
                            "masks whole time points (drop the point or impute it, or pass missing='interpolate' "
                            "to fill gaps linearly in time: SparseGraph, SparseODE, from_arrays, load_series; "
                            "sparsedyn graph --missing interpolate)")
        if nan[0].any():
            raise DataError(f"{label}: the first time point is missing; the initial state must be observed")
        if (~nan.any(axis=1)).sum() < 2:
            raise DataError(f"{label}: fewer than two observed time points")
    return series


def _numeric(values: Any, what: str) -> np.ndarray:
    """``values`` as a float array; sparse matrices and complex numbers refused by name (the wording
    scikit-learn's conventions expect)."""
    if hasattr(values, "toarray") and hasattr(values, "nnz"):
        raise DataError(f"{what}: sparse input is not supported; pass a dense array (e.g. X.toarray())")
    if np.iscomplexobj(values):
        raise DataError(f"{what}: Complex data not supported")
    try:
        return np.asarray(values, dtype=float)
    except TypeError as e:  # numpy's message names the value ("argument must be a string or a number")
        raise NonNumericError(f"{what}: non-numeric values ({e})") from None
    except ValueError:
        raise DataError(f"{what}: non-numeric values") from None


def from_arrays(X: Any, t: Any = None, masks: Any = None, features: Sequence[str] | None = None,
                missing: str = "error", sort: bool = False, duplicates: str = "error") -> Series:
    """Trajectories from arrays: ``X`` one (T, n) array, a (B, T, n) array or a list of (T_i, n)
    arrays; ``t`` None (unit steps), one (T,) grid, or one grid per trajectory; ``masks`` (optional)
    True where a point is observed, shaped like ``X`` without its feature axis; ``missing`` what to do
    with points missing only some features, ``sort`` and ``duplicates`` with unsorted and shared times
    (:func:`check_series`)."""
    return check_series(_arrays_series(X, t, masks, features), "X", missing, sort=sort, duplicates=duplicates)


def _arrays_series(X: Any, t: Any, masks: Any, features: Sequence[str] | None) -> Series:
    """:func:`from_arrays` before the checks (a reader may select features first)."""
    if isinstance(X, np.ndarray) or not isinstance(X, (list, tuple)):
        arr = _numeric(X, "X")
        if arr.ndim == 2:
            xs = [arr]
        elif arr.ndim == 3:
            xs = list(arr)
        else:
            raise DataError(f"X must be (T, n), (B, T, n) or a list of (T_i, n) arrays, got shape {arr.shape}")
    else:
        xs = [_numeric(x, f"X[{i}]") for i, x in enumerate(X)]
    if not xs:
        raise DataError("X holds no trajectories")
    for i, x in enumerate(xs):
        if x.ndim == 2 and x.shape[1] == 0:
            raise DataError(f"X[{i}]: 0 feature(s) (shape={x.shape}) while a minimum of 1 is required.")
        if x.ndim != 2 or x.shape[0] == 0:
            raise DataError(f"X[{i}]: a trajectory must be a (T, n) array with T, n >= 1, got shape {x.shape}")
    if t is None:
        ts = [np.arange(x.shape[0], dtype=float) for x in xs]
    elif isinstance(t, (list, tuple)) and len(t) == len(xs) and all(np.ndim(ti) == 1 for ti in t):
        ts = [_numeric(ti, f"t[{i}]") for i, ti in enumerate(t)]
    else:
        grid = _numeric(t, "t")
        if grid.ndim == 2 and grid.shape[0] == len(xs):
            ts = list(grid)
        elif grid.ndim == 1:
            ts = [grid] * len(xs)
        else:
            raise DataError(f"t must be (T,), (B, T) or one (T_i,) array per trajectory, got shape {grid.shape}")
    if masks is not None:
        given = masks if isinstance(masks, (list, tuple)) else list(np.asarray(masks).reshape(len(xs), -1))
        ms = [np.asarray(m, dtype=bool) for m in given]
        xs = [x.copy() for x in xs]
        for i, (x, m) in enumerate(zip(xs, ms)):
            if m.shape != (x.shape[0],):
                raise DataError(f"masks[{i}]: shape {m.shape}, expected ({x.shape[0]},) (one flag per time point)")
            x[~m] = np.nan
    n = xs[0].shape[1] if xs[0].ndim == 2 else 0
    names = list(features) if features is not None else [f"x{j}" for j in range(n)]
    if len(names) != n:
        raise DataError(f"feature_names: {len(names)} names for {n} features")
    return Series(ts, xs, names, [str(i) for i in range(len(xs))])


def read_csv(path: str | Path, time: str = "t", group: str | None = None,
             features: Sequence[str] | None = None, missing: str = "error", sort: bool = False,
             duplicates: str = "error") -> Series:
    """One row per observation (see the module docstring and :func:`~sparsedyn.tasks.csv_table.parse_csv`);
    ``missing``, ``sort`` and ``duplicates`` as for :func:`check_series`."""
    path = Path(path)
    return check_series(parse_csv(path, time, group, features, sort), str(path), missing, sort=sort,
                        duplicates=duplicates)


def read_npz(path: str | Path, time: str = "t", features: Sequence[str] | None = None,
             missing: str = "error", sort: bool = False, duplicates: str = "error") -> Series:
    """``x`` (T, n) or (B, T, n), times under ``time``, optional ``mask`` and ``features``."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read as .npz ({e})") from None
    for key in ("x", time):
        if key not in data:
            raise DataError(f"{path}: no array {key!r} (arrays: {', '.join(data.files)})")
    names = [str(f) for f in data["features"]] if "features" in data else None
    series = _arrays_series(data["x"], data[time], data.get("mask", None), names)
    # unselected columns go unchecked
    return check_series(_select(series, features, str(path)), str(path), missing, sort=sort, duplicates=duplicates)


def read_h5ad(path: str | Path, time: str, group: str | None = None,
              features: Sequence[str] | None = None, missing: str = "error", duplicates: str = "error") -> Series:
    """Cells as observations: time ``obs[time]``, trajectory ``obs[group]``, genes ``var_names``; cells are
    always sorted by time (they have no order of their own)."""
    try:
        import anndata
    except ImportError:
        raise DataError("reading .h5ad needs anndata: pip install 'sparsedyn[singlecell]'") from None
    path = Path(path)
    try:
        adata = anndata.read_h5ad(path)
    except Exception as e:  # h5py raises several types for a bad file
        raise DataError(f"{path}: cannot read as .h5ad ({type(e).__name__}: {e})") from None
    for name, role in [(time, "time"), (group, "group")]:
        if name is not None and name not in adata.obs:
            raise DataError(f"{path}: obs has no {role} column {name!r} "
                            f"{among(name, [str(c) for c in adata.obs.columns], 'obs columns')}")
    genes = [str(g) for g in adata.var_names]
    absent = [f for f in (features or []) if f not in genes]
    if absent:
        raise DataError(f"{path}: {len(absent)} gene(s) not in var_names, e.g. {absent[0]!r} "
                        f"{among(absent[0], genes, 'genes')}")
    idx = [genes.index(f) for f in features] if features is not None else list(range(len(genes)))
    X = adata.X[:, idx]
    X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=float)
    t = _numeric(adata.obs[time].to_numpy(), f"{path}: obs[{time!r}]")
    ids = adata.obs[group].astype(str).to_numpy() if group is not None else np.array(["0"] * len(t))
    order = list(dict.fromkeys(ids))
    groups = [np.flatnonzero(ids == g) for g in order]
    # cells have no order of their own (sort=True); a time course samples many cells per time point, and each
    # trajectory needs one state per time
    return check_series(Series([t[rows] for rows in groups], [X[rows] for rows in groups],
                               [genes[i] for i in idx], order), str(path), missing,
                        duplicate_hint=": cells of one trajectory share a time; average them per time point "
                        "(duplicates='average', sparsedyn graph --duplicates average), bin the pseudotime, or choose "
                        "a group that separates them", sort=True, duplicates=duplicates)


def _select(series: Series, features: Sequence[str] | None, where: str) -> Series:
    if features is None:
        return series
    missing = [f for f in features if f not in series.features]
    if missing:
        raise DataError(f"{where}: features not found: {missing} {among(missing[0], series.features, 'features')}")
    cols = [series.features.index(f) for f in features]
    return replace(series, values=[x[:, cols] for x in series.values], features=list(features))


def load_series(path: str | Path, time: str = "t", group: str | None = None,
                features: Sequence[str] | None = None, missing: str = "error", sort: bool = False,
                duplicates: str = "error") -> Series:
    """Read a user's file by its suffix (``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz``, ``.npz``, ``.h5ad``);
    ``missing``, ``sort`` and ``duplicates`` as for :func:`check_series` (an .h5ad's cells are always sorted)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        return read_csv(path, time, group, features, missing, sort, duplicates)
    if name.endswith(".npz"):
        if group is not None:
            raise DataError(f"{path}: an .npz holds its trajectories along the first axis of x; 'group' is for "
                            "CSV and .h5ad files")
        return read_npz(path, time, features, missing, sort, duplicates)
    if name.endswith(".h5ad"):
        return read_h5ad(path, time, group, features, missing, duplicates)
    raise DataError(f"{path}: unknown file type; sparsedyn reads .csv, .tsv (either gzipped), .npz and .h5ad")


def forecast_times(t: Any, what: str = "t") -> np.ndarray:
    """The times of a forecast, checked: a 1-d array of at least two finite, strictly monotonic times (the
    first is the initial state's; decreasing times forecast backwards). A :class:`DataError` names the
    problem, where a solver would fail with its own message (or, with NaN, never return)."""
    try:
        times = np.asarray(t, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be numbers, got {type(t).__name__}") from None
    if times.ndim != 1 or len(times) < 2:
        raise DataError(f"{what} must be (T,) times with T >= 2 (the first is the initial state's), got shape "
                        f"{times.shape}")
    if not np.isfinite(times).all():
        raise DataError(f"{what} contains NaN or inf")
    steps = np.diff(times)
    if not ((steps > 0).all() or (steps < 0).all()):
        k = int(np.argmax(steps <= 0)) if steps[0] > 0 else int(np.argmax(steps >= 0))
        raise DataError(f"{what} must be strictly increasing (or strictly decreasing, to forecast backwards): "
                        f"{times[k]:g} then {times[k + 1]:g} at point {k + 1}")
    return times


def periodic_indices(periodic: Collection[int | str] | None, features: Sequence[str]) -> tuple[int, ...]:
    """The column indices of ``periodic`` (feature names or indices), checked against ``features``."""
    out = []
    for item in periodic if periodic is not None else ():
        if isinstance(item, str):
            if item not in features:
                raise DataError(f"periodic feature {item!r} is not among the features {list(features)}")
            out.append(list(features).index(item))
        elif isinstance(item, int | np.integer) and not isinstance(item, bool) and 0 <= item < len(features):
            out.append(int(item))
        else:
            raise DataError(f"periodic must name features or give column indices in [0, {len(features)}), "
                            f"got {item!r}")
    if len(set(out)) != len(out):
        raise DataError(f"periodic names a feature twice: {list(periodic or ())}")
    return tuple(sorted(out))


def unwrap_phases(series: Series, periodic: tuple[int, ...]) -> Series:
    """``series`` with the ``periodic`` columns (radians) unwrapped along each trajectory's observed points, so
    that a phase recorded modulo 2 pi is smooth for the derivative estimates (a jump of more than pi between two
    observations is read as the shorter way round: observe a phase at least twice per cycle). Each trajectory
    is moved by a whole number of turns so that it starts in [-pi, pi]: a phase recorded unwrapped from a large
    offset (radians since some epoch) then gives the same states, and the same fit, as its wrapped record."""
    if not periodic:
        return series
    values = []
    for x in series.values:
        x = x.copy()
        for j in periodic:
            seen = ~np.isnan(x[:, j])
            if seen.any():
                phase = np.unwrap(x[seen, j])
                x[seen, j] = phase - 2 * np.pi * np.round(phase[0] / (2 * np.pi))
        values.append(x)
    return replace(series, values=values)
