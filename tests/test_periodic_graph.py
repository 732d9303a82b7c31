"""Periodic variables (phases in radians) in SparseGraph: the lifted library field and phase-coupled recovery."""

import warnings

import numpy as np
import pytest
import torch

from sparsedyn.collocation import HybridField, feature_groups, library_features, square_partners, stacked_prox
from sparsedyn.graph import GraphWarning, SparseGraph
from sparsedyn.graph_benchmark import edge_metrics
from sparsedyn.tasks.systems import make_system
from sparsedyn.tasks.user_data import DataError


def _lifted_field(members=3, n=4, periodic=(1, 3), seed=1):
    gen = torch.Generator().manual_seed(seed)
    field = HybridField(members, n, 0, True, gen, periodic=periodic)
    with torch.no_grad():
        for p in (field.bias, field.linear, field.quad):
            p.copy_(torch.randn(p.shape, generator=gen))
    return field


def test_a_periodic_variable_enters_as_its_cosine_and_sine():
    field = _lifted_field()
    z = torch.tensor([[0.5, 1.0, -2.0, 3.0]])
    expected = torch.tensor([[0.5, np.cos(1.0), -2.0, np.cos(3.0), np.sin(1.0), np.sin(3.0)]], dtype=torch.float32)
    torch.testing.assert_close(field.features(z), expected)
    assert field.owner.tolist() == [0, 1, 2, 3, 1, 3]
    # the field is 2 pi-periodic in the phases and not in the others
    shift = torch.tensor([[0.0, 2 * np.pi, 0.0, -4 * np.pi]])
    torch.testing.assert_close(field(z + shift), field(z), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(field(z + shift.roll(1, dims=1)), field(z), atol=1e-3)
    plain = HybridField(1, 4, 0, True)
    assert plain.features(z) is z and plain.n_lifted == 4  # no periodic variable: the field as before


def test_the_lifted_fields_jacobian_library_and_prox_agree_with_their_definitions():
    field = _lifted_field()
    z = torch.randn(7, 4, generator=torch.Generator().manual_seed(2))
    # closed-form mean |df_i/dz_j| (through cos and sin) against autograd
    rows = []
    for m in range(3):
        jac = torch.func.vmap(torch.func.jacrev(lambda p, m=m: field(p[None])[m, 0]))(z)
        rows.append(jac.abs().mean(dim=0))
    torch.testing.assert_close(field.jacobian(z), torch.stack(rows), rtol=1e-5, atol=1e-6)
    # the FISTA path's library features times the stacked coefficients are the field
    theta = torch.cat([field.bias[:, None], field.linear.transpose(1, 2), field.quad.transpose(1, 2)], dim=1).detach()
    torch.testing.assert_close(library_features(field, z) @ theta, field(z).detach(), rtol=1e-5, atol=1e-5)
    # a periodic variable's group holds both its features' terms: cutting it removes the variable entirely
    thresholds = torch.zeros(3, 4, 4)
    thresholds[:, 0, 1] = 1e6
    out = stacked_prox(field, feature_groups(field), square_partners(field), theta, thresholds)
    field.prox(thresholds)
    torch.testing.assert_close(out[:, 1:], torch.cat([field.linear.transpose(1, 2), field.quad.transpose(1, 2)], 1))
    assert (field.jacobian(z)[:, 0, 1] == 0).all() and (field.jacobian(z)[:, 0, 3] > 0).all()


def _kuramoto(n_traj=16, points=30, noise=0.01, seed=0):
    system = make_system("kuramoto", n=6, parents=2, K=1.0, seed=seed)
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 10, points)
    X = [system.simulate(x0[None], t)[0] for x0 in system.sample_x0(rng, n_traj)]
    X = [x + noise * rng.standard_normal(x.shape) for x in X]
    return system, X, t


def test_phase_coupled_oscillators_are_recovered_with_periodic_features_and_not_without():
    system, X, t = _kuramoto()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)
        plain = SparseGraph(n_subsamples=4).fit(X, t=t)
        phases = SparseGraph(n_subsamples=4, periodic=range(6)).fit(X, t=t)
    truth = system.adjacency.astype(bool)
    # sin(theta_j - theta_i) is no polynomial in the phases; it is degree 2 in their cosines and sines
    assert edge_metrics(phases.graph_, truth)["auroc"] > 0.95
    assert edge_metrics(plain.graph_, truth)["auroc"] < 0.8
    assert phases.periodic_ == tuple(range(6)) and phases.poly_  # phases interact through products
    # forecasts are unwrapped phases, past any bound on the states: never cut off as a blow-up
    long = phases.simulate(X[0][0], np.linspace(0, 60, 50))
    assert np.isfinite(long).all() and np.abs(long).max() > 30


def test_phases_recorded_modulo_two_pi_give_the_graph_of_the_unwrapped_ones():
    system, X, t = _kuramoto(n_traj=10, points=25)
    wrapped = [np.mod(x + np.pi, 2 * np.pi) - np.pi for x in X]
    names = [f"theta{i}" for i in range(6)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)
        a = SparseGraph(n_subsamples=0, periodic=set(names)).fit(X, t=t, feature_names=names)  # any collection
        b = SparseGraph(n_subsamples=0, periodic=list(range(6))).fit(wrapped, t=t)
    # unwrapping restores each trajectory up to a multiple of 2 pi, which the cosines and sines do not see
    np.testing.assert_allclose(a.graph_, b.graph_, rtol=1e-3, atol=1e-4)
    # phases counted from a far epoch (a whole number of turns, plus any offset below one) are the same data
    far = [x + 2 * np.pi * 1000 for x in wrapped]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)
        c = SparseGraph(n_subsamples=0, periodic=list(range(6))).fit(far, t=t)
    np.testing.assert_allclose(c.graph_, b.graph_, rtol=1e-3, atol=1e-4)


