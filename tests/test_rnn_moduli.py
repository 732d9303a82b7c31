import pytest
import torch

from sparsedyn.geometry import penalty_matrix
from sparsedyn.methods import MagnitudePruning, Moduli, build_method
from sparsedyn.nn import PathIntegrationRNN, RecurrentLayer, RNNLanguageModel, RNNStack, mask_of, raw_parameter


@pytest.mark.parametrize("cell,ref", [("elman", torch.nn.RNN), ("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)])
def test_layers_match_pytorch_reference_cells(cell, ref):
    ours = RecurrentLayer(3, 5, cell)
    theirs = ref(3, 5)
    with torch.no_grad():
        ours.bias.normal_()  # ours keeps one bias, on the input side: PyTorch's b_ih, with b_hh = 0
        theirs.weight_ih_l0.copy_(ours.weight_ih)
        theirs.weight_hh_l0.copy_(ours.weight_hh)
        theirs.bias_ih_l0.copy_(ours.bias)
        theirs.bias_hh_l0.zero_()
    x = torch.randn(7, 2, 3)
    assert torch.allclose(ours(x)[0], theirs(x)[0], atol=1e-6)


def test_relu_elman_without_bias():
    layer = RecurrentLayer(2, 4, "elman", "relu", bias=False)
    out, h = layer(torch.randn(5, 3, 2))
    assert layer.bias is None and torch.all(out >= 0) and torch.equal(out[-1], h)


@pytest.mark.parametrize("cell", ["elman", "gru", "lstm"])
def test_masks_survive_training_of_every_rnn_type(cell):
    """Masked recurrent entries stay exactly zero through Adam training (fused nn.RNN breaks here)."""
    torch.manual_seed(0)
    model = RNNStack(2, [16, 16], cell)
    head = torch.nn.Linear(16, 1)
    pruning = MagnitudePruning(sparsity=0.9, include="recurrent")
    pruning.prepare(model)
    pruning.on_epoch_end(model, 1)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-2)
    x, y = torch.randn(10, 8, 2), torch.randn(8, 1)
    before = [layer.weight_hh.detach().clone() for layer in model.layers]
    for _ in range(30):
        out, _ = model(x)
        loss = (head(out[-1]) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for layer, w0 in zip(model.layers, before):
        keep = mask_of(layer, "weight_hh").mask.bool()
        assert torch.all(layer.weight_hh[~keep] == 0)  # pruned entries stay exactly zero
        assert (layer.weight_hh[keep] != w0[keep]).float().mean() > 0.9  # kept ones trained
    masks = torch.cat([mask_of(layer, "weight_hh").mask.flatten() for layer in model.layers])
    assert (masks == 0).float().mean().item() == pytest.approx(0.9, abs=1e-3)  # global across layers
    for layer in model.layers:
        mask = mask_of(layer, "weight_hh").mask
        assert torch.all(layer.weight_hh[mask == 0] == 0)
        assert torch.all(raw_parameter(layer, "weight_hh").grad[mask == 0] == 0)
        assert mask_of(layer, "weight_ih") is None  # include="recurrent" leaves input weights alone


def test_moduli_penalty_equals_hand_computation():
    model = RNNStack(2, [6])
    method = Moduli("torus", "dog", lam=0.3, ell=2.0, reduction="mean", seed=5)
    method.prepare(model)
    R = penalty_matrix("torus", 6, "dog", seed=5)
    W = model.layers[0].weight_hh.detach()
    assert method.penalty(model).item() == pytest.approx(0.3 * (R * W.abs() ** 2).mean().item(), rel=1e-5)
    total = Moduli("torus", lam=1.0, reduction="sum", seed=5).penalty(model)
    assert total.item() == pytest.approx((R * W.abs()).sum().item(), rel=1e-5)


def test_moduli_tiles_R_per_gate_and_gives_each_layer_its_own_embedding():
    model = RNNStack(2, [5, 5], "lstm")
    Moduli("klein", seed=0).prepare(model)
    R0, R1 = Moduli.matrix(model.layers[0]), Moduli.matrix(model.layers[1])
    assert R0.shape == (20, 5) and torch.equal(R0[:5], R0[15:])
    assert not torch.equal(R0, R1)


def test_moduli_none_is_plain_l1_on_w_hh_and_trainable_embedding_retracts():
    model = RNNStack(2, [4])
    Moduli("none").prepare(model)
    W = model.layers[0].weight_hh.detach()
    assert Moduli("none", lam=1.0).penalty(model).item() == pytest.approx(W.abs().mean().item(), rel=1e-6)
    model2 = RNNStack(2, [4])
    m = Moduli("torus", trainable=True)
    m.prepare(model2)
    emb = model2.layers[0].moduli_embedding
    m.penalty(model2).backward()
    assert emb.positions.grad is not None
    with torch.no_grad():
        emb.positions.add_(50.0)
    m.after_step(model2, 0.1)
    assert torch.all(emb.positions < 10.0)


@pytest.mark.parametrize("kwargs,field", [
    ({"manifold": "hyperbolic"}, "manifold"), ({"inhibitor": "mexican"}, "inhibitor"), ({"lam": -1}, "lam"),
    ({"ell": 0}, "ell"), ({"permuted": "False"}, "permuted"), ({"reduction": "max"}, "reduction"),
    ({"lam": float("inf")}, "lam"), ({"ell": float("inf")}, "ell"), ({"ell": float("nan")}, "ell"),
])
def test_moduli_bad_arguments_are_named(kwargs, field):
    with pytest.raises(ValueError, match=field):
        build_method({"name": "moduli", **kwargs})


def test_bad_rnn_arguments():
    with pytest.raises(ValueError, match="cell"):
        RecurrentLayer(2, 3, "transformer")
    with pytest.raises(ValueError, match="shape"):
        RecurrentLayer(2, 3)(torch.randn(4, 3))


@pytest.mark.parametrize("build,match", [
    (lambda: PathIntegrationRNN(4, []), "at least one layer"),
    (lambda: PathIntegrationRNN(0, [4]), "n_place_cells"),
    (lambda: PathIntegrationRNN(4, [4, 0]), "hidden size"),
    (lambda: RNNLanguageModel(0, 4, [4]), "vocab_size"),
    (lambda: RNNLanguageModel(10, 0, [4]), "embedding_size"),
    (lambda: RNNLanguageModel(10, 4, [2.5]), "hidden size"),
])
def test_sequence_models_refuse_empty_or_non_integer_sizes(build, match):
    # torch builds zero-sized layers without a word (and hidden=[] failed with an IndexError)
    with pytest.raises(ValueError, match=match):
        build()


def test_path_integration_names_a_start_code_of_the_wrong_width():
    model = PathIntegrationRNN(5, [4])
    with pytest.raises(ValueError, match=r"start_code must have shape \(batch, 5\)"):
        model(torch.randn(3, 2, 2), torch.randn(2, 4))
    assert model(torch.randn(3, 2, 2), torch.randn(2, 5)).shape == (3, 2, 5)


def test_the_size_checks_leave_the_seeded_initialisation_unchanged():
    # the checks run before any module is built, so a seed gives the same weights as a bare build would
    torch.manual_seed(0)
    encoder = torch.nn.Linear(4, 6, bias=False)
    torch.manual_seed(0)
    assert torch.equal(PathIntegrationRNN(4, [6]).encoder.weight, encoder.weight)
