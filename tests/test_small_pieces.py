"""Hand checks of the small pieces: L1, L0 penalty, masked MSE, adjoint gradients."""

import math

import pytest
import torch

from sparsedyn.methods import L0, L1, Compose, PathReg
from sparsedyn.nn import MLP, NeuralODE, gates
from sparsedyn.tasks import Trajectories, masked_mse
from sparsedyn.tasks.trajectories import stacked_masked_mse


def test_l1_is_sum_of_absolute_weights_without_biases():
    model = MLP(2, 1, (2,))
    with torch.no_grad():
        model.layers[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0]]))
        model.layers[1].weight.copy_(torch.tensor([[-3.0, 1.0]]))
        for layer in model.layers:
            layer.bias.fill_(100.0)
    assert L1(lam=0.1).penalty(model).item() == pytest.approx(0.1 * 7.5)


def test_l0_penalty_is_expected_number_of_open_gates():
    model = NeuralODE(MLP(3, 3, (4,)))
    method = L0(lam=2.0)
    method.prepare(model)
    with torch.no_grad():
        for g in gates(model):
            g.log_alpha.fill_(0.7)
    # by hand: P(z != 0) = sigmoid(log_alpha - beta log(-gamma / zeta)), beta 2/3, gamma -0.1, zeta 1.1
    p = 1 / (1 + math.exp(-(0.7 - (2 / 3) * math.log(0.1 / 1.1))))
    assert method.penalty(model).item() == pytest.approx(2.0 * 24 * p, rel=1e-6)
    assert sum(g.log_alpha.numel() for g in gates(model)) == 3 * 4 + 4 * 3  # one gate per weight


def test_composed_gated_methods_share_one_set_of_gates():
    model = NeuralODE(MLP(3, 3, (4,)))
    Compose([L0(lam=1.0), PathReg(lambda_paths=1.0)]).prepare(model)
    assert len(list(gates(model))) == 2
    with pytest.raises(ValueError, match="gate"):
        PathReg(layout="input").prepare(model)


def test_masked_mse_ignores_unobserved_points_and_scores_from():
    t = torch.linspace(0, 1, 3)
    y = torch.zeros(1, 3, 2)
    pred = torch.tensor([[[1.0, 1.0], [5.0, 5.0], [2.0, 2.0]]])
    mask = torch.tensor([[True, False, True]])
    data = Trajectories(t, y, mask)
    assert masked_mse(pred, data).item() == pytest.approx((1 + 1 + 4 + 4) / 4)
    data.score_from = 0.6
    assert masked_mse(pred, data).item() == pytest.approx(4.0)


@pytest.mark.parametrize("score_from", [None, 0.4])
def test_the_stacked_masked_mse_is_each_members_own(score_from):
    """Members with different observation masks: each one's MSE as masked_mse computes it alone."""
    gen = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 1, 5)
    batches = []
    for _ in range(3):
        mask = torch.rand(4, 5, generator=gen) > 0.3
        mask[:, 0] = True
        batches.append(Trajectories(t, torch.randn(4, 5, 2, generator=gen), mask, score_from=score_from))
    pred = torch.randn(3, 4, 5, 2, generator=gen)
    stacked = stacked_masked_mse(pred, batches)
    alone = [masked_mse(p, b) for p, b in zip(pred, batches)]
    torch.testing.assert_close(torch.stack(stacked), torch.stack(alone), rtol=1e-6, atol=0)
    for m in range(3):  # the same bits stacked with others or alone (what a resumed lockstep job relies on)
        assert torch.equal(stacked_masked_mse(pred[m:m + 1], batches[m:m + 1])[0], stacked[m])
    with pytest.raises(ValueError, match="prediction shape"):
        stacked_masked_mse(pred[:, :, :4], batches)


def test_a_subset_is_the_checked_trajectories_of_its_rows():
    t = torch.linspace(0, 1, 4)
    y = torch.arange(24.0).reshape(3, 4, 2)
    mask = torch.tensor([[True, True, False, True], [True, False, True, True], [True, True, True, True]])
    data = Trajectories(t, y, mask, intervention={1: 0.0}, score_from=0.5, meta={"names": ["a", "b", "c"]})
    idx = torch.tensor([2, 0])
    sub = data.subset(idx)
    built = Trajectories(t, y[idx], mask[idx], {1: 0.0}, 0.5, {"names": ["a", "b", "c"]})
    for name in ("t", "y", "mask"):
        assert torch.equal(getattr(sub, name), getattr(built, name))
    assert (sub.intervention, sub.score_from, sub.meta) == (built.intervention, built.score_from, built.meta)
    assert len(sub) == 2 and torch.equal(sub.x0, y[idx, 0])


def test_nan_in_observed_data_is_rejected():
    y = torch.zeros(1, 3, 2)
    y[0, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        Trajectories(torch.linspace(0, 1, 3), y, torch.ones(1, 3, dtype=torch.bool))
    Trajectories(torch.linspace(0, 1, 3), y, torch.tensor([[True, False, True]]))  # unobserved NaN: fine


def test_a_trajectory_without_its_initial_state_is_rejected():
    """The first point is the initial state handed to the model: unobserved, the forecast would start from
    whatever fills the gap (zeros), silently."""
    mask = torch.tensor([[True, True, True], [False, True, True]])
    with pytest.raises(ValueError, match="trajectory 1 of 2 lacks it"):
        Trajectories(torch.linspace(0, 1, 3), torch.zeros(2, 3, 2), mask)


def test_adjoint_gives_the_same_gradients_as_backprop_through_the_solver():
    torch.manual_seed(0)
    field = MLP(2, 2, (6,)).double()
    x0 = torch.randn(3, 2, dtype=torch.float64)
    t = torch.linspace(0, 1, 4, dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        model = NeuralODE(field, solver="dopri5", rtol=1e-10, atol=1e-10, adjoint=adjoint)
        field.zero_grad()
        model(x0, t).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in field.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)
