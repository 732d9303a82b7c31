"""Comparison statistics (sparsedyn.stats) against hand computations and scipy."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from sparsedyn.stats import bootstrap_ci, paired_comparison, sign_flip_p, wilson_interval


def test_sign_flip_p_is_exact_for_small_samples_by_hand():
    assert sign_flip_p(np.array([1.0, 2.0, 3.0, 4.0, 5.0])) == pytest.approx(2 / 32)  # only the all-same flips
    assert sign_flip_p(np.array([1.0, 1.0, 1.0])) == pytest.approx(2 / 8)
    # [1, -1]: flips give |mean| 0, 0, 1, 1 -> the observed 0 is reached by all four
    assert sign_flip_p(np.array([1.0, -1.0])) == pytest.approx(1.0)
    assert math.isnan(sign_flip_p(np.array([])))


def test_wilson_interval_matches_scipy():
    for k, n in [(0, 5), (1, 10), (3, 3), (7, 20)]:
        lo, hi = wilson_interval(k, n)
        ref = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-9)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_bootstrap_interval_brackets_the_mean_is_seeded_and_shrinks_with_more_data():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 8), rng.normal(1.0, 1.0, 200)
    lo, hi = bootstrap_ci(small)
    assert lo < small.mean() < hi and bootstrap_ci(small) == (lo, hi)
    lo2, hi2 = bootstrap_ci(large)
    assert hi2 - lo2 < hi - lo
    assert bootstrap_ci(np.array([2.0, 2.0, 2.0])) == (2.0, 2.0)
    assert all(math.isnan(x) for x in bootstrap_ci(np.array([1.0])))


def test_paired_comparison_pairs_by_seed_and_skips_unpaired_or_non_finite_seeds():
    method = {0: 1.0, 1: 2.0, 2: 3.0, 3: float("nan"), 7: 9.0}
    base = {0: 0.5, 1: 1.0, 2: 1.0, 3: 1.0}
    c = paired_comparison(method, base)
    assert c.n == 3 and c.mean_difference == pytest.approx((0.5 + 1.0 + 2.0) / 3)
    assert c.p_value == pytest.approx(0.25)  # all differences positive, 3 pairs
    assert c.ci[0] <= c.mean_difference <= c.ci[1]
    assert paired_comparison({1: 1.0}, {2: 1.0}).n == 0
