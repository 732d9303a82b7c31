"""Statistics for comparisons over seeds: what a verdict needs beside a mean.

* :func:`bootstrap_ci`: a percentile bootstrap interval of a mean (seeded: same numbers every time);
* :func:`paired_comparison`: method vs baseline on the seeds both finished, paired by seed: the mean
  difference, its bootstrap interval and a sign-flip permutation p-value (exact up to 16 pairs);
* :func:`wilson_interval`: a binomial interval for a failure rate (Wilson score; sensible at 0/n and n/n).

Small-sample honesty: with 3 pairs the smallest two-sided permutation p-value is 0.25, so no
3-seed comparison can be "significant"; the intervals say so instead of a bare mean.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np


def bootstrap_ci(values: np.ndarray, level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaN, NaN for fewer than two values)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    tail = (1.0 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def sign_flip_p(differences: np.ndarray, n_random: int = 20_000, seed: int = 0) -> float:
    """Two-sided p-value of "the mean difference is 0" by flipping signs: exact (all ``2^n`` flips) up to
    16 differences, else ``n_random`` random flips; NaN without differences."""
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        return math.nan
    observed = abs(d.mean())
    if d.size <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_random, d.size))
    flipped = np.abs((signs * d).mean(axis=1))
    return float(np.mean(flipped >= observed - 1e-12 * max(1.0, observed)))


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (NaN, NaN for ``n = 0``)."""
    if n <= 0:
        return math.nan, math.nan
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Comparison:
    """Method minus baseline on the seeds both finished (``n`` pairs)."""

    n: int
    mean_difference: float
    ci: tuple[float, float]
    p_value: float

    def cell(self) -> str:
        if self.n == 0:
            return "no common seeds"
        lo, hi = self.ci
        interval = f"[{lo:+.3g}, {hi:+.3g}]" if not math.isnan(lo) else "[—]"
        return f"{self.mean_difference:+.3g} {interval}, p = {self.p_value:.2g} (n = {self.n})"


def paired_comparison(method: dict[int, float], baseline: dict[int, float], level: float = 0.95,
                      seed: int = 0) -> Comparison:
    """``method[s] - baseline[s]`` over the seeds ``s`` both have (finite values only)."""
    seeds = sorted(s for s in method.keys() & baseline.keys()
                   if math.isfinite(method[s]) and math.isfinite(baseline[s]))
    d = np.array([method[s] - baseline[s] for s in seeds], dtype=float)
    if d.size == 0:
        return Comparison(0, math.nan, (math.nan, math.nan), math.nan)
    return Comparison(int(d.size), float(d.mean()), bootstrap_ci(d, level, seed=seed), sign_flip_p(d, seed=seed))
