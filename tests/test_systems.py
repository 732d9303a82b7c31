import numpy as np
import pytest
import torch
from scipy.linalg import expm

from sparsedyn.tasks import SYSTEMS, SystemTask, make_system
from sparsedyn.tasks.systems import CoupledOscillators, Lorenz96, SparseLinear


def _numerical_jacobian_support(system, rng):
    x = system.sample_x0(rng, 1)[0]
    eps = 1e-6
    J = np.zeros((system.n, system.n))
    for j in range(system.n):
        d = np.zeros(system.n)
        d[j] = eps
        J[:, j] = (system.f((x + d)[None])[0] - system.f((x - d)[None])[0]) / (2 * eps)
    return np.abs(J) > 1e-7


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_true_adjacency_equals_support_of_the_true_jacobian(name):
    system = make_system(name)
    support = _numerical_jacobian_support(system, np.random.default_rng(0))
    if system.second_order:
        support = support[system.n // 2:]  # acceleration rows over [x, v]
    assert np.array_equal(support, system.adjacency)


def test_oscillators_observing_velocities_has_first_order_adjacency():
    s = CoupledOscillators(observe_velocities=True)
    assert np.array_equal(_numerical_jacobian_support(s, np.random.default_rng(0)), s.adjacency)
    assert list(s.observed) == list(range(6))


def test_lorenz96_hand_value():
    s = Lorenz96(n=5, F=8.0)
    x = np.arange(5.0)[None]
    # dx_0 = (x_1 - x_3) x_4 - x_0 + F = (1 - 3) 4 - 0 + 8 = 0
    assert s.f(x)[0, 0] == pytest.approx(0.0)
    assert s.f(x)[0, 2] == pytest.approx((3 - 0) * 1 - 2 + 8)


def test_linear_system_simulation_matches_matrix_exponential():
    s = SparseLinear(n=4, density=0.5, seed=1)
    x0 = np.random.default_rng(0).normal(size=(2, 4))
    t = np.linspace(0, 2, 5)
    traj = s.simulate(x0, t)
    for k, tk in enumerate(t):
        assert np.allclose(traj[:, k], x0 @ expm(s.A * tk).T, atol=1e-6)


def test_intervention_holds_variable_and_its_velocity():
    s = CoupledOscillators()
    traj = s.simulate(s.Y0[None], np.linspace(0, 3, 7), intervention={0: 1.0})
    assert np.allclose(traj[0, :, 0], 1.0) and np.allclose(traj[0, :, 3], 0.0)
    free = s.simulate(s.Y0[None], np.linspace(0, 3, 7))
    assert not np.allclose(free[0, :, 2], traj[0, :, 2])  # X2 feels V0 = 0


def test_task_splits_noise_irregular_extrapolation():
    task = SystemTask(system="sparse_tanh", system_params={"n": 4}, n_train=5, n_test=3, t_end=2.0,
                      n_points=11, noise=0.1, irregular=0.5, data_seed=0)
    train, test, ext = task.splits["train"], task.splits["test"], task.splits["test_extrap"]
    assert train.mask[:, 0].all() and 0.3 < train.mask.float().mean() < 0.75
    assert test.mask.all()
    assert float(ext.t[-1]) == pytest.approx(4.0) and ext.score_from > 2.0
    inter = task.splits["test_intervention"]
    assert torch.allclose(inter.y[:, :, 0], torch.ones_like(inter.y[:, :, 0]))


def test_same_seed_same_data_different_seed_different_data():
    a = SystemTask(system="lotka_volterra", data_seed=3).splits["train"].y
    b = SystemTask(system="lotka_volterra", data_seed=3).splits["train"].y
    c = SystemTask(system="lotka_volterra", data_seed=4).splits["train"].y
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name,params,field", [
    ("sparse_tanh", {"parents": 10, "n": 5}, "parents"), ("lorenz96", {"n": 2}, "n"),
    ("sparse_linear", {"density": 1.5}, "density"), ("nope", {}, "unknown system"),
    ("sparse_tanh", {"colour": 1}, "colour"),
])
def test_bad_system_parameters_are_named(name, params, field):
    with pytest.raises(ValueError, match=field):
        make_system(name, **params)


def test_bad_task_parameters_are_named():
    s = {"system": "sparse_tanh", "system_params": {"n": 3}}
    with pytest.raises(ValueError, match="noise"):
        SystemTask(**s, noise=-1)
    with pytest.raises(ValueError, match="irregular"):
        SystemTask(**s, irregular=1.0)
    with pytest.raises(ValueError, match="intervention"):
        SystemTask(**s, intervention={7: 1.0})


def test_trivial_baselines_are_the_tasks_metrics_of_holding_x0_and_of_the_training_mean():
    task = SystemTask(system="sparse_tanh", system_params={"n": 4}, n_train=8, t_end=1.0, n_points=6,
                      irregular=0.3)
    got = task.trivial_baselines()
    test, train = task.splits["test"], task.splits["train"]
    held = ((test.y - test.x0[:, None]) ** 2)[test.mask].mean()  # by hand, over observed points
    mean = train.y[train.mask].mean(0)
    to_mean = ((test.y - mean) ** 2)[test.mask].mean()
    assert got["initial_state"]["test_mse"] == pytest.approx(float(held), rel=1e-6)
    assert got["train_mean"]["test_mse"] == pytest.approx(float(to_mean), rel=1e-6)


@pytest.mark.parametrize("name, params, message", [
    ("kuramoto", {"n": 4, "parents": 4}, "parents must be < n"), ("kuramoto", {"K": 0.0}, "K must be > 0"),
    ("fitzhugh_nagumo", {"m": 3, "parents": 3}, "parents must be < m"), ("fitzhugh_nagumo", {"c": -1}, "c must be > 0"),
])
def test_the_untuned_systems_refuse_bad_parameters_by_name(name, params, message):
    with pytest.raises(ValueError, match=message):
        make_system(name, **params)


def test_fitzhugh_nagumo_voltages_couple_only_through_the_graph():
    s = make_system("fitzhugh_nagumo", m=4, parents=1, seed=0)
    m = 4
    assert s.adjacency.shape == (8, 8)
    assert np.array_equal(s.adjacency[:m, :m], (s.A != 0) | np.eye(m, dtype=bool))  # v_i <- v_i and its parent
    assert not s.adjacency[m:, :m][~np.eye(m, dtype=bool)].any()  # w_i <- v_i only
