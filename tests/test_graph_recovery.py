"""Graph recovery from trajectories: smoothers, the hybrid field, its path solver, SparseGraph, the baselines."""

import pickle
import warnings

import numpy as np
import pytest
import torch

from sparsedyn.analysis import ranking_metrics
from sparsedyn.baselines.edges import BASELINES, Standardiser, simulate
from sparsedyn.collocation import (
    HybridField,
    adaptive_penalty_scale,
    feature_groups,
    fit_library_path,
    library_lambda_max,
    square_partners,
    stacked_prox,
)
from sparsedyn.derivatives import _local_fits, derivative_data, difference_data
from sparsedyn.graph import PROGRESS_FEATURES, GraphWarning, NotFittedError, SparseGraph
from sparsedyn.graph_benchmark import REGIMES, edge_metrics, make_dataset
from sparsedyn.interval_error import ObservedPairs, one_step_error
from sparsedyn.tasks.user_data import DataError, Series, from_arrays


def _linear_data(n_traj=10, points=20, noise=0.01, seed=0):
    """A sparse stable linear system dx/dt = A x (known graph) observed on a regular grid."""
    rng = np.random.default_rng(seed)
    A = -np.eye(5)
    A[1, 0], A[2, 1], A[3, 1], A[4, 3], A[0, 4] = 1.5, -1.2, 1.0, 1.3, -0.9
    t = np.linspace(0, 3, points)
    from scipy.linalg import expm

    X = np.stack([np.stack([expm(A * s) @ x0 for s in t]) for x0 in rng.normal(0, 2, (n_traj, 5))])
    X = X + noise * X.std() * rng.standard_normal(X.shape)
    return A, t, X


# -- derivatives ------------------------------------------------------------------------------

def test_the_local_smoother_is_exact_on_quadratics_at_irregular_times():
    t = np.sort(np.random.default_rng(0).uniform(0, 3, 17))
    x = np.stack([3 * t**2 - t + 2, -0.5 * t], axis=1)
    values, slopes, hat = _local_fits(t, x, 7)
    np.testing.assert_allclose(values, x, atol=1e-9)
    np.testing.assert_allclose(slopes, np.stack([6 * t - 1, -0.5 + 0 * t], axis=1), atol=1e-8)
    assert np.all((hat > 0) & (hat <= 1 + 1e-9))  # the centre's own weight in its fit


def test_the_smoothers_neighbours_are_the_stable_argsort_of_all_distances_without_forming_them():
    """:func:`nearest_neighbours` against the (T, T) stable argsort it replaced, index for index: irregular times,
    a grid of integers (exact ties between the left and the right neighbour: the earlier one first), a decimal
    grid (near ties), windows from 1 to longer than the trajectory."""
    from sparsedyn.derivatives import nearest_neighbours

    rng = np.random.default_rng(0)
    grids = [np.sort(rng.uniform(0, 10, 40)), np.arange(30.0), np.arange(25) * 0.1 + 3.0, np.array([2.0]),
             np.unique(rng.integers(0, 200, 50) / 7)]
    for t in grids:
        for k in (1, 2, 5, 7, 15, 100):
            brute = np.argsort(np.abs(t[:, None] - t[None, :]), axis=1, kind="stable")[:, :min(k, len(t))]
            np.testing.assert_array_equal(nearest_neighbours(t, k), brute)
    with pytest.raises(ValueError, match="strictly increasing"):
        nearest_neighbours(np.array([0.0, 2.0, 1.0]), 2)


def test_the_local_smoother_does_not_depend_on_the_unit_of_time():
    t = np.sort(np.random.default_rng(0).uniform(0, 3, 17))
    x = np.stack([np.sin(2 * t), t**2], axis=1)
    values, slopes, hat = _local_fits(t, x, 7)
    for unit in (1e-6, 1e-3, 1e3, 1e6):
        v, s, h = _local_fits(t * unit, x, 7)
        np.testing.assert_allclose(v, values, atol=1e-10)
        np.testing.assert_allclose(s * unit, slopes, atol=1e-9)
        np.testing.assert_allclose(h, hat, atol=1e-10)


def test_smoothed_derivatives_beat_finite_differences_on_noisy_data():
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 6, 40))
    t[0] = 0
    clean = np.stack([np.sin(t), np.cos(2 * t)], axis=1)
    truth = np.stack([np.cos(t), -2 * np.sin(2 * t)], axis=1)
    series = Series([t] * 4, [clean + 0.03 * rng.standard_normal(clean.shape) for _ in range(4)], ["a", "b"],
                    list("0123"))
    errors = {kind: np.abs(derivative_data(series, kind).dxdt - np.tile(truth, (4, 1))).mean()
              for kind in ("local", "spline", False)}
    assert errors["local"] < 0.5 * errors[False] and errors["spline"] < 0.5 * errors[False], errors
    with pytest.raises(ValueError, match="smooth must be"):
        derivative_data(series, "kalman")


def test_difference_quotients_by_hand_with_short_intervals_merged_and_missing_points_skipped():
    t = np.array([0.0, 1.0, 1.1, 2.0, 3.0, 4.0])  # median step 1: the 0.1 step is merged into the next
    x = np.stack([t**2, 3 * t], axis=1)
    x[4] = np.nan  # a missing point: 2.0 -> 4.0 is one interval
    data = difference_data(Series([t], [x], ["a", "b"], ["0"]))
    starts, ends = np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(data.x[:, 0], (starts**2 + ends**2) / 2)
    np.testing.assert_allclose(data.dxdt[:, 0], starts + ends)  # (b^2 - a^2) / (b - a)
    np.testing.assert_allclose(data.dxdt[:, 1], 3.0)
    np.testing.assert_array_equal(data.trajectory, 0)
    with pytest.raises(DataError, match="at least two observed points"):
        difference_data(Series([t[:1]], [x[:1]], ["a", "b"], ["0"]))


