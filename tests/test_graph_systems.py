"""The graph benchmark's systems: their declared adjacency is the support of their Jacobian."""

import sys
import types

import numpy as np
import pytest

from sparsedyn.graph_benchmark import REGIMES, make_dataset
from sparsedyn.tasks.graph_systems import GRAPH_SYSTEMS, DystsFlow


def _jacobian_support(system, points: np.ndarray) -> np.ndarray:
    """Central differences of ``system.f`` at ``points``, independently of the system's own code."""
    seen = np.zeros((system.n, system.n), dtype=bool)
    for x in points:
        for j in range(system.n):
            e = np.zeros(system.n)
            e[j] = 1e-4 * (1 + abs(x[j]))
            seen[:, j] |= np.abs(system.f((x + e)[None]) - system.f((x - e)[None]))[0] > 1e-9
    return seen


@pytest.mark.parametrize("name", sorted(GRAPH_SYSTEMS))
def test_each_systems_adjacency_is_its_jacobian_support(name):
    system = GRAPH_SYSTEMS[name]() if name == "hyper_rossler" else GRAPH_SYSTEMS[name](seed=3)
    points = system.sample_x0(np.random.default_rng(0), 5)
    np.testing.assert_array_equal(_jacobian_support(system, points), system.adjacency)


class _Rotor:
    """A stand-in for a dysts flow: a rotation in (x0, x1) driving x2, which drives x3 (both decay)."""

    ic = [1.0, 0.0, 0.0, 0.0]
    metadata = {"period": 2 * np.pi}

    def rhs(self, x, t):
        return [-x[1], x[0], 0.5 * x[0] - x[2], 0.3 * x[2] - x[3]]


@pytest.fixture
def fake_dysts(monkeypatch):
    package, flows = types.ModuleType("dysts"), types.ModuleType("dysts.flows")
    flows.HyperCai = _Rotor
    package.flows = flows
    monkeypatch.setitem(sys.modules, "dysts", package)
    monkeypatch.setitem(sys.modules, "dysts.flows", flows)


def test_a_dysts_flow_measures_its_graph_and_starts_on_its_attractor(fake_dysts):
    flow = DystsFlow("HyperCai")
    truth = np.zeros((4, 4), dtype=bool)
    truth[0, 1] = truth[1, 0] = truth[2, 0] = truth[2, 2] = truth[3, 2] = truth[3, 3] = True
    np.testing.assert_array_equal(flow.adjacency, truth)
    assert flow.span == pytest.approx(6 * np.pi)
    x0 = flow.sample_x0(np.random.default_rng(0), 50)
    # past the transient the rotor runs on the unit circle in (x0, x1)
    np.testing.assert_allclose(np.hypot(x0[:, 0], x0[:, 1]), 1.0, atol=0.05)
    data = make_dataset("dysts", 3, REGIMES["few_trajectories"], seed=0)  # instance 3: HyperCai
    assert data.truth.tolist() == truth.tolist() and len(data.train.times[0]) == 30
    assert data.train.times[0][-1] == pytest.approx(6 * np.pi)


def test_an_unknown_dysts_flow_is_named(fake_dysts):
    with pytest.raises(ValueError, match="unknown dysts flow 'Lorenz'"):
        DystsFlow("Lorenz")
