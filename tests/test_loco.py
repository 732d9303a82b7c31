"""Edge necessity (sparsedyn.loco): the Gram-matrix refits against direct ridge regressions, and what it
says about a true parent, an irrelevant variable and a correlated stand-in."""

import numpy as np
import torch

from sparsedyn.loco import necessity_frequency


def _halves(n_rows: int, n_halves: int, seed: int = 0) -> torch.Tensor:
    """Member weights: two unused members (as folds and the full data would be), then random halves."""
    rng = np.random.default_rng(seed)
    rows = [np.ones(n_rows), np.ones(n_rows)]
    rows += [(rng.permutation(n_rows) < n_rows // 2).astype(float) for _ in range(n_halves)]
    return torch.tensor(np.array(rows), dtype=torch.float32)


def _direct(z, y, train, i, cols, ridge):
    """Held-out squared error of a ridge fit of y_i on the columns ``cols`` of [1, z, z_j z_k], directly."""
    n = z.shape[1]
    feats = [np.ones(len(z))] + [z[:, j] for j in range(n)] + [z[:, j] * z[:, k] for j in range(n) for k in range(j, n)]
    phi = np.stack(feats, 1)[:, cols]
    a = phi[train]
    coef = np.linalg.solve(a.T @ a + ridge * train.sum() * np.eye(len(cols)), a.T @ y[train, i])
    return float(((phi[~train] @ coef - y[~train, i]) ** 2).sum())


def _expected(z, y, weights, selected, ridge):
    """Necessity frequencies from direct ridge refits (the oracle): per half, target and selected source, is
    the held-out error without the source's features larger than with all of them?"""
    n, halves = z.shape[1], len(selected)
    zf, yf = z.astype(np.float32).astype(float), y.astype(np.float32).astype(float)
    pairs = [(j, k) for j in range(n) for k in range(j, n)]
    contains = [set()] + [{j} for j in range(n)] + [{j, k} for j, k in pairs]
    expected = np.zeros((halves, n, n))
    for s in range(halves):
        train = weights[2 + s].numpy() > 0
        for i in range(n):
            cand = set(np.flatnonzero(selected[s, i])) | {i}
            keep = [f for f, c in enumerate(contains) if c <= cand]
            full = _direct(zf, yf, train, i, keep, ridge)
            for j in cand - {i}:
                expected[s, i, j] = _direct(zf, yf, train, i, [f for f in keep if j not in contains[f]], ridge) > full
    expected = expected.mean(0)
    np.fill_diagonal(expected, 1.0)
    return expected


def test_necessity_equals_direct_ridge_refits_on_each_half():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((80, 3))
    y = np.stack([z[:, 1] + 0.5 * z[:, 1] * z[:, 2], -z[:, 0], 0.3 * rng.standard_normal(80)], 1)
    y = y + 0.1 * rng.standard_normal(y.shape)
    weights = _halves(80, 3)
    selected = np.ones((3, 3, 3), dtype=bool)
    selected[1, 0, 2] = False  # half 1 did not select 0 <- 2
    got = necessity_frequency(torch.tensor(z, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), weights,
                              slice(2, None), selected, poly=True, ridge=0.05)
    expected = _expected(z, y, weights, selected, 0.05)
    np.testing.assert_array_equal(got, expected)
    assert got[0, 2] <= 2 / 3  # never counted where the half did not select it


def test_a_parent_is_needed_and_a_correlated_stand_in_or_an_irrelevant_variable_is_not():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((200, 4))
    z[:, 2] = z[:, 1] + 0.3 * rng.standard_normal(200)  # a stand-in for the parent z_1 (correlation 0.96)
    y = np.zeros((200, 4))
    y[:, 0] = 2.0 * z[:, 1] + 0.2 * rng.standard_normal(200)
    weights = _halves(200, 10)
    selected = np.ones((10, 4, 4), dtype=bool)  # every half selected every edge
    p = necessity_frequency(torch.tensor(z, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), weights,
                            slice(2, None), selected, poly=False)
    assert p[0, 1] == 1.0  # the parent: without it the stand-in predicts worse on every other half
    assert p[0, 2] <= 0.3  # the stand-in: not needed beside the parent (measured 0.2)
    assert p[0, 3] < 0.9  # an irrelevant variable: a coin flip per half (measured 0.5), never confident
    assert np.all(np.diag(p) == 1.0)


def test_necessity_equals_direct_refits_with_random_selections_on_five_variables():
    """The refits without each source come from one inverse per half and target (the deletion formula):
    against direct ridge regressions, with random selections, so that each left-out set has several features."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((120, 5))
    y = np.stack([z[:, 1] * z[:, 2] - z[:, 0], z[:, 3] ** 2, -z[:, 4] + z[:, 0] * z[:, 1], z[:, 2],
                  z[:, 4] * z[:, 3]], 1)
    y = y + 0.3 * rng.standard_normal(y.shape)
    weights = _halves(120, 4, seed=3)
    selected = rng.random((4, 5, 5)) < 0.6
    got = necessity_frequency(torch.tensor(z, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), weights,
                              slice(2, None), selected, poly=True, ridge=0.01)
    expected = _expected(z, y, weights, selected, 0.01)
    np.testing.assert_array_equal(got, expected)
    assert 0 < got[~np.eye(5, dtype=bool)].mean() < 1  # some edges needed, some not: the comparison is not vacuous