def test_the_one_step_error_of_the_true_field_is_rk4s_and_a_wrong_field_is_worse():
    """dx/dt = -x as a one-member linear library field in standardised units: RK4 from each observed state
    lands on the next one up to its truncation error; the same field with the sign flipped does not."""
    t = np.linspace(0, 2, 9)
    x = np.exp(-t)[:, None] * np.array([[1.0, -2.0]])
    series = Series([t, t], [x, 0.5 * x], ["a", "b"], ["0", "1"])
    pairs = ObservedPairs.of(series)
    np.testing.assert_allclose(pairs.end, pairs.start * np.exp(-0.25))
    scaler = Standardiser(np.zeros(2), np.ones(2), np.zeros(2), np.ones(2))
    field = HybridField(1, 2, 0, poly=False)
    with torch.no_grad():
        for p in field.parameters():
            p.zero_()
        field.linear.copy_(-torch.eye(2)[None])
    rows = np.ones(len(pairs.dt), dtype=bool)
    exact = one_step_error(field, scaler, pairs, rows, np.ones(2))
    with torch.no_grad():
        field.linear.neg_()
    wrong = one_step_error(field, scaler, pairs, rows, np.ones(2))
    assert exact < 1e-10 and wrong > 1e-3, (exact, wrong)


def test_the_design_switches_to_differences_only_beyond_one_standard_error():
    clear = {"smoothed": np.array([0.10, 0.12, 0.09, 0.11, 0.10]),
             "differences": np.array([0.05, 0.06, 0.05, 0.04, 0.05])}
    tied = {"smoothed": np.array([0.080, 0.081, 0.079, 0.080, 0.082]),
            "differences": np.array([0.081, 0.079, 0.080, 0.079, 0.081])}
    assert SparseGraph._pick_design(clear) == "differences"
    assert SparseGraph._pick_design(tied) == "smoothed"
    assert SparseGraph._pick_design({"smoothed": clear["differences"], "differences": clear["smoothed"]}) == "smoothed"


def test_with_seven_points_per_trajectory_auto_picks_differences_and_ranks_edges_better():
    """Lorenz-96 seen at 7 points per trajectory (the benchmark's very-few-points regime): the local smoother
    fits a quadratic to nearly the whole trajectory; the difference quotients keep the graph."""
    data = make_dataset("lorenz96", 0, REGIMES["very_few_points"], 0)
    X, t = data.train.values, data.train.times
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)
        auto = SparseGraph(n_subsamples=0).fit(X, t=t)
        smoothed = SparseGraph(n_subsamples=0, design="smoothed").fit(X, t=t)
    assert auto.design_ == "differences" and set(auto.design_errors_) == {"smoothed", "differences"}
    assert np.mean(auto.design_errors_["differences"]) < np.mean(auto.design_errors_["smoothed"])
    assert smoothed.design_ == "smoothed" and smoothed.design_errors_ == {}
    assert edge_metrics(auto.graph_, data.truth)["auroc"] > edge_metrics(smoothed.graph_, data.truth)["auroc"] + 0.1
    # each design's graph is kept: the chosen one is graph_, the other the graph of that design fitted alone
    np.testing.assert_array_equal(auto.design_graphs_["differences"], auto.graph_)
    np.testing.assert_allclose(auto.design_graphs_["smoothed"], smoothed.graph_, rtol=1e-5, atol=1e-7)
    assert list(smoothed.design_graphs_) == ["smoothed"]


# -- the hybrid field -----------------------------------------------------------------------

@pytest.mark.parametrize("hidden, poly", [(3, True), (3, False), (0, True), (0, False)])
def test_the_closed_form_jacobian_equals_autograd(hidden, poly):
    torch.manual_seed(0)
    field = HybridField(members=2, n=4, hidden=hidden, poly=poly, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        field.quad.normal_()
    z = torch.randn(6, 4)
    rows = []
    for m in range(2):
        jac = torch.func.vmap(torch.func.jacrev(lambda p, m=m: field(p[None])[m, 0]))(z)  # (N, out, in)
        rows.append(jac.abs().mean(dim=0))
    torch.testing.assert_close(field.jacobian(z), torch.stack(rows), rtol=1e-5, atol=1e-6)


def test_the_composed_group_prox_by_hand():
    field = HybridField(members=1, n=2, hidden=0, poly=True)
    with torch.no_grad():
        field.linear.copy_(torch.tensor([[[1.0, 3.0], [0.1, 2.0]]]))
        field.quad.copy_(torch.tensor([[[0.0, 4.0, 0.0], [0.0, 0.1, 0.0]]]))  # terms z0^2, z0 z1, z1^2
    # group (0, 1) = {L01 = 3, Q0,01 = 4}: norm 5; threshold 1 -> scale 0.8. Group (1, 0) = {0.1, 0.1}: cut.
    field.prox(torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]))
    assert field.linear[0, 0, 1].item() == pytest.approx(2.4)
    assert field.quad[0, 0, 1].item() == pytest.approx(3.2)
    assert field.linear[0, 1, 0].item() == 0.0 and field.quad[0, 1, 1].item() == 0.0  # z0 z1 cut with (1, 0)
    assert field.linear[0, 1, 1].item() == 2.0  # the diagonal is never penalised


