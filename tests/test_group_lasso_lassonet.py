import pytest
import torch

from sparsedyn import analysis
from sparsedyn.methods import GroupLasso, LassoNet
from sparsedyn.methods.hier_prox import hier_prox
from sparsedyn.nn import MLP, GroupedMLP, NeuralODE, SkipField


def test_grouped_mlp_equals_separate_networks():
    g = GroupedMLP(4, 3, (5, 6))
    x = torch.randn(7, 4)
    y = g(x)
    for i in range(3):
        h = x
        for k, layer in enumerate(g.layers):
            h = h @ layer.weight[i].T + layer.bias[i]
            if k < len(g.layers) - 1:
                h = torch.tanh(h)
        assert torch.allclose(y[:, i], h[:, 0], atol=1e-6)


def test_group_lasso_prepare_swaps_field_and_penalty_is_group_norm_sum():
    model = GroupLasso(lam=0.5, proximal=False).prepare(NeuralODE(MLP(3, 3, (8,))))
    assert isinstance(model.field, GroupedMLP)
    w = model.field.layers[0].weight  # (3, 8, 3)
    hand = sum(w[i, :, k].norm() for i in range(3) for k in range(3))
    assert GroupLasso(lam=0.5, proximal=False).penalty(model).item() == pytest.approx(0.5 * hand.item(), rel=1e-6)
    assert not GroupLasso(lam=0.5).penalty(model).requires_grad  # proximal: value only


def test_group_lasso_prox_zeroes_groups_and_structure_follows_per_output_rows():
    method = GroupLasso(lam=1.0)
    model = method.prepare(NeuralODE(MLP(3, 3, (4,))))
    with torch.no_grad():
        model.field.layers[0].weight[0, :, 2] = 1e-3  # a weak group: removed by the prox
        model.field.layers[0].weight[1, :, 0] = 1e-3
    method.after_step(model, lr=0.01)
    w = model.field.layers[0].weight
    assert torch.all(w[0, :, 2] == 0) and torch.all(w[1, :, 0] == 0)
    D = analysis.dependency_matrix(model)
    expected = torch.ones(3, 3)
    expected[0, 2] = expected[1, 0] = 0
    assert torch.equal(D, expected)


def test_lassonet_inner_prepare_and_constraint_after_step():
    method = LassoNet(lam=0.5, M=2.0, mode="inner")
    model = method.prepare(NeuralODE(MLP(3, 3, (6,))))
    assert isinstance(model.field, SkipField)
    S0, W0 = model.field.skip.weight.detach().clone(), model.field.net.layers[0].weight.detach().clone()
    expected_S, expected_W = hier_prox(S0, W0, 0.5 * 1.0, 2.0)  # lam * lr, M
    method.after_step(model, lr=1.0)
    S, W1 = model.field.skip.weight, model.field.net.layers[0].weight
    assert torch.allclose(S, expected_S) and torch.allclose(W1, expected_W)
    assert not torch.allclose(W1, W0)  # the step did something (W0 violated the hierarchy)
    for k in range(3):
        assert W1[:, k].abs().max() <= 2.0 * S[:, k].norm() + 1e-6


def test_lassonet_outer_skip_adds_S_x0_outside_the_solver():
    model = LassoNet(lam=0.1, mode="outer").prepare(NeuralODE(MLP(2, 2, (4,)), solver="rk4", step_size=0.1))
    x0 = torch.randn(3, 2)
    t = torch.linspace(0, 1, 5)
    out = model(x0, t)
    assert torch.allclose(out[:, 0], x0 + model.outer_skip(x0), atol=1e-6)  # X_hat(t0) = S x0 + x0


def test_lassonet_dropped_feature_leaves_dependency_matrix():
    method = LassoNet(lam=1.0, M=1.0, mode="inner")
    model = method.prepare(NeuralODE(MLP(3, 3, (5,))))
    with torch.no_grad():
        model.field.skip.weight[:, 1] = 1e-3
        model.field.net.layers[0].weight[:, 1] = 1e-3  # a weak feature in skip and net alike
    method.after_step(model, lr=0.01)  # threshold 0.01 removes only feature 1
    D = analysis.dependency_matrix(model)
    assert torch.all(D[:, 1] == 0) and torch.all(D[:, [0, 2]] == 1)


def test_lassonet_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        LassoNet(mode="middle")
    with pytest.raises(ValueError, match="M"):
        LassoNet(M=-1)
    with pytest.raises(RuntimeError, match="prepare"):
        LassoNet().after_step(NeuralODE(MLP(2, 2)), 0.1)


def test_lassonet_names_a_model_without_a_layer_chain():
    from sparsedyn.nn import PathIntegrationRNN
    with pytest.raises(TypeError, match="LassoNet needs a layer-chain field.*PathIntegrationRNN"):
        LassoNet(mode="inner").prepare(PathIntegrationRNN(4, [4]))


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1.0])
def test_a_strength_set_after_construction_is_checked_like_one_given_to_it(value):
    # paths and the relative-strength calibration set strengths through strength_value
    method = GroupLasso(lam=0.1)
    with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
        method.strength_value = value
    assert method.lam == 0.1
