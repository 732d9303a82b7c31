"""Trajectory matching after collocation (``sparsedyn.shooting``) and SparseGraph's use of it."""

import numpy as np
import pytest
import torch
from scipy.linalg import expm

from sparsedyn.baselines.edges import Standardiser
from sparsedyn.collocation import HybridField
from sparsedyn.graph import SparseGraph
from sparsedyn.interval_error import ObservedPairs
from sparsedyn.shooting import shooting_refit

A = np.array([[-1.0, 0.0, 0.8], [1.2, -1.0, 0.0], [0.0, -0.9, -1.0]])


def _exact_pairs(dt=0.8, points=8, trajectories=6, seed=0):
    """Exact observations of dx/dt = A x every ``dt``: consecutive pairs of every trajectory."""
    rng = np.random.default_rng(seed)
    step = expm(A * dt)
    starts, ends, ids = [], [], []
    for k in range(trajectories):
        x = rng.normal(0, 1, 3)
        for _ in range(points - 1):
            starts.append(x)
            x = step @ x
            ends.append(x)
            ids.append(k)
    n = len(starts)
    return ObservedPairs(np.array(starts), np.array(ends), np.full(n, dt), np.array(ids))


def test_shooting_recovers_the_true_coefficients_from_secant_estimates_and_keeps_the_zeros():
    """From the coefficients a least-squares fit to difference quotients gives (biased: over 0.8 time units
    a secant misses the curvature), refitting by one-interval predictions recovers A; absent terms stay
    absent; each member fits its own rows."""
    pairs = _exact_pairs()
    secant = (pairs.end - pairs.start) / pairs.dt[:, None]
    midpoint = (pairs.start + pairs.end) / 2
    biased = np.linalg.lstsq(midpoint, secant, rcond=None)[0].T * (A != 0)
    field = HybridField(2, 3, hidden=0, poly=False)
    with torch.no_grad():
        field.bias.zero_()
        field.linear.copy_(torch.as_tensor(np.stack([biased, biased]), dtype=torch.float32))
    identity = Standardiser(np.zeros(3), np.ones(3), np.zeros(3), np.ones(3))
    rows = np.stack([np.ones(len(pairs.dt), bool), pairs.trajectory < 3])
    refit = shooting_refit(field, identity, pairs, rows, steps=600, lr=0.01)
    assert np.abs(biased - A).max() > 0.1
    for m in range(2):
        fitted = refit.linear[m].detach().numpy()
        assert np.abs(fitted - A).max() < 0.02, fitted
        assert np.all(fitted[A == 0] == 0)
        assert np.abs(refit.bias[m].detach().numpy()).max() < 0.02
    assert not torch.equal(refit.linear[0], refit.linear[1])  # different rows, different (near) solutions
    with pytest.raises(ValueError, match="library fields only"):
        shooting_refit(HybridField(1, 3, hidden=4, poly=False), identity, pairs, rows[:1])


def _data(points=10, trajectories=10, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 4, points)
    X = np.stack([np.stack([expm(A * s) @ x0 for s in t]) for x0 in rng.normal(0, 2, (trajectories, 3))])
    return t, X + 0.01 * X.std() * rng.standard_normal(X.shape)


def test_the_refitted_field_forecasts_only_where_the_folds_forecast_better():
    t, X = _data()
    small = {"n_subsamples": 0, "n_stages": 6, "steps": 100, "design": "smoothed"}
    plain = SparseGraph(refine=False, **small).fit(X, t=t)
    g = SparseGraph(**small).fit(X, t=t)
    for name in ("graph_", "edge_probability_", "sign_", "support_"):
        np.testing.assert_array_equal(getattr(g, name), getattr(plain, name))
    assert plain.refine_errors_ == {} and not plain.refined_
    library = "degree 2" if g.poly_ else "linear"
    assert g.refine_errors_["collocation"] == g.forecast_errors_[library]
    assert g.refined_ == (g.refine_errors_["trajectory matching"] < g.refine_errors_["collocation"])
    assert g.refined_  # ten points over four time units: the smoother's derivatives are biased
    forecast, before = g.simulate(X[0, 0], t), plain.simulate(X[0, 0], t)
    assert np.abs(forecast - X[0]).mean() < np.abs(before - X[0]).mean()
    # a refit that forecasts worse is not kept
    with pytest.MonkeyPatch.context() as patch:
        def worse(field, *args):
            bad = HybridField(field.linear.shape[0], field.n, 0, field.poly)
            with torch.no_grad():
                bad.bias.fill_(5.0)
            return bad
        patch.setattr("sparsedyn.graph.shooting_refit", worse)
        h = SparseGraph(**small).fit(X, t=t)
    assert not h.refined_ and h.refine_errors_["trajectory matching"] > h.refine_errors_["collocation"]
    np.testing.assert_array_equal(h.simulate(X[0, 0], t), before)