@pytest.mark.parametrize("poly", [True, False])
def test_the_stacked_prox_of_the_fista_path_is_the_fields_prox(poly):
    """stacked_prox (the FISTA path's, in the coefficients' layout) against the factors of
    HybridField.shrink_factors applied to the same norms (bit for bit: only the gathers' layout changed), and
    against HybridField.prox (whose norms sum the terms in another order: to float rounding)."""
    gen = torch.Generator().manual_seed(3)
    field = HybridField(members=4, n=6, hidden=0, poly=poly, generator=gen)
    with torch.no_grad():
        for p in (field.bias, field.linear, field.quad):
            p.copy_(torch.randn(p.shape, generator=gen))
    thresholds = 2.0 * torch.rand(4, 6, 6, generator=gen) * field.off_diagonal  # some groups cut, some shrunk
    stacked = torch.cat([field.bias[:, None], field.linear.transpose(1, 2), field.quad.transpose(1, 2)], dim=1)
    stacked = stacked.detach()
    groups = feature_groups(field)
    out = stacked_prox(field, groups, square_partners(field), stacked, thresholds)
    factor, both = field.shrink_factors(((stacked**2).transpose(1, 2) @ groups).sqrt(), thresholds)
    expected = stacked.clone()
    expected[:, 1:7] *= factor.transpose(1, 2)
    expected[:, 7:] *= both.transpose(1, 2)
    assert torch.equal(out, expected)
    field.prox(thresholds)
    np.testing.assert_allclose(out[:, 1:7], field.linear.detach().transpose(1, 2), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out[:, 7:], field.quad.detach().transpose(1, 2), rtol=1e-6, atol=1e-7)
    assert torch.equal(out[:, 0], field.bias.detach())  # the bias is never penalised
    assert (field.linear == 0).any() and (field.linear != 0).any()


def test_the_library_path_at_zero_strength_is_least_squares():
    rng = np.random.default_rng(0)
    z = torch.as_tensor(rng.normal(size=(80, 3)), dtype=torch.float32)
    y = torch.as_tensor(rng.normal(size=(80, 3)), dtype=torch.float32)
    field = HybridField(members=1, n=3, hidden=0, poly=True)
    fit_library_path(field, z, y, torch.ones(1, 80), torch.tensor([0.0]), steps=3000)
    j, k = np.triu_indices(3)
    zn = z.double().numpy()
    phi = np.hstack([np.ones((80, 1)), zn, zn[:, j] * zn[:, k]])
    coef = np.linalg.lstsq(phi, y.double().numpy(), rcond=None)[0]
    np.testing.assert_allclose(field.linear[0].detach().numpy(), coef[1:4].T, atol=2e-3)
    np.testing.assert_allclose(field.quad[0].detach().numpy(), coef[4:].T, atol=2e-3)


def test_lambda_max_cuts_every_edge_and_a_smaller_strength_does_not():
    A, t, X = _linear_data()
    data = derivative_data(Series([t] * len(X), list(X), list("abcde"), [str(i) for i in range(len(X))]))
    sc = Standardiser.fit(data)
    z = torch.as_tensor(sc.states(data.x), dtype=torch.float32)
    y = torch.as_tensor(sc.derivatives(data.dxdt), dtype=torch.float32)
    field = HybridField(members=1, n=5, hidden=0, poly=False)
    top = library_lambda_max(field, z, y, torch.ones(1, len(z)))
    path = fit_library_path(field, z, y, torch.ones(1, len(z)), torch.tensor([top * 1.001, top * 0.5]))
    off = 1 - torch.eye(5)
    assert (path.norms[0, 0] * off).sum() == 0
    assert (path.norms[1, 0] * off).sum() > 0


def test_adaptive_penalty_factors_by_hand():
    norms = torch.tensor([[[5.0, 2.0, 0.0], [1.0, 5.0, 3.0], [0.0, 0.0, 9.0]]])  # off-diagonal mean 1.0
    off = 1 - torch.eye(3)
    scale = adaptive_penalty_scale(norms, off, gamma=1.0, floor=0.01)
    expected = torch.tensor([[[0.2, 0.5, 100.0], [1.0, 0.2, 1 / 3], [100.0, 100.0, 1 / 9]]])
    torch.testing.assert_close(scale, expected)
    torch.testing.assert_close(adaptive_penalty_scale(norms, off, gamma=0.5, floor=0.01), expected.sqrt())


