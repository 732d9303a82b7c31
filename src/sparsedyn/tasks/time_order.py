"""Rows in time order and one state per time: what pseudotime tables and exports in any row order need.

A single-cell lineage ordered by pseudotime, or a spreadsheet export sorted by another column, lists its
observations in no particular time order, and cells (or replicate measurements) may share a time. The
models take, per trajectory, strictly increasing times with one state each; the readers refuse anything
else by default, because unsorted rows may also mean a wrong time column or several trajectories without
their group column. These two steps, on one trajectory's times (T,) and values (T, n), are what a user
asks for instead (``sort=True``, ``duplicates="average"`` in the readers of
:mod:`~sparsedyn.tasks.user_data`, ``sparsedyn graph --sort --duplicates average``).
"""

from __future__ import annotations

import numpy as np

DUPLICATES = ("error", "average")  # what a reader does with time points of one trajectory that share a time


def sort_by_time(t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points in increasing time; the sort is stable, so points sharing a time keep their order in the
    file (NaN times go last, for the checks to refuse)."""
    order = np.argsort(t, kind="stable")
    return t[order], x[order]


def average_duplicate_times(t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Every run of consecutive points at the same time replaced by one point: its states' mean, feature by
    feature over the values observed (NaN where none is); also the number of points merged away. Runs must
    be consecutive (sort first): a time that recurs after another is left for the checks to report as
    unsorted.

    Why the mean: cells at one pseudotime (or replicate measurements) are samples of one state of the
    trajectory; their mean is its least-squares estimate, where keeping one of them (as the reference
    preprocessing drops duplicate times) throws the rest away."""
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    if len(starts) == len(t):
        return t, x, 0
    seen = ~np.isnan(x)
    sums = np.add.reduceat(np.where(seen, x, 0.0), starts, axis=0)
    counts = np.add.reduceat(seen.astype(float), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / counts, np.nan)
    return t[starts], mean, len(t) - len(starts)