def test_unwrapping_restores_a_phase_and_starts_it_within_half_a_turn_of_zero():
    from sparsedyn.tasks.user_data import Series, unwrap_phases

    t = np.linspace(0, 10, 40)
    phase = 1.3 * t + 0.5 + 2 * np.pi * 7  # a phase counted from 7 turns before, recorded modulo 2 pi
    x = np.stack([np.mod(phase, 2 * np.pi), 0.1 * t], axis=1)
    x[5] = np.nan  # a missing point is skipped, not unwrapped through
    out = unwrap_phases(Series([t], [x], ["theta", "y"], ["0"]), (0,)).values[0]
    seen = ~np.isnan(x[:, 0])
    np.testing.assert_allclose(out[seen, 0], (phase - 2 * np.pi * 7)[seen], atol=1e-9)
    np.testing.assert_array_equal(out[:, 1], x[:, 1])  # other columns untouched
    assert np.isnan(out[5]).all()


@pytest.mark.parametrize("periodic,match", [
    (["nope"], "'nope' is not among the features"), ([6], r"column indices in \[0, 6\)"),
    ([True], "column indices"), ([1, 1], "names a feature twice"),
])
def test_bad_periodic_features_are_named(periodic, match):
    _, X, t = _kuramoto(n_traj=4, points=10)
    with pytest.raises(DataError, match=match):
        SparseGraph(periodic=periodic).fit(X, t=t)


def test_periodic_features_need_a_library_field():
    with pytest.raises(ValueError, match="periodic features need a library field"):
        SparseGraph(periodic=[0], hidden=4).fit(np.zeros((2, 10, 2)), t=np.arange(10.0))
    with pytest.raises(ValueError, match="bad periodic"):
        SparseGraph(periodic="theta").fit(np.zeros((2, 10, 2)), t=np.arange(10.0))


def test_the_graph_command_takes_periodic_features_by_name(tmp_path):
    import csv
    import json

    from typer.testing import CliRunner

    from sparsedyn.cli import app

    _, X, t = _kuramoto(n_traj=8, points=20)
    names = [f"theta{i}" for i in range(6)]
    data = tmp_path / "phases.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "t", *names])
        for b, x in enumerate(X):  # recorded modulo 2 pi, as a phase usually is
            w.writerows([f"r{b}", t[k], *np.mod(x[k], 2 * np.pi)] for k in range(len(t)))
    res = CliRunner().invoke(app, ["graph", str(data), "--group", "run", "--out", str(tmp_path / "out"),
                                   "--periodic", "theta0, theta3,theta1,theta2,theta4,theta5"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "out" / "fit.json").read_text())["periodic"] == [
        "theta0", "theta3", "theta1", "theta2", "theta4", "theta5"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)
        direct = SparseGraph(periodic=names).fit([np.mod(x, 2 * np.pi) for x in X], t=t, feature_names=names)
    with open(tmp_path / "out" / "edges.csv") as f:
        scores = [float(r["score"]) for r in csv.DictReader(f)]
    np.testing.assert_allclose(scores, [e["score"] for e in direct.edges_], rtol=1e-5, atol=1e-7)
    bad = CliRunner().invoke(app, ["graph", str(data), "--group", "run", "--periodic", "phi"])
    assert bad.exit_code != 0 and "'phi' is not among the features" in bad.output


def test_the_forecast_checks_follow_a_phase_past_any_bound_on_the_states():
    # a fit's own forecast checks (trajectory_error, one_step_error, shooting) clamp a blow-up at BOUND
    # standardised units; an unwrapped angle in radians passes it after ~160 turns and must not be cut there
    from sparsedyn.baselines.edges import Standardiser
    from sparsedyn.interval_error import BOUND, ObservedPairs, one_step_error, trajectory_error
    from sparsedyn.shooting import shooting_refit
    from sparsedyn.tasks.user_data import Series

    field = HybridField(1, 2, 0, False, periodic=(0,))
    with torch.no_grad():
        field.linear.zero_()
        field.bias.copy_(torch.tensor([[30.0, 0.0]]))  # the phase turns at 30 rad per unit of time, y stays
    scaler = Standardiser(np.zeros(2), np.ones(2), np.zeros(2), np.ones(2))
    t = np.linspace(0, 100, 51)
    x = np.stack([30.0 * t, np.ones_like(t)], axis=1)  # up to 3000 rad
    assert x[:, 0].max() > 2 * BOUND
    assert trajectory_error(field, scaler, [(t, x)], np.ones(2))[0] < 1e-6
    pairs = ObservedPairs.of(Series([t], [x], ["theta", "y"], ["0"]))
    assert one_step_error(field, scaler, pairs, np.ones(len(pairs.dt), bool), np.ones(2)) < 1e-6
    refit = shooting_refit(field, scaler, pairs, np.ones((1, len(pairs.dt)), bool), steps=3)
    torch.testing.assert_close(refit.bias, field.bias, atol=1e-3, rtol=0)  # no spurious pull from a clamp