def test_a_penalty_factor_per_input_equals_dividing_that_input_by_it():
    """With every output's factor on input j equal to v_j, the adaptive problem is the plain group lasso on
    the inputs divided by v_j (linear library: one coefficient per group), coefficients scaled back by
    1 / v_j: lambda_max and the whole path agree."""
    rng = np.random.default_rng(0)
    z = torch.as_tensor(rng.normal(size=(60, 4)), dtype=torch.float32)
    y = torch.as_tensor(z.numpy() @ rng.normal(size=(4, 4)) + 0.3 * rng.normal(size=(60, 4)), dtype=torch.float32)
    v = torch.tensor([0.5, 1.0, 2.0, 4.0])
    scale = v.expand(1, 4, 4).clone()
    weights = torch.ones(1, 60)
    field, plain = HybridField(1, 4, 0, poly=False), HybridField(1, 4, 0, poly=False)
    plain.load_state_dict(field.state_dict())
    plain.linear.data *= v  # the same starting point in the rescaled inputs' coefficients
    top = library_lambda_max(field, z, y, weights, scale)
    assert top == pytest.approx(library_lambda_max(plain, z / v, y, weights), rel=1e-5)
    lambdas = top * torch.tensor([1.001, 0.3, 0.03])
    adaptive = fit_library_path(field, z, y, weights, lambdas, steps=2000, penalty_scale=scale)
    reference = fit_library_path(plain, z / v, y, weights, lambdas, steps=2000)
    off = (1 - torch.eye(4)).bool()
    assert (adaptive.norms[0, 0][off] == 0).all()
    torch.testing.assert_close(field.linear, plain.linear / v, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(adaptive.norms[1:, 0][:, off], (reference.norms[1:, 0] / v)[:, off],
                               atol=1e-4, rtol=1e-4)


# -- SparseGraph -------------------------------------------------------------------------------

def _fit(X, t, **kw):
    return SparseGraph(n_subsamples=4, **kw).fit(list(X), t=t)


def test_sparse_graph_recovers_a_sparse_linear_system_and_is_confident_about_it():
    A, t, X = _linear_data()
    g = _fit(X, t)
    assert edge_metrics(g.graph_, A != 0)["auroc"] == 1.0
    off = ~np.eye(5, dtype=bool)
    true, false = g.edge_probability_[(A != 0) & off], g.edge_probability_[(A == 0) & off]
    # selected-and-needed frequencies over 4 random halves: in [0, 1], true edges far likelier on average
    # (the benchmark measures calibration)
    p = g.edge_probability_
    assert p.min() >= 0 and p.max() <= 1 and np.all(np.diag(p) == 1)
    assert true.mean() > 2 * false.mean(), (true, false)
    assert np.all(g.support_[(A != 0) & off])  # the one-standard-error graph holds every true edge
    assert {"source", "target", "score", "probability", "sign", "selected"} == set(g.edges_[0])
    assert g.edges_[0]["score"] == max(e["score"] for e in g.edges_)
    true_signs = np.sign(A)[(A != 0) & off]
    assert np.all(g.sign_[(A != 0) & off] == true_signs)


def test_a_fit_runs_numpy_and_torch_on_its_own_thread_count_and_restores_the_callers(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    import sparsedyn.graph as graph_module

    seen = []

    def spy(*args, **kwargs):
        seen.append(([pool["num_threads"] for pool in threadpool_info()], torch.get_num_threads()))
        return derivative_data(*args, **kwargs)

    monkeypatch.setattr(graph_module, "derivative_data", spy)
    A, t, X = _linear_data(n_traj=6)
    before = torch.get_num_threads()
    with threadpool_limits(limits=2):
        SparseGraph(n_subsamples=0, n_stages=3, steps=20, threads=1).fit(X, t=t)
        after = [pool["num_threads"] for pool in threadpool_info()]
    assert seen and seen[0][0] and all(count == 1 for count in seen[0][0]) and seen[0][1] == 1
    assert all(count == 2 for count in after) and torch.get_num_threads() == before


def test_the_randomised_lasso_moves_only_the_subsamples():
    A, t, X = _linear_data()
    plain, randomised = _fit(X, t), _fit(X, t, randomize=0.3)
    # the folds and the full data keep the plain penalty: the graph and the chosen stage are unchanged
    np.testing.assert_array_equal(plain.graph_, randomised.graph_)
    assert plain.stage_ == randomised.stage_
    assert not np.array_equal(randomised.edge_stability_, plain.edge_stability_)
    scale = randomised._penalty_scale(5)  # (folds + 1 + subsamples, n, n): ones, then 1 / U[0.3, 1]
    assert scale.shape == (randomised.n_folds_ + 1 + 4, 5, 5)
    assert torch.all(scale[: randomised.n_folds_ + 1] == 1)
    assert torch.all((scale[randomised.n_folds_ + 1:] >= 1) & (scale[randomised.n_folds_ + 1:] <= 1 / 0.3))
    again = _fit(X, t, randomize=1.0)
    np.testing.assert_array_equal(again.edge_stability_, plain.edge_stability_)
    np.testing.assert_array_equal(again.edge_probability_, plain.edge_probability_)
    with pytest.raises(ValueError, match="randomize"):
        _fit(X, t, randomize=0.0)


def test_the_adaptive_group_lasso_keeps_the_true_graph_and_shrinks_its_edges_less():
    """On the sparse linear system the adaptive path ranks the graph as well, and at the plain path's
    chosen strength ratio its true edges are shrunk less towards zero (the point of the reweighting)."""
    A, t, X = _linear_data()
    plain = SparseGraph(poly=False, design="smoothed", n_subsamples=0).fit(list(X), t=t)
    adaptive = SparseGraph(poly=False, design="smoothed", n_subsamples=0, adaptive=1.0).fit(list(X), t=t)
    assert edge_metrics(adaptive.graph_, A != 0)["auroc"] == 1.0
    off = ~np.eye(5, dtype=bool)
    true = (A != 0) & off
    ratio = plain.stage_  # the same position on the two (equally spaced) paths
    plain_true = plain.path_.norms[ratio, plain.n_folds_].numpy()[true]
    adaptive_true = adaptive.path_.norms[ratio, adaptive.n_folds_].numpy()[true]
    assert adaptive_true.sum() > plain_true.sum()
    assert adaptive.path_.norms[ratio, adaptive.n_folds_].numpy()[(A == 0) & off].sum() <= \
        plain.path_.norms[ratio, plain.n_folds_].numpy()[(A == 0) & off].sum()
    with pytest.raises(ValueError, match="adaptive"):
        _fit(X, t, adaptive=-1.0)


def test_scaling_one_feature_by_1000_leaves_the_graph_unchanged():
    A, t, X = _linear_data()
    scaled = X.copy()
    scaled[..., 2] *= 1000.0
    a, b = _fit(X, t), _fit(scaled, t)
    np.testing.assert_allclose(a.graph_, b.graph_, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(a.support_, b.support_)


@pytest.mark.parametrize("unit", [1e-6, 1e6])
def test_the_unit_of_time_leaves_the_graph_and_the_forecasts_unchanged(unit):
    """Times in microseconds of a span of seconds, or in seconds of a span of weeks: the same data. Before the
    smoother fitted in its windows' own unit, 1e-6 lost the curvature and 1e6 the constant term."""
    A, t, X = _linear_data()
    a, b = _fit(X, t, design="smoothed"), _fit(X, t * unit, design="smoothed")
    np.testing.assert_allclose(a.graph_, b.graph_, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(a.support_, b.support_)
    np.testing.assert_allclose(b.simulate(X[0, 0], t * unit), a.simulate(X[0, 0], t), rtol=1e-3, atol=1e-3)


def test_same_seed_same_numbers_and_pickling_keeps_the_forecast():
    A, t, X = _linear_data(n_traj=6)
    a, b = _fit(X, t, seed=3), _fit(X, t, seed=3)
    np.testing.assert_array_equal(a.graph_, b.graph_)
    np.testing.assert_array_equal(a.edge_probability_, b.edge_probability_)
    clone = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(clone.simulate(X[0, 0], t), a.simulate(X[0, 0], t))
    assert np.abs(a.simulate(X[0, 0], t) - X[0]).mean() < 0.2 * np.abs(X[0]).mean()


def test_the_forecast_solver_resolves_the_dynamics_not_an_offset():
    """dx/dt = A (x - c) with c = 1e9: x(t) = c + expm(A t) (x0 - c). Integrated in x itself, LSODA's relative
    tolerance (1e-5) is 1e4 in absolute terms and the O(1) dynamics drown; in the coordinates (x - c) / s they
    are resolved. With centre 0 and spread 1 (the default) the solve is x's own."""
    from scipy.linalg import expm

    A = np.array([[-1.0, 2.0], [-2.0, -0.5]])
    c, x0, t = np.array([1e9, -1e9]), np.array([1e9 + 1.0, -1e9 + 0.5]), np.linspace(0, 4, 9)
    exact = np.stack([c + expm(A * s) @ (x0 - c) for s in t])
    field = lambda x: (x - c) @ A.T  # noqa: E731
    resolved = simulate(field, x0, t, bound=1e12, centre=c, spread=np.array([0.5, 2.0]))
    np.testing.assert_allclose(resolved - c, exact - c, atol=1e-4)
    assert np.abs(simulate(field, x0, t, bound=1e12) - exact).max() > 1.0  # why the coordinates matter
    np.testing.assert_array_equal(simulate(field, x0 - c, t), simulate(field, x0 - c, t, centre=np.zeros(2),
                                                                              spread=np.ones(2)))


def test_a_large_offset_in_the_data_leaves_graph_and_forecasts_unchanged():
    A, t, X = _linear_data(n_traj=6)
    a, b = _fit(X, t), _fit(X + 1e9, t)
    np.testing.assert_allclose(b.graph_, a.graph_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b.simulate(X[0, 0] + 1e9, t) - 1e9, a.simulate(X[0, 0], t), atol=1e-3)


def test_pure_noise_warns_instead_of_returning_a_silent_empty_graph():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 15, 4))
    with pytest.warns(GraphWarning):
        SparseGraph(n_subsamples=0, n_stages=5, steps=100).fit(list(X), t=np.linspace(0, 1, 15))
    # the linear library alone: its best stage cuts every edge, so every score is 0, and the warning says
    # that, not that graph_ still ranks edges (it did, of an all-zero graph)
    with pytest.warns(GraphWarning) as caught:
        g = SparseGraph(poly=False, n_subsamples=0, n_stages=5, steps=100).fit(list(X), t=np.linspace(0, 1, 15))
    said = [str(w.message) for w in caught]
    assert any("no edge between variables at all" in m for m in said) and not any("still ranks" in m for m in said)
    assert any("no better than predicting the training mean" in m for m in said)
    assert g.graph_[~np.eye(4, dtype=bool)].max() == 0.0 and {e["score"] for e in g.edges_} == {0.0}


def test_a_forecast_that_blows_up_says_when_and_one_that_does_not_is_silent():
    """Two logistic variables dx/dt = x (1 - x): from x0 = -2 the true solution 1 / (1 - 1.5 e^-t) leaves every
    bound before t = ln 1.5 = 0.405; the fitted degree-2 field must do the same, and say so."""
    t = np.linspace(0, 4, 25)
    x0s = np.random.default_rng(0).uniform(0.1, 1.6, (10, 2))
    X = np.stack([1 / (1 + (1 / x0 - 1) * np.exp(-t[:, None])) for x0 in x0s])
    with warnings.catch_warnings():  # no edge between the two: said in a warning of its own
        warnings.simplefilter("ignore", GraphWarning)
        g = SparseGraph(poly=True, n_subsamples=0, n_stages=5, steps=100, refine=False).fit(X, t=t)
    grid = np.linspace(0, 2, 201)
    with pytest.warns(GraphWarning, match=r"left the data's range .* before t = 0\.[34]") as caught:
        forecast = g.simulate(np.array([-2.0, 0.5]), grid)
    assert "a degree-2 library can do so" in str(caught[0].message)
    first_nan = grid[np.isnan(forecast).any(axis=1)][0]
    assert np.log(1.5) - 0.05 < first_nan < np.log(1.5) + 0.05
    assert np.isfinite(forecast[grid < first_nan]).all() and np.isnan(forecast[grid >= first_nan]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphWarning)
        inside = g.simulate(X[0, 0], t)
    np.testing.assert_allclose(inside, X[0], atol=0.05)
    # a batch of initial states: each row's own forecast; the warning counts the ones that blew up
    with pytest.warns(GraphWarning, match=r"forecast of 1 of 2 initial states left the data's range"):
        batch = g.simulate(np.stack([X[0, 0], [-2.0, 0.5]]), grid)
    assert batch.shape == (2, len(grid), 2)
    np.testing.assert_array_equal(batch[1], forecast)
    np.testing.assert_array_equal(batch[0], g.simulate(X[0, 0], grid))


def test_a_feature_that_duplicates_another_is_named_in_a_warning():
    """A copy of x0 in other units (3 x0 + 1): no edge out of it can be told from one out of x0 (ad hoc: the copy
    got probability 0.95 for x0's child, as x0 did), so the fit says so; the plain data give no such warning.
    ``duplicate_pairs`` by hand: NaN rows skipped, constant columns left out, a sign flip is a duplicate too."""
    from sparsedyn.graph import duplicate_pairs

    A, t, X = _linear_data(n_traj=8)
    copied = np.concatenate([X, 3 * X[..., :1] + 1], axis=2)
    with pytest.warns(GraphWarning, match=r"x0 ~ x5 are the same signal up to scale and offset") as caught:
        SparseGraph(n_subsamples=0, n_stages=5, steps=100).fit(copied, t=t)
    assert "drop one of each pair" in str([w.message for w in caught])
    with warnings.catch_warnings(record=True) as plain:
        warnings.simplefilter("always")
        SparseGraph(n_subsamples=0, n_stages=5, steps=100).fit(X, t=t)
    assert not [w for w in plain if "same signal" in str(w.message)]
    rows = np.array([[0.0, 1.0, 5.0, 2.0], [1.0, -1.0, 5.0, 0.0], [np.nan, np.nan, np.nan, np.nan],
                     [2.0, -3.0, 5.0, 7.0], [3.0, -5.0, 5.0, 1.0]])
    assert duplicate_pairs(rows, ["a", "b", "c", "d"]) == [("a", "b")]  # b = 1 - 2a; c constant; d unrelated


def test_a_linear_forecast_that_grows_past_the_bound_names_the_linear_field():
    """dx/dt = x observed on [0, 1] from x0 in [0.5, 1.5]: the fitted linear field grows as e^t, and its
    forecast to t = 10 leaves the bound; the warning must not blame a degree-2 library this fit lacks."""
    t = np.linspace(0, 1, 12)
    X = np.stack([np.exp(t)[:, None] * x0 for x0 in np.random.default_rng(0).uniform(0.5, 1.5, (8, 2))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)
        g = SparseGraph(poly=False, n_subsamples=0, n_stages=5, steps=100, refine=False).fit(X, t=t)
    with pytest.warns(GraphWarning, match="linear field has a growing mode") as caught:
        g.simulate(X[0, 0], np.linspace(0, 10, 101))
    assert "degree-2" not in str(caught[0].message)


def test_graph_is_the_error_weighted_average_of_the_libraries_scaled_graphs():
    A, t, X = _linear_data(n_traj=6)
    g = SparseGraph(n_subsamples=0, n_stages=6, steps=100).fit(X, t=t)
    off = ~np.eye(5, dtype=bool)
    # by hand: each library's full-data mean |Jacobian| at its own CV-best stage, scaled to max 1 off the diagonal
    weights = {k: np.exp(-4 * e) for k, e in g.library_errors_.items()}  # (geometric mean error)^-4
    assert set(weights) == {"linear", "degree 2"}
    for graph in g.library_graphs_.values():
        assert graph[off].max() == pytest.approx(1.0)
    expected = sum(w * g.library_graphs_[k] for k, w in weights.items()) / sum(weights.values())
    np.testing.assert_allclose(g.graph_, expected, rtol=1e-12)
    # one library: graph_ is its scaled graph, read at the path's error-minimising stage
    lin = SparseGraph(poly=False, n_subsamples=0, n_stages=6, steps=100, design="smoothed").fit(X, t=t)
    raw = lin.path_.jacobian[lin.best_stage_, lin.n_folds_].numpy()
    np.testing.assert_allclose(lin.graph_, raw / raw[off].max(), rtol=1e-6)


def test_one_variable_fits_its_own_decay_without_a_warning_about_edges():
    t = np.linspace(0, 3, 20)
    X = np.stack([np.exp(-0.7 * t)[:, None] * x0 for x0 in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphWarning)
        g = SparseGraph(n_subsamples=0, n_stages=5, steps=100).fit(X, t=t)
    assert g.graph_.shape == (1, 1) and g.edges_ == []
    np.testing.assert_allclose(g.derivative(np.array([[2.0]])), [[-1.4]], rtol=0.05)


def test_a_constant_feature_is_named_in_a_warning_and_scores_no_edge_out():
    A, t, X = _linear_data(n_traj=6)
    X[..., 2] = 3.0
    with pytest.warns(GraphWarning, match=r"\['x2'\] do not vary"):
        g = SparseGraph(n_subsamples=0, n_stages=5, steps=100).fit(X, t=t)
    assert g.constant_features_ == ["x2"]
    np.testing.assert_array_equal(g.graph_[[0, 1, 3, 4], 2], 0.0)


class _AllMembersAtOnce(SparseGraph):
    """SparseGraph fitting the halves with the folds and the full data, every stage (the plain path)."""

    def _fit_deferred(self, poly, z, y, weights, randomised, on_stage):
        field, path = self._library_path(poly, z, y, weights, randomised, None, on_stage)
        return self._split(field, path)


@pytest.mark.parametrize("options", [{}, {"randomize": 0.6, "n_subsamples": 4, "seed": 2}])
def test_deferred_halves_give_the_numbers_of_fitting_every_member_at_once(options):
    """The halves fitted only for the kept design and down to the one-standard-error stage: every read-out
    equal, bit for bit, to fitting every member along the whole path (both designs, both libraries)."""
    data = make_dataset("hill", 0, REGIMES["few_points"], 0)
    fits = [kind(n_stages=8, steps=60, **options).fit(data.train.values, t=data.train.times)
            for kind in (SparseGraph, _AllMembersAtOnce)]
    for attr in ("graph_", "edge_probability_", "edge_stability_", "support_", "sign_"):
        assert np.array_equal(getattr(fits[0], attr), getattr(fits[1], attr)), attr
    assert fits[0].design_errors_.keys() == {"smoothed", "differences"}
    assert len(fits[0].path_.val_mse[0]) == fits[0].n_folds_ + 1  # the kept path holds no halves


def test_the_progress_bar_counts_every_path_stage_and_is_off_for_small_systems(capsys):
    """Two designs x two libraries x 5 stages, one necessity step per library, and the kept design's halves'
    stages down to each library's one-standard-error stage (1 to 5 each): 22 + 2 to 10 units, the bar
    ending at its total; it goes to stderr, never stdout, and is off by default below PROGRESS_FEATURES
    variables."""
    import re

    A, t, X = _linear_data(n_traj=6)
    SparseGraph(n_subsamples=2, n_stages=5, steps=50, progress=True).fit(X, t=t)
    out = capsys.readouterr()
    done, total = map(int, re.findall(r"(\d+)/(\d+)", out.err)[-1])
    assert "SparseGraph" in out.err and done == total and 24 <= total <= 32 and out.out == ""
    SparseGraph(n_subsamples=0, n_stages=5, steps=50, poly=False, design="smoothed", progress=True).fit(X, t=t)
    assert "5/5" in capsys.readouterr().err
    SparseGraph(n_subsamples=0, n_stages=5, steps=50, poly=False, design="smoothed", progress=True,
                adaptive=1.0).fit(X, t=t)
    assert "10/10" in capsys.readouterr().err  # the adaptive group lasso's second path
    assert PROGRESS_FEATURES > 5
    SparseGraph(n_subsamples=2, n_stages=5, steps=50).fit(X, t=t)
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="progress"):
        SparseGraph(progress="yes").fit(X, t=t)


def test_beyond_thirty_variables_auto_fits_the_linear_library_alone_and_says_so():
    """31 variables would make 528 degree-2 features (> MAX_AUTO_POLY_FEATURES): the linear library alone,
    a warning that names the count, and the chain x_{k-1} -> x_k still recovered."""
    from scipy.linalg import expm

    n, rng = 31, np.random.default_rng(0)
    A = -np.eye(n) + np.diag(np.full(n - 1, 1.2), -1)
    t = np.linspace(0, 3, 15)
    X = np.stack([np.stack([expm(A * s) @ x0 for s in t]) for x0 in rng.normal(0, 2, (12, n))])
    X = X + 0.01 * X.std() * rng.standard_normal(X.shape)
    with pytest.warns(GraphWarning, match="31 variables make 528 degree-2"):
        g = SparseGraph(n_subsamples=0, n_stages=6, steps=100, design="smoothed").fit(X, t=t)
    assert set(g.library_errors_) == {"linear"} and not g.poly_
    assert edge_metrics(g.graph_, A != 0)["auroc"] > 0.95
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SparseGraph()._libraries(30) == [False, True]  # 496 features: both, silently
        assert SparseGraph(poly=True)._libraries(31) == [True]  # forced


def test_one_trajectory_is_cross_validated_over_blocks_of_time():
    """A single 60-point trajectory of the linear system: folds and subsamples are contiguous blocks of
    it (every block in exactly one fold), and the off-diagonal ranking still finds the graph."""
    A, t, X = _linear_data(n_traj=1, points=60)
    g = SparseGraph()
    blocks = g._cv_groups(np.zeros(60, dtype=int))
    assert list(np.unique(blocks)) == list(range(10)) and np.all(np.diff(blocks) >= 0)
    g.fit(X[0], t=t)
    assert ranking_metrics(g.graph_, A != 0)["auroc_offdiag"] > 0.95
    # blocks of time are not trajectories to forecast: the lower derivative error picks the forecasting library
    assert g.forecast_errors_ == {}
    assert g.poly_ == (g.library_errors_["degree 2"] < g.library_errors_["linear"])


def test_the_peers_cross_validate_one_trajectory_over_the_same_blocks_of_time():
    """The classical tools on the single 60-point trajectory: they used to refuse it ("needs at least two
    trajectories") while SparseGraph fitted it. Now their folds hold out the same contiguous blocks
    SparseGraph's do (LassoCV's 5 folds: SparseGraph's default; SINDy's 3: 6 blocks): LassoCV's scores are
    sklearn's LassoCV with those folds."""
    from sparsedyn.baselines.edges import cv_units, lasso_linear, sindy

    A, t, X = _linear_data(n_traj=1, points=60)
    data = derivative_data(from_arrays(X[0], t))
    np.testing.assert_array_equal(cv_units(data.trajectory, 5), SparseGraph()._cv_groups(data.trajectory))
    assert list(np.unique(cv_units(data.trajectory, 3))) == list(range(6))
    assert cv_units(np.array([0, 0, 1, 1]), 5).tolist() == [0, 0, 1, 1]  # trajectories stay the units
    with pytest.raises(ValueError, match="at least 4 time points; got 3"):
        cv_units(np.zeros(3, dtype=int), 5)
    # LassoCV's scores: sklearn's LassoCV by hand on the standardised rows with those blocks as groups
    from sklearn.linear_model import LassoCV
    from sklearn.model_selection import GroupKFold

    z = (data.x - data.x.mean(0)) / data.x.std(0)
    y = (data.dxdt - data.dxdt.mean(0)) / data.dxdt.std(0)
    folds = list(GroupKFold(5).split(z, groups=np.arange(len(z)) * 10 // len(z)))
    by_hand = np.abs([LassoCV(cv=folds, max_iter=5000, random_state=0).fit(z, y[:, i]).coef_ for i in range(5)])
    np.testing.assert_allclose(lasso_linear(data).scores, by_hand, rtol=1e-10, atol=1e-12)
    assert ranking_metrics(by_hand, A != 0)["auroc_offdiag"] > 0.7  # and it ranks the graph above chance
    assert sindy(data).scores.shape == (5, 5)


def test_forecasts_use_the_library_that_forecasts_the_held_out_trajectories_better():
    """``forecast_errors_`` by hand for the library that forecasts: its fold members at the path's best stage
    integrate each held-out trajectory from its first observation (RK4), the error capped at that of repeating
    the first point, mean over the fold's trajectories, mean log over folds; and it is the lower of the two."""
    import copy

    from sparsedyn.baselines.edges import trajectory_folds

    A, t, X = _linear_data(n_traj=8, noise=0.05)
    g = SparseGraph(n_subsamples=0, n_stages=6, steps=100, design="smoothed").fit(X, t=t)
    assert set(g.forecast_errors_) == {"linear", "degree 2"}
    assert g.poly_ == (g.forecast_errors_["degree 2"] < g.forecast_errors_["linear"])
    trajectory = derivative_data(from_arrays(X, t)).trajectory
    scale = X.reshape(-1, 5).std(axis=0)
    field = copy.deepcopy(g.field_)
    field.load_state_dict(g.path_.states[g.best_stage_])
    logs = []
    for f, (_, test) in enumerate(trajectory_folds(trajectory, g.folds)):
        errors = []
        for k in np.unique(trajectory[test]):
            z = torch.as_tensor(g.scaler_.states(X[k, :1]), dtype=torch.float32)
            rate = _rate_in_standard_units(field.member(f), g.scaler_)
            path = [z]
            for dt in np.diff(t):
                h = float(dt) / 4
                for _ in range(4):  # classical RK4, four steps per observation interval
                    k1 = rate(z)
                    k2 = rate(z + h / 2 * k1)
                    k3 = rate(z + h / 2 * k2)
                    k4 = rate(z + h * k3)
                    z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
                path.append(z)
            forecast = torch.cat(path).detach().double().numpy() * g.scaler_.x_scale + g.scaler_.x_mean
            errors.append(min(np.mean(((forecast - X[k]) / scale) ** 2), np.mean(((X[k] - X[k, 0]) / scale) ** 2)))
        logs.append(np.log(np.mean(errors)))
    assert g.forecast_errors_["degree 2" if g.poly_ else "linear"] == pytest.approx(np.mean(logs), rel=1e-5)
    # where the forecast errors disagree with the derivative errors, they decide (and only the forecasts)
    assert g.library_errors_["linear"] < g.library_errors_["degree 2"] and not g.poly_
    swapped = {"linear": 0.0, "degree 2": -1.0}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SparseGraph, "_library_forecast_errors", lambda *args: swapped)
        h = SparseGraph(n_subsamples=0, n_stages=6, steps=100, design="smoothed").fit(X, t=t)
    assert h.poly_ and h.forecast_errors_ == swapped
    np.testing.assert_array_equal(h.graph_, g.graph_)
    assert h.library_errors_ == g.library_errors_


def _rate_in_standard_units(field, scaler):
    """dz/dt of a one-member field in standardised states: its derivatives mapped back and rescaled."""
    return lambda z: (field(z)[0] * torch.as_tensor(scaler.d_scale, dtype=torch.float32)
                      + torch.as_tensor(scaler.d_mean, dtype=torch.float32)) / torch.as_tensor(
                          scaler.x_scale, dtype=torch.float32)


def test_bad_input_and_unfitted_use_are_named():
    from sklearn.exceptions import NotFittedError as SklearnNotFitted

    with pytest.raises(NotFittedError, match="not fitted"):
        SparseGraph().simulate(np.zeros(2), np.linspace(0, 1, 3))
    with pytest.raises(SklearnNotFitted):  # scikit-learn's own check catches it too
        _ = SparseGraph().edges_
    with pytest.raises(ValueError, match="bad folds"):
        SparseGraph(folds=1).fit(np.zeros((3, 10, 2)))
    with pytest.raises(ValueError, match="bad design='splines'"):
        SparseGraph(design="splines").fit(np.zeros((3, 10, 2)))
    with pytest.raises(DataError, match="at least two trajectories, or one with at least 4 time points"):
        SparseGraph().fit(np.random.default_rng(0).normal(size=(3, 2)))
    with pytest.raises(ValueError, match="no parameter"):
        SparseGraph().set_params(strength=1.0)
    A, t, X = _linear_data(n_traj=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)
        g = SparseGraph(n_subsamples=0, n_stages=4, steps=50).fit(list(X), t=t)
    with pytest.raises(DataError, match="x0 must be \\(5,\\) or \\(B, 5\\)"):
        g.simulate(np.zeros(3), t)
    with pytest.raises(DataError, match="x0 must be"):
        g.simulate(np.zeros((2, 2, 2)), t)
    for times, message in [([0.0, 2.0, 1.0], "strictly increasing .* 2 then 1 at point 2"), ([0.0, np.nan], "NaN"),
                           ([1.0], "T >= 2"), ([[0.0, 1.0]], "got shape \\(1, 2\\)")]:
        with pytest.raises(DataError, match=message):  # scipy hung on NaN times, and failed on the others
            g.simulate(X[0, 0], times)
    back = g.simulate(X[0, -1], t[::-1])  # decreasing times forecast backwards: back again to the start
    np.testing.assert_allclose(g.simulate(back[-1], t)[-1], X[0, -1], atol=1e-3)
    with pytest.raises(DataError, match="x must be \\(5,\\) or \\(N, 5\\) states, got shape \\(2, 3\\)"):
        g.derivative(np.zeros((2, 3)))  # was numpy's broadcast error
    with pytest.raises(DataError, match="x contains NaN or inf"):  # was NaN derivatives, silently
        g.derivative(np.full((2, 5), np.nan))
    np.testing.assert_array_equal(g.derivative(X[0, 0]), g.derivative(X[0, :1]))  # one state as (n,) or (1, n)


# -- the classical tools -------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_scores_a_sparse_linear_system_well(name):
    # trees split on one state at a time and the states of a linear system are correlated: a lower bar
    A, t, X = _linear_data()
    data = derivative_data(Series([t] * len(X), list(X), list("abcde"), [str(i) for i in range(len(X))]))
    est = BASELINES[name](data, seed=0, **({"n_estimators": 60} if name == "trees" else {}))
    assert est.scores.shape == (5, 5) and np.isfinite(est.scores).all()
    assert edge_metrics(est.scores, A != 0)["auroc"] >= (0.65 if name == "trees" else 0.9), est.name
    assert edge_metrics(est.scores.T, A != 0)["auroc"] < edge_metrics(est.scores, A != 0)["auroc"]  # orientation

