import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from sparsedyn.methods import group_soft_threshold, hier_prox


def _objective(b, W, v, u, lam):
    return 0.5 * np.sum((v - b) ** 2) + 0.5 * np.sum((u - W) ** 2) + lam * np.linalg.norm(b)


def _brute_force(v, u, lam, M, starts=12, seed=0):
    """Solve the Hier-Prox sub-problem with a general constrained solver from many starts."""
    rng = np.random.default_rng(seed)
    n_out, K = len(v), len(u)
    best = (np.inf, None)

    def f(z):
        return _objective(z[:n_out], z[n_out:], v, u, lam)

    cons = [{"type": "ineq", "fun": (lambda z, i=i: M * np.sqrt(np.sum(z[:n_out] ** 2) + 1e-18) - z[n_out + i])}
            for i in range(K)]
    cons += [{"type": "ineq", "fun": (lambda z, i=i: M * np.sqrt(np.sum(z[:n_out] ** 2) + 1e-18) + z[n_out + i])}
             for i in range(K)]
    for s in range(starts):
        z0 = np.r_[v, u] * rng.uniform(0, 1.2) + 0.1 * rng.normal(size=n_out + K) * (s > 0)
        res = minimize(f, z0, constraints=cons, method="SLSQP", options={"maxiter": 500, "ftol": 1e-12})
        if res.fun < best[0] and all(c["fun"](res.x) >= -1e-7 for c in cons):
            best = (res.fun, res.x)
    return best[0]


@pytest.mark.parametrize("seed", range(8))
def test_hier_prox_solves_its_subproblem_against_a_brute_force_solver(seed):
    rng = np.random.default_rng(seed)
    n_out, K, n_in = 2, 3, 4
    S = rng.normal(size=(n_out, n_in))
    W = rng.normal(size=(K, n_in)) * 2
    lam, M = rng.uniform(0.1, 1.5), rng.uniform(0.3, 3.0)
    new_S, new_W = hier_prox(torch.tensor(S), torch.tensor(W), lam, M)
    new_S, new_W = new_S.numpy(), new_W.numpy()
    for k in range(n_in):
        b, w = new_S[:, k], new_W[:, k]
        assert np.max(np.abs(w)) <= M * np.linalg.norm(b) + 1e-9  # feasible
        ours = _objective(b, w, S[:, k], W[:, k], lam)
        brute = _brute_force(S[:, k], W[:, k], lam, M)
        assert np.isfinite(brute), "the brute force found no feasible point: nothing to compare with"
        assert ours <= brute + 1e-6


def test_large_M_leaves_W_free_and_group_soft_thresholds_S():
    S = torch.tensor([[3.0, 0.2], [4.0, 0.1]], dtype=torch.float64)
    W = torch.tensor([[1.0, -2.0], [0.5, 0.3]], dtype=torch.float64)
    new_S, new_W = hier_prox(S, W, lam=1.0, M=1e8)
    assert torch.allclose(new_W[:, 0], W[:, 0])
    assert torch.allclose(new_S[:, 0], S[:, 0] * (1 - 1.0 / 5.0))  # ||v|| = 5


def test_M_zero_is_group_lasso_on_S_and_kills_W():
    S = torch.randn(3, 5, dtype=torch.float64)
    W = torch.randn(4, 5, dtype=torch.float64)
    new_S, new_W = hier_prox(S, W, lam=0.7, M=0.0)
    assert torch.all(new_W == 0)
    assert torch.allclose(new_S, group_soft_threshold(S, 0.7, dim=0))


def test_dropped_feature_is_removed_from_the_whole_model():
    S = torch.tensor([[0.05, 2.0]], dtype=torch.float64)
    W = torch.tensor([[0.01, 1.0], [0.02, -1.0]], dtype=torch.float64)
    new_S, new_W = hier_prox(S, W, lam=0.5, M=1.0)
    assert new_S[0, 0] == 0 and torch.all(new_W[:, 0] == 0)
    assert new_S[0, 1] != 0


def test_hier_prox_shape_and_value_errors():
    with pytest.raises(ValueError, match="n_in"):
        hier_prox(torch.zeros(2, 3), torch.zeros(4, 5), 0.1, 1.0)
    with pytest.raises(ValueError, match="lam"):
        hier_prox(torch.zeros(2, 3), torch.zeros(4, 3), -0.1, 1.0)


def test_group_soft_threshold_hand_values():
    w = torch.tensor([[3.0, 0.3], [4.0, 0.4]])
    out = group_soft_threshold(w, 1.0, dim=0)  # column norms 5 and 0.5
    assert torch.allclose(out[:, 0], torch.tensor([3.0, 4.0]) * 0.8)
    assert torch.all(out[:, 1] == 0)
