import math

import pytest
import torch

from sparsedyn.geometry import (
    DOG_MAX,
    INHIBITORS,
    L_SIDE,
    RADIUS,
    ManifoldEmbedding,
    parse_manifold,
    penalty_matrix,
)

NAMES = ["circle", "torus", "torus:6", "klein", "sphere", "s3", "euclidean:3"]


@pytest.mark.parametrize("name", NAMES)
def test_distance_is_a_metric_on_samples(name):
    m = parse_manifold(name)
    D = m.distances(m.sample(25, seed=1))
    assert torch.allclose(D, D.T) and torch.all(D.diagonal() == 0) and torch.all(D >= 0)
    off = ~torch.eye(25, dtype=torch.bool)
    assert torch.all(D[off] > 0)
    # triangle inequality for every triple
    assert torch.all(D[:, None, :] <= D[:, :, None] + D[None, :, :] + 1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_retract_keeps_points_and_distances(name):
    m = parse_manifold(name)
    p = m.sample(10, seed=2)
    assert torch.allclose(m.retract(p), p)
    # the same points written off the manifold: whole turns, lattice images, a glide image, a scaled vector
    if m.kind == "circle":
        moved = p + 3 * 2 * math.pi
    elif m.kind == "torus":
        moved = p + 3 * L_SIDE
    elif m.kind == "klein":
        moved = torch.stack([p[:, 0] + L_SIDE, L_SIDE - p[:, 1]], dim=1)  # (x + L, L - y) is (x, y)
    elif m.kind in ("sphere", "s3"):
        moved = 2.5 * p
    else:
        moved = p  # euclidean: every point is on the manifold
    assert m.kind == "euclidean" or not torch.allclose(moved, p)
    assert torch.allclose(m.retract(moved), p, atol=1e-9)
    assert torch.allclose(m.distances(m.retract(moved)), m.distances(p), atol=1e-9)


def test_torus_wraps_around():
    m = parse_manifold("torus")
    p = torch.tensor([[0.5, 0.5], [9.5, 9.5], [5.5, 0.5]], dtype=torch.float64)
    D = m.distances(p)
    assert D[0, 1].item() == pytest.approx(math.sqrt(2))  # across both seams
    assert D[0, 2].item() == pytest.approx(5.0)  # the farthest a coordinate can be
    assert parse_manifold("torus:6").distances(torch.tensor([[0.1] * 6, [9.9] * 6], dtype=torch.float64))[0, 1] \
        .item() == pytest.approx(math.sqrt(6 * 0.04))


def test_torus_rows_are_each_neurons_position():
    """The reference code's defect: coordinates mis-reshaped so row k was not neuron k."""
    m = parse_manifold("torus")
    p = m.sample(6, seed=0)
    D = m.distances(p)
    for j in range(6):
        for k in range(6):
            d = (p[j] - p[k]).abs()
            assert D[j, k].item() == pytest.approx(torch.minimum(d, L_SIDE - d).norm().item())


def test_klein_glide_reflection():
    m = parse_manifold("klein")
    p = torch.tensor([[0.5, 1.0], [9.5, 9.0], [9.5, 1.0]], dtype=torch.float64)
    D = m.distances(p)
    assert D[0, 1].item() == pytest.approx(1.0)  # (9.5, 9) ~ (9.5 - 10, 10 - 9) = (-0.5, 1)
    assert D[0, 2].item() == pytest.approx(math.sqrt(1 + 2**2))  # not a torus: no plain x-wrap at same y
    torus = parse_manifold("torus").distances(p)
    assert torus[0, 2].item() == pytest.approx(1.0) and torus[0, 1].item() == pytest.approx(math.sqrt(5))


def test_klein_retract_applies_the_glide():
    m = parse_manifold("klein")
    p = torch.tensor([[10.5, 2.0]], dtype=torch.float64)  # one step past x = L
    assert torch.allclose(m.retract(p), torch.tensor([[0.5, 8.0]], dtype=torch.float64))


def test_sphere_antipodes_and_quarter_turn():
    m = parse_manifold("sphere")
    p = torch.tensor([[0, 0, 1.0], [0, 0, -1.0], [1.0, 0, 0]], dtype=torch.float64)
    D = m.distances(p)
    assert D[0, 1].item() == pytest.approx(RADIUS * math.pi, rel=1e-6)
    assert D[0, 2].item() == pytest.approx(RADIUS * math.pi / 2)
    p.requires_grad_(True)
    m.distances(p).sum().backward()
    assert torch.isfinite(p.grad).all()  # clipped arccos: no NaN at antipodes or the diagonal


def test_circle_arc_length():
    m = parse_manifold("circle")
    D = m.distances(torch.tensor([[0.1], [2 * math.pi - 0.1], [math.pi + 0.1]], dtype=torch.float64))
    assert D[0, 1].item() == pytest.approx(RADIUS * 0.2) and D[0, 2].item() == pytest.approx(RADIUS * math.pi)


def test_inhibitor_formulas():
    d = torch.tensor([0.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    g = 100 * (torch.exp(-d**2 / 5) - torch.exp(-4 * d**2))
    assert torch.allclose(INHIBITORS["dog"](d), DOG_MAX - g)
    assert pytest.approx(max(100 * (math.exp(-x**2 / 5) - math.exp(-4 * x**2))
                                        for x in [i / 10000 for i in range(30000)]), rel=1e-6) == DOG_MAX
    assert torch.allclose(INHIBITORS["diffusion"](d), d**2)
    assert torch.allclose(INHIBITORS["ripple"](d), 50 + 50 * torch.cos(2 * d))
    assert torch.allclose(INHIBITORS["gauss"](d), 100 * torch.exp(-d**2 / 3))
    # DoG: self-connections cost the most, neighbours at ~0.9 cost nothing, far pairs cost again
    r = INHIBITORS["dog"](torch.tensor([0.0, 0.888, 5.0]))
    assert r[0] == pytest.approx(DOG_MAX) and r[1] < 1e-3 and r[2] > 60


def test_permuted_keeps_the_multiset_and_scale_matched_is_the_mean():
    R = penalty_matrix("torus", 30, "dog", seed=3)
    P = penalty_matrix("torus", 30, "dog", seed=3, permuted=True)
    S = penalty_matrix("torus", 30, "dog", seed=3, scale_matched=True)
    assert torch.equal(R.flatten().sort().values, P.flatten().sort().values) and not torch.equal(R, P)
    assert torch.allclose(S, torch.full_like(S, R.mean().item()))
    assert torch.equal(penalty_matrix("none", 4), torch.ones(4, 4))


def test_trainable_embedding_is_differentiable_and_retracts():
    e = ManifoldEmbedding("torus", 8, "dog", seed=0)
    assert torch.allclose(e.matrix(), penalty_matrix("torus", 8, "dog", seed=0), atol=1e-4)
    (e.matrix() * torch.rand(8, 8)).sum().backward()
    assert torch.isfinite(e.positions.grad).all() and e.positions.grad.abs().sum() > 0
    with torch.no_grad():
        e.positions.add_(25.0)
    e.retract()
    assert torch.all((e.positions >= 0) & (e.positions < L_SIDE))


@pytest.mark.parametrize("bad", ["hyperbolic", "torus:x", "sphere:3", "torus:0"])
def test_unknown_or_malformed_manifold_is_named(bad):
    with pytest.raises(ValueError, match="manifold"):
        parse_manifold(bad)


def test_unknown_inhibitor_is_named():
    with pytest.raises(ValueError, match="inhibitor"):
        penalty_matrix("torus", 4, "mexican-hat")
