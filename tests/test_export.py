import pytest
import torch

from sparsedyn.export import SparseLinear, export
from sparsedyn.methods import L0, MagnitudePruning
from sparsedyn.nn import MLP, NeuralODE, RNNStack


@pytest.mark.parametrize("fmt", ["csr", "dense", "auto"])
@pytest.mark.parametrize("cell", ["elman", "gru", "lstm"])
def test_exported_rnn_equals_the_masked_dense_model(cell, fmt):
    torch.manual_seed(0)
    model = RNNStack(3, [64, 32], cell, "relu" if cell == "elman" else "tanh")
    pruning = MagnitudePruning(sparsity=0.9)
    pruning.prepare(model)
    pruning.on_epoch_end(model, 1)
    x = torch.randn(12, 4, 3)
    model.eval()
    with torch.no_grad():
        ref, _ = model(x)
    out, _ = export(model, fmt, batch=4)(x)
    assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("cell,nonlinearity", [("elman", "relu"), ("elman", "tanh"), ("gru", "tanh"),
                                               ("lstm", "tanh")])
def test_numpy_cell_equations_match_the_torch_cells_on_random_weights(cell, nonlinearity):
    """The export's numpy recurrence (scipy CSR path) is a second copy of the cell equations: it must
    agree with the torch layer on dense random weights and biases, for every cell type."""
    from sparsedyn.export import SparseRecurrentLayer

    torch.manual_seed(1)
    layer = RNNStack(4, [24], cell, nonlinearity).layers[0]
    with torch.no_grad():
        layer.bias.normal_()
        layer.weight_hh.mul_(3.0)  # large enough to saturate: the nonlinearities must be the same ones
    x = torch.randn(9, 3, 4)
    with torch.no_grad():
        ref, _ = layer(x)
    sparse = SparseRecurrentLayer(layer, fmt="csr", batch=3)
    assert sparse.hh.format == "csr"  # the numpy path, not the torch steps
    out, _ = sparse(x)
    assert torch.allclose(out, ref, atol=1e-5)


def test_exported_node_field_with_gates_equals_deterministic_model():
    model = NeuralODE(MLP(5, 5, (32, 32)))
    L0().prepare(model)
    with torch.no_grad():
        for g in model.modules():
            if hasattr(g, "log_alpha"):
                g.log_alpha.normal_(0, 3)  # many gates closed
    x = torch.randn(7, 5)
    model.eval()
    with torch.no_grad():
        ref = model.field(x)
    assert torch.allclose(export(model, "csr")(x), ref, atol=1e-5)


def test_sparse_linear_format_and_errors():
    W = torch.zeros(8, 8)
    W[0, 1] = 2.0
    lin = SparseLinear(W, fmt="csr")
    assert lin.format == "csr" and lin.nnz == 1 and lin.density == 1 / 64
    assert torch.allclose(lin(torch.eye(8)), W.T)
    with pytest.raises(ValueError, match="format"):
        SparseLinear(W, fmt="coo")
    with pytest.raises(TypeError, match="cannot export"):
        export(torch.nn.Conv1d(1, 1, 1))
