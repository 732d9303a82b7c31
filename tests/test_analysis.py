import numpy as np
import pytest
import torch

from sparsedyn import analysis
from sparsedyn.methods import L0
from sparsedyn.nn import MLP, NeuralODE, add_mask, gate_of


def _known_structure_model(truth: torch.Tensor, hidden: int = 3) -> MLP:
    """An MLP whose hidden block k only reads input k and only feeds outputs that use input k."""
    n = truth.shape[0]
    model = MLP(n, n, (n * hidden,))
    with torch.no_grad():
        W1 = torch.zeros(n * hidden, n)
        W2 = torch.zeros(n, n * hidden)
        for j in range(n):
            W1[j * hidden:(j + 1) * hidden, j] = torch.rand(hidden) + 0.5
            for i in range(n):
                if truth[i, j]:
                    W2[i, j * hidden:(j + 1) * hidden] = torch.rand(hidden) + 0.5
    for layer, W in zip(model.layers, (W1, W2)):
        m = add_mask(layer)
        m.mask.copy_((W != 0).float())
        with torch.no_grad():
            layer.parametrizations.weight.original.copy_(W)
    return model


def test_known_sparse_structure_recovers_auroc_one_and_exact_graph():
    truth = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=torch.bool)
    model = NeuralODE(_known_structure_model(truth))
    D = analysis.dependency_matrix(model)
    assert torch.equal(D.bool(), truth)
    rec = analysis.recovery_metrics(analysis.path_scores(model), truth)
    assert rec["auroc"] == 1.0 and rec["auprc"] == 1.0 and rec["auroc_offdiag"] == 1.0
    assert rec["f1"] == 1.0 and rec["shd"] == 0
    assert analysis.feature_sparsity(D) == pytest.approx(1 - truth.float().mean().item())
    x = torch.randn(50, 4)
    assert torch.equal(analysis.dependency_matrix(model, "jacobian", x=x, threshold=1e-8).bool(), truth)


def test_recovery_metrics_match_scikit_learn():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    truth = rng.random((6, 6)) < 0.4
    score = np.round(rng.random((6, 6)) + truth * 0.3, 1)  # ties included
    rec = analysis.recovery_metrics(score, truth)
    assert rec["auroc"] == pytest.approx(roc_auc_score(truth.ravel(), score.ravel()))
    assert rec["auprc"] == pytest.approx(average_precision_score(truth.ravel(), score.ravel()))
    off = ~np.eye(6, dtype=bool)
    assert rec["auroc_offdiag"] == pytest.approx(roc_auc_score(truth[off], score[off]))


def test_precision_recall_shd_hand_case():
    truth = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=bool)
    pred = np.array([[0, 0, 0], [1, 0, 1], [1, 0, 0]], dtype=float)  # reversed 0->1, correct 1->2, extra
    rec = analysis.recovery_metrics(pred, truth)
    assert rec["precision"] == pytest.approx(1 / 3) and rec["recall"] == pytest.approx(1 / 2)
    assert rec["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert rec["shd"] == 2  # one reversal + one extra edge


def test_weight_sparsity_reads_effective_weights_with_deterministic_gates():
    model = NeuralODE(MLP(3, 3, (4,)))
    L0().prepare(model)
    with torch.no_grad():
        gate_of(model.field.layers[0]).log_alpha[:2] = -10.0  # closed: 2 rows x 3 = 6 zeros
    ws = analysis.weight_sparsity(model)
    assert ws["field.layers.0.weight"] == pytest.approx(6 / 12)
    assert ws["global"] == pytest.approx(6 / 24)
    assert model.training  # restored


def test_jacobian_of_linear_field_is_abs_matrix():
    model = MLP(3, 3, (3,), activation_name="tanh")
    with torch.no_grad():
        model.layers[0].bias.zero_()  # tanh'(0) = 1: the Jacobian at 0 is W2 W1
    x = torch.zeros(1, 3)
    J = analysis.jacobian_scores(model, x)
    W1, W2 = model.layers[0].weight, model.layers[1].weight
    assert torch.allclose(J, (W2 @ W1).abs().detach(), atol=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        analysis.jacobian_scores(model, torch.tensor([[float("nan"), 0, 0]]))


def test_jacobian_recovery_sees_through_cancelling_paths_that_fool_path_weights():
    """f = W2 tanh(W1 x) with W2 W1 = I: every path weight is 1 (AUROC 0.5, ties), but at x = 0 the
    field's Jacobian is I, the true graph (AUROC 1)."""
    model = MLP(2, 2, (2,), activation_name="tanh")
    with torch.no_grad():
        model.layers[0].weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
        model.layers[1].weight.copy_(torch.tensor([[0.5, 0.5], [0.5, -0.5]]))
        for layer in model.layers:
            layer.bias.zero_()
    truth = np.eye(2)
    assert analysis.recovery_metrics(analysis.path_scores(model), truth)["auroc"] == pytest.approx(0.5)
    assert analysis.jacobian_recovery(model, torch.zeros(10, 2), truth)["auroc"] == pytest.approx(1.0)


def test_jacobian_recovery_thins_the_points_evenly():
    model = MLP(3, 3, (4,), activation_name="tanh")
    x = torch.randn(5000, 3, generator=torch.Generator().manual_seed(0))
    truth = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 1]])
    thinned = x[torch.linspace(0, 4999, 100).round().long()]
    want = analysis.recovery_metrics(analysis.jacobian_scores(model, thinned), truth)
    got = analysis.jacobian_recovery(model, x, truth, max_points=100)
    keys = ("auroc", "auprc", "auroc_offdiag", "auprc_offdiag")  # with and without self-loops
    assert got == {k: pytest.approx(want[k]) for k in keys}
    assert analysis.thin(x, 100).shape == (100, 3) and analysis.thin(x[:7], 100).shape == (7, 3)
    with pytest.raises(ValueError, match="max_points"):
        analysis.jacobian_recovery(model, x, truth, max_points=0)


def test_recovery_metrics_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="shape"):
        analysis.recovery_metrics(np.zeros((2, 3)), np.zeros((3, 3)))
