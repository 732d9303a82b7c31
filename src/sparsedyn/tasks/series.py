"""The trajectories every reader returns (:class:`Series`), the error a bad input raises (:class:`DataError`),
and the hint an error gives for a name not found (:func:`among`)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """Bad user data: the message names the file, column, trajectory or time at fault."""


class NonNumericError(DataError, TypeError):
    """Values that are not numbers (a :class:`DataError` and, as numpy's own error, a ``TypeError``)."""


@dataclass
class Series:
    """Per trajectory: times (T_i,) strictly increasing, values (T_i, n) with NaN rows for missing points."""

    times: list[np.ndarray]
    values: list[np.ndarray]
    features: list[str]
    names: list[str]  # one per trajectory (group ids, or "0", "1", ...)
    interpolated: int = 0  # values filled by interpolate_gaps (missing="interpolate"), over all trajectories
    dropped: int = 0  # time points interpolate_gaps dropped (some features missing at a trajectory's start or end)
    averaged: int = 0  # time points merged into another at the same time (duplicates="average"), over all trajectories

    @property
    def n_features(self) -> int:
        return len(self.features)

    def __len__(self) -> int:
        return len(self.values)

    def subset(self, indices: Sequence[int]) -> Series:
        """The trajectories ``indices`` picks, in that order (same features)."""
        return Series([self.times[i] for i in indices], [self.values[i] for i in indices], self.features,
                      [self.names[i] for i in indices])


def among(name: str, names: Sequence[str], what: str, shown: int = 8) -> str:
    """``(columns: a, b, ...)`` for a name not found: the first ``shown`` of ``names`` and their count (a
    gene table has hundreds), and the closest names when some are close (a case or a typo away)."""
    listing = ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")
    close = [n for n in names if n.lower() == name.lower()] or difflib.get_close_matches(name, names, n=3)
    return f"({what}: {listing})" + (f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "")
