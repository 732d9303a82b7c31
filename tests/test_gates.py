import math

import pytest
import torch

from sparsedyn.nn import MLP, NeuralODE, add_gate, gate_of
from sparsedyn.nn.gates import HardConcrete


def test_closed_form_prob_nonzero_matches_sampling():
    g = HardConcrete((4, 5))
    with torch.no_grad():
        g.log_alpha.copy_(torch.linspace(-3, 3, 20).view(4, 5))
    n = 20000
    nonzero = torch.zeros(4, 5)
    for _ in range(n // 1000):
        z = g.sample(torch.rand(1000, 4, 5).clamp(1e-6, 1 - 1e-6))  # the implementation's own sampler
        nonzero += (z > 0).float().sum(0)
    empirical = nonzero / n
    assert torch.allclose(empirical, g.prob_nonzero().detach(), atol=0.015)


def test_sample_is_the_stretched_clamped_concrete_of_louizos_eq_10():
    # by hand for u = 0.25, log_alpha = 0.4: s = sigmoid((log(1/3) + 0.4) / (2/3)), z = clamp(1.2 s - 0.1, 0, 1)
    g = HardConcrete((1, 1))
    with torch.no_grad():
        g.log_alpha.fill_(0.4)
    s = 1 / (1 + math.exp(-(math.log(0.25 / 0.75) + 0.4) * 1.5))
    assert g.sample(torch.tensor([[0.25]])).item() == pytest.approx(min(max(1.2 * s - 0.1, 0), 1), rel=1e-6)
    assert g.sample(torch.tensor([[1e-6]])).item() == 0.0 and g.sample(torch.tensor([[1 - 1e-6]])).item() == 1.0


def test_closed_form_constants():
    g = HardConcrete((1, 1))
    with torch.no_grad():
        g.log_alpha.fill_(0.7)
    expected = 1 / (1 + math.exp(-(0.7 - (2 / 3) * math.log(0.1 / 1.1))))
    assert g.prob_nonzero().item() == pytest.approx(expected, rel=1e-6)


def test_eval_gate_is_deterministic_and_matches_formula():
    g = HardConcrete((3, 3)).eval()
    z1, z2 = g.gate(), g.gate()
    assert torch.equal(z1, z2)
    expected = (torch.sigmoid(g.log_alpha) * 1.2 - 0.1).clamp(0, 1)
    assert torch.allclose(z1, expected)


def test_training_gate_reuses_noise_until_resampled():
    g = HardConcrete((3, 3))
    g.resample()
    assert torch.equal(g.gate(), g.gate())
    before = g.gate().clone()
    g.resample()
    assert not torch.equal(before, g.gate())


def test_init_drop_sets_log_alpha_mean():
    g = HardConcrete((200, 200), init_drop=0.2)
    assert g.log_alpha.mean().item() == pytest.approx(math.log(0.8 / 0.2), abs=1e-3)
    assert g.log_alpha.std().item() == pytest.approx(0.01, rel=0.05)


def test_per_input_layout_broadcasts_over_rows():
    lin = torch.nn.Linear(4, 3)
    gate = add_gate(lin, layout="input")
    assert gate.log_alpha.shape == (1, 4)
    lin.eval()
    z = gate.gate()
    assert torch.allclose(lin.weight, lin.parametrizations.weight.original * z)


def test_bad_init_drop_and_layout_rejected():
    with pytest.raises(ValueError, match="init_drop"):
        HardConcrete((2, 2), init_drop=1.0)
    with pytest.raises(ValueError, match="layout"):
        HardConcrete((2, 2), layout="row")


def test_one_gate_sample_per_model_forward():
    """Every vector-field evaluation inside one solve sees the same gated weights (the fix)."""
    field = MLP(3, 3, (8,))
    for layer in field.layers:
        add_gate(layer)
    model = NeuralODE(field, solver="dopri5").train()
    seen = []
    field.layers[0].register_forward_pre_hook(lambda m, a: seen.append(m.weight.detach().clone()))
    model(torch.randn(2, 3), torch.linspace(0, 1, 5))
    assert len(seen) > 6  # many evaluations per solve
    assert all(torch.equal(seen[0], w) for w in seen)
    first = seen[0]
    seen.clear()
    model(torch.randn(2, 3), torch.linspace(0, 1, 5))
    assert not torch.equal(first, seen[0])  # a new sample for the next forward


def test_a_gated_plain_mlp_draws_a_new_sample_at_every_training_forward():
    """The bug: outside an ODE solve the noise was drawn once and reused for the whole run."""
    field = MLP(3, 3, (8,))
    for layer in field.layers:
        add_gate(layer)
    seen = []
    field.layers[0].register_forward_hook(lambda m, a, o: seen.append(m.weight.detach().clone()))
    x = torch.randn(4, 3)
    field.train()
    field(x)
    field(x)
    assert not torch.equal(seen[0], seen[1])
    field.eval()
    field(x)
    field(x)
    assert torch.equal(seen[2], seen[3])  # eval: the deterministic gate


def test_the_adjoint_backward_solve_reuses_the_forward_sample():
    field = MLP(2, 2, (4,))
    add_gate(field.layers[0])
    model = NeuralODE(field, solver="rk4", step_size=0.25, adjoint=True).train()
    seen = []
    field.layers[0].register_forward_pre_hook(lambda m, a: seen.append(m.weight.detach().clone()))
    model(torch.randn(3, 2), torch.linspace(0, 1, 3)).pow(2).sum().backward()
    n_forward = 4 * 4  # rk4: 4 evaluations a step, 4 steps
    assert len(seen) > n_forward  # the backward solve evaluated the field too
    assert all(torch.equal(seen[0], w) for w in seen)


def test_gate_gradients_reach_log_alpha_through_the_solver():
    field = MLP(2, 2, (4,))
    gate = add_gate(field.layers[0])
    model = NeuralODE(field, solver="rk4", step_size=0.1).train()
    model(torch.randn(3, 2), torch.linspace(0, 1, 4)).pow(2).sum().backward()
    assert gate.log_alpha.grad is not None and gate.log_alpha.grad.abs().sum() > 0
    assert gate_of(field.layers[0]) is gate
