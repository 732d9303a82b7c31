import itertools

import pytest
import torch

from sparsedyn.methods import CNODE, PathReg, expected_paths, path_weight_matrix
from sparsedyn.nn import MLP, gate_of


def _enumerate_paths(mats):
    """Sum over every input -> hidden... -> output path of the product of entries (brute force)."""
    n_in, n_out = mats[0].shape[1], mats[-1].shape[0]
    hidden = [m.shape[0] for m in mats[:-1]]
    out = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        for j in range(n_in):
            for hs in itertools.product(*[range(h) for h in hidden]):
                nodes = (j, *hs, i)
                prod = 1.0
                for layer, (a, b) in enumerate(zip(nodes, nodes[1:])):
                    prod *= float(mats[layer][b, a])
                out[i, j] += prod
    return out


def _gated_mlp(layout="weight"):
    torch.manual_seed(3)
    model = MLP(3, 2, (4, 3))
    method = PathReg(lambda_paths=1.0, layout=layout)
    method.prepare(model)
    with torch.no_grad():
        for layer in model.layers:
            gate_of(layer).log_alpha.normal_(0, 2)
    return model, method


def test_pathreg_equals_explicit_path_enumeration():
    model, method = _gated_mlp()
    probs = [gate_of(layer).prob_nonzero().detach() for layer in model.layers]
    brute = _enumerate_paths(probs)
    assert torch.allclose(expected_paths(model).double(), brute, rtol=1e-5)
    assert method.penalty(model).item() == pytest.approx(brute.sum().item(), rel=1e-5)


def test_pathreg_mean_reduction_and_weight_term():
    model, _ = _gated_mlp()
    a_z = expected_paths(model).detach()
    mean = PathReg(lambda_paths=2.0, reduction="mean").penalty(model)
    assert mean.item() == pytest.approx(2.0 * a_z.mean().item(), rel=1e-6)
    model.eval()  # deterministic gates: the weight term uses |W z|
    combo = PathReg(lambda_paths=0.0, lambda_weights=0.5).penalty(model)
    gated = [layer.weight.detach().abs() for layer in model.layers]
    assert combo.item() == pytest.approx(0.5 * _enumerate_paths(gated).sum().item(), rel=1e-5)


def test_per_input_gates_make_expected_paths_rank_one_per_weight_gates_do_not():
    """The reference's per-input gates cannot learn per-output parents (rank-1 A_z): the fix."""
    model_in, _ = _gated_mlp("input")
    model_w, _ = _gated_mlp("weight")
    sv_in = torch.linalg.svdvals(expected_paths(model_in).detach())
    sv_w = torch.linalg.svdvals(expected_paths(model_w).detach())
    assert sv_in[1] / sv_in[0] < 1e-5
    assert sv_w[1] / sv_w[0] > 1e-3


def test_pathreg_gradient_flows_to_log_alpha_only():
    model, method = _gated_mlp()
    method.penalty(model).backward()
    for layer in model.layers:
        assert gate_of(layer).log_alpha.grad.abs().sum() > 0
        assert layer.parametrizations.weight.original.grad is None


def test_cnode_equals_hand_product_on_two_layer_net():
    model = MLP(2, 2, (2,), bias=False)
    with torch.no_grad():
        model.layers[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0]]))
        model.layers[1].weight.copy_(torch.tensor([[3.0, 1.0], [-1.0, 4.0]]))
    # |W2| |W1| = [[3*1+1*0.5, 3*2+1*0], [1*1+4*0.5, 1*2+4*0]] = [[3.5, 6], [3, 2]]
    assert CNODE(lam=1.0).penalty(model).item() == pytest.approx(14.5)
    # signed (linear network): W2 W1 = [[3.5, -6], [1, 2]] -> l1 = 12.5
    assert CNODE(lam=1.0, linear=True).penalty(model).item() == pytest.approx(12.5)
    assert CNODE(lam=2.0, reduction="mean").penalty(model).item() == pytest.approx(2 * 14.5 / 4)


def test_cnode_matches_enumeration_on_deeper_net():
    model = MLP(3, 2, (4, 3))
    mats = [layer.weight.detach().abs() for layer in model.layers]
    assert torch.allclose(path_weight_matrix(model).detach().double(), _enumerate_paths(mats), rtol=1e-5)


@pytest.mark.parametrize("cls,kwargs,field", [
    (PathReg, {"lambda_paths": -1.0}, "lambda_paths"),
    (PathReg, {"lambda_weights": -0.1}, "lambda_weights"),
    (PathReg, {"reduction": "max"}, "reduction"),
    (CNODE, {"lam": float("nan")}, "lam"),
])
def test_bad_hyper_parameters_name_the_field(cls, kwargs, field):
    with pytest.raises(ValueError, match=field):
        cls(**kwargs)


@pytest.mark.parametrize("kind", ["mlp", "grouped", "skip"])
def test_the_penalties_entry_sum_equals_the_path_matrix_and_its_gradients(kind):
    """PathReg and C-NODE sum the path matrix's entries by matrix-vector products (``chain_entry_sum``) instead
    of forming the (n_out, n_in) product: the same value and gradients to float rounding, on every field."""
    from sparsedyn.methods.cnode import abs_weight
    from sparsedyn.nn import GroupedMLP, SkipField

    torch.manual_seed(0)
    field = {"mlp": lambda: MLP(5, 4, (6, 3)), "grouped": lambda: GroupedMLP(5, 4, (3, 2)),
             "skip": lambda: SkipField(MLP(5, 5, (6,)))}[kind]()
    params = [p for p in field.parameters()]
    matrix = field.chain_product(abs_weight)
    summed = field.chain_entry_sum(abs_weight)
    assert summed.item() == pytest.approx(matrix.sum().item(), rel=1e-6)
    g_matrix = torch.autograd.grad(matrix.sum(), params, allow_unused=True)
    g_summed = torch.autograd.grad(summed, params, allow_unused=True)
    for a, b in zip(g_matrix, g_summed):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    # and the penalties built on it, against the matrix definitions
    from sparsedyn.nn.ode import NeuralODE

    model = NeuralODE(field)
    for reduction in ("sum", "mean"):
        expected = matrix.sum() if reduction == "sum" else matrix.mean()
        got = CNODE(lam=1.0, reduction=reduction).penalty(model)
        assert got.item() == pytest.approx(expected.item(), rel=1e-6)
