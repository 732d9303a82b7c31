"""Property tests (hypothesis): the proximal operators, masks and manifold distances on inputs nobody
picked by hand."""

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsedyn.geometry import L_SIDE, parse_manifold
from sparsedyn.methods.group_lasso import group_soft_threshold
from sparsedyn.methods.hier_prox import hier_prox
from sparsedyn.nn.masks import add_mask, mask_of

FINITE = st.floats(-5, 5, allow_nan=False, width=64)


def _matrix(rows, cols):
    return arrays(np.float64, (rows, cols), elements=FINITE)


@settings(max_examples=60, deadline=None)
@given(w=_matrix(4, 3), t=st.floats(0, 6))
def test_group_soft_threshold_shrinks_each_group_norm_by_t_keeping_its_direction(w, t):
    w = torch.tensor(w)
    out = group_soft_threshold(w, t, dim=0)
    for k in range(w.shape[1]):
        norm = w[:, k].norm().item()
        assert math.isclose(out[:, k].norm().item(), max(0.0, norm - t), abs_tol=1e-9)
        if norm > t:
            assert torch.allclose(out[:, k] * norm, w[:, k] * out[:, k].norm(), atol=1e-9)  # same direction


@settings(max_examples=60, deadline=None)
@given(S=_matrix(2, 4), W=_matrix(3, 4), lam=st.floats(0, 3), M=st.floats(0.05, 5))
def test_hier_prox_is_feasible_and_acts_on_each_feature_separately(S, W, lam, M):
    S, W = torch.tensor(S), torch.tensor(W)
    new_S, new_W = hier_prox(S, W, lam, M)
    for k in range(S.shape[1]):
        assert new_W[:, k].abs().max() <= M * new_S[:, k].norm() + 1e-9  # the hierarchy holds
        one_S, one_W = hier_prox(S[:, k:k + 1], W[:, k:k + 1], lam, M)
        assert torch.allclose(one_S[:, 0], new_S[:, k]) and torch.allclose(one_W[:, 0], new_W[:, k])


@settings(max_examples=30, deadline=None)
@given(keep=arrays(np.bool_, (5, 4)), grads=arrays(np.float64, (3, 5, 4), elements=FINITE))
def test_masked_entries_stay_zero_under_any_gradient_steps(keep, grads):
    layer = torch.nn.Linear(4, 5).double()
    add_mask(layer)
    with torch.no_grad():
        mask_of(layer).mask.copy_(torch.tensor(keep, dtype=torch.float64))
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    for g in grads:
        opt.zero_grad()
        (layer.weight * torch.tensor(g)).sum().backward()
        opt.step()
    assert torch.all(layer.weight[~torch.tensor(keep)] == 0)


MANIFOLDS = st.sampled_from(["circle", "torus", "klein", "sphere", "euclidean:2"])


@settings(max_examples=40, deadline=None)
@given(name=MANIFOLDS, raw=arrays(np.float64, (6, 3), elements=st.floats(-20, 20, width=64)))
def test_manifold_distances_are_a_metric_and_ignore_the_chart(name, raw):
    m = parse_manifold(name)
    dim = 3 if m.kind == "sphere" else (1 if m.kind == "circle" else 2)
    p = torch.tensor(raw[:, :dim])
    if m.kind == "sphere" and bool((p.norm(dim=1) < 1e-3).any()):
        return  # no direction to normalise
    p = m.retract(p)
    D = m.distances(p)
    assert torch.allclose(D, D.T) and torch.all(D >= 0) and torch.all(D.diagonal() == 0)
    assert torch.all(D[:, None, :] <= D[:, :, None] + D[None, :, :] + 1e-7)
    if m.kind in ("torus", "klein"):  # whole periods in y are the same points in either chart
        shifted = p + torch.tensor([0.0, 2 * L_SIDE])
        assert torch.allclose(m.distances(m.retract(shifted)), D, atol=1e-7)


def test_hier_prox_keeps_the_hierarchy_for_a_skip_column_of_subnormal_scale():
    """The case hypothesis found: ||[4.7e-161, 0]|| computed by squaring lost 3e-4 of its value."""
    S = torch.tensor([[4.73480563e-161, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    W = torch.ones(3, 4, dtype=torch.float64)
    new_S, new_W = hier_prox(S, W, 0.0, 1.0)
    assert new_W[:, 0].abs().max() <= new_S[:, 0].norm() + 1e-12
    assert torch.allclose(new_S[:, 0], torch.tensor([0.75, 0.0], dtype=torch.float64))
