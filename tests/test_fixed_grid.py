"""The lean fixed-grid loop against torchdiffeq's odeint (same states, same gradients, same training run), and
the hand-fused rk4 solve against the loop (and ``gradcheck``)."""

import pytest
import torch
from torchdiffeq import odeint

from sparsedyn.nn import fused_rk4
from sparsedyn.nn.fields import MLP, GroupedMLP
from sparsedyn.nn.fixed_grid import _plan, solve_fixed_grid
from sparsedyn.nn.fused_rk4 import _FusedRK4, fusable, fused_rk4_solve
from sparsedyn.nn.ode import NeuralODE, SecondOrderODE
from sparsedyn.nn.stacked import stacked_forecast


def _field(seed=0):
    torch.manual_seed(seed)
    return MLP(4, 4, (16, 16))


@pytest.mark.parametrize("method,step_size", [("rk4", None), ("rk4", 0.07), ("rk4", 0.1), ("midpoint", None),
                                              ("midpoint", 0.045), ("euler", None), ("euler", 0.1)])
def test_states_and_gradients_equal_torchdiffeq(method, step_size):
    """Observation grid or a finer step (0.07 and 0.045 put observations between grid points: linear
    interpolation); forward states bit for bit, gradients to float rounding."""
    field = _field()
    y0 = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    t = torch.sort(torch.rand(12, generator=torch.Generator().manual_seed(2)) * 3).values
    target = torch.randn(12, 8, 4, generator=torch.Generator().manual_seed(3))
    options = {"step_size": step_size} if step_size else None
    ref = odeint(lambda s, y: field(y), y0, t, method=method, options=options)
    ours = solve_fixed_grid(lambda s, y: field(y), y0, t, method, step_size)
    assert torch.equal(ours, ref)
    g_ref = torch.autograd.grad(((ref - target) ** 2).mean(), list(field.parameters()))
    g_ours = torch.autograd.grad(((ours - target) ** 2).mean(), list(field.parameters()))
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def _train(model_kind, loop, steps=5):
    torch.manual_seed(0)
    if model_kind == "node":
        model = NeuralODE(MLP(3, 3, (8,)), solver="rk4", step_size=0.1, fixed_grid_loop=loop)
    else:
        model = SecondOrderODE(MLP(6, 3, (8,)), MLP(3, 3, (4,)), solver="midpoint", step_size=0.1, fixed_grid_loop=loop)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x0, t = torch.randn(5, 3), torch.linspace(0, 1, 11)
    target = torch.randn(5, 11, 3)
    losses = []
    for _ in range(steps):
        loss = ((model(x0, t) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("kind", ["node", "sonode"])
def test_a_short_training_run_gives_the_same_numbers_either_way(kind):
    losses_loop, params_loop = _train(kind, True)
    losses_ref, params_ref = _train(kind, False)
    torch.testing.assert_close(torch.tensor(losses_loop), torch.tensor(losses_ref), rtol=1e-5, atol=1e-7)
    for a, b in zip(params_loop, params_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture(params=["concatenated", "accumulated"])
def weight_grads(request, monkeypatch):
    """Both ways the fused backward collects weight gradients (one product over concatenated pairs, or
    accumulated evaluation by evaluation), forced for every layer whatever its size."""
    for name in ("ACCUMULATE_FROM", "ACCUMULATE_FROM_MEMBER"):
        monkeypatch.setattr(fused_rk4, name, 0 if request.param == "accumulated" else 10**12)
    return request.param


def test_the_stacked_forecast_is_fused_and_matches_odeint_with_gradients(weight_grads):
    """Members' rk4 solves fused in one batched node: states and every member's gradients as
    torchdiffeq's odeint gives them member by member."""
    models = [NeuralODE(_field(s), solver="rk4", step_size=0.05) for s in range(3)]
    x0, t = torch.randn(3, 6, 4), torch.linspace(0, 1, 9)
    target = torch.randn(3, 6, 9, 4)
    fused = stacked_forecast(models, x0, t)
    params = [p for m in models for p in m.parameters()]
    g_fused = torch.autograd.grad(((fused - target) ** 2).sum(), params)
    for m in models:
        m.fixed_grid_loop = False
    ref = torch.stack([m(x0[i], t) for i, m in enumerate(models)])
    g_ref = torch.autograd.grad(((ref - target) ** 2).sum(), params)
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_fused, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_bad_method_is_named():
    with pytest.raises(ValueError, match="fixed-grid method must be one of"):
        solve_fixed_grid(lambda s, y: y, torch.zeros(1, 1), torch.linspace(0, 1, 3), "dopri5")


# -- the hand-fused rk4 solve of tanh MLP fields ---------------------------------------------------

@pytest.mark.parametrize("step_size,intervene", [(None, False), (0.07, False), (0.1, True)])
def test_the_fused_rk4_solve_equals_the_loop_with_its_gradients(step_size, intervene, weight_grads):
    field = _field()
    keep = torch.tensor([1.0, 0.0, 1.0, 1.0]) if intervene else None
    y0 = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    t = torch.sort(torch.rand(12, generator=torch.Generator().manual_seed(2)) * 3).values
    target = torch.randn(12, 8, 4, generator=torch.Generator().manual_seed(3))
    y0_ref, y0_fused = y0.clone().requires_grad_(), y0.clone().requires_grad_()
    ref = solve_fixed_grid(lambda s, y: field(y) if keep is None else field(y) * keep, y0_ref, t, "rk4", step_size)
    fused = fused_rk4_solve(field, y0_fused, t, step_size, keep, native=False)  # the C kernel: test_native_rk4
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-6)
    params = list(field.parameters())
    g_ref = torch.autograd.grad(((ref - target) ** 2).mean(), [y0_ref, *params])
    g_fused = torch.autograd.grad(((fused - target) ** 2).mean(), [y0_fused, *params])
    for a, b in zip(g_fused, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_the_fused_backward_passes_gradcheck_in_float64(weight_grads):
    torch.manual_seed(0)
    field = MLP(2, 2, (3, 3)).double()
    t = torch.tensor([0.0, 0.13, 0.4, 0.5], dtype=torch.float64)
    y0 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor([1.0, 0.0], dtype=torch.float64)

    plan = _plan(tuple(t.tolist()), 0.1)  # a grid step of 0.1: observations between grid points

    def solve(y, *params):
        return _FusedRK4.apply(plan, keep, y, *params)

    params = [p.detach().clone().requires_grad_() for p in field.parameters()]
    assert torch.autograd.gradcheck(solve, (y0, *params), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("n,hidden,batch", [(3, (4,), 4), (3, (16, 16), 4), (200, (16,), 16)])
def test_a_stacked_solve_gives_each_member_the_same_bits_whatever_it_is_stacked_with(n, hidden, batch):
    """A lockstep job that resumes with one member where the uninterrupted one had two must reproduce its
    numbers bit for bit: every operation of the fused solve computes an element the same way whatever the
    tensor's size (torch.sigmoid would not: its last, partly filled vector is computed by another formula).
    (Widths like 5 and 7 are left out: there MKL's batched product gives the weight gradients other last bits
    for one member than for three.) The third case's layers accumulate their weight gradients: the choice is
    made per member (fused_rk4.ACCUMULATE_FROM_MEMBER), not for the whole stack."""
    torch.manual_seed(0)
    fields = [MLP(n, n, hidden) for _ in range(3)]
    y0, t = torch.randn(3, batch, n), torch.linspace(0, 1, 6)
    per_field = len(list(fields[0].parameters()))
    together = fused_rk4.fused_rk4_stacked(fields, y0, t, 0.1, native=False)  # the C kernel: test_native_rk4
    grads = torch.autograd.grad(together.square().sum(), [p for f in fields for p in f.parameters()])
    for m, field in enumerate(fields):
        alone = fused_rk4.fused_rk4_stacked([field], y0[m:m + 1], t, 0.1, native=False)
        assert torch.equal(alone[:, 0], together[:, m])
        own = torch.autograd.grad(alone.square().sum(), list(field.parameters()))
        assert all(torch.equal(a, b) for a, b in zip(own, grads[per_field * m: per_field * (m + 1)]))


def test_only_plain_tanh_mlps_are_fused():
    assert fusable(MLP(3, 3, (4,)))
    assert not fusable(MLP(3, 3, (4,), activation_name="relu"))
    assert not fusable(MLP(3, 3, (4,), bias=False))
    assert not fusable(GroupedMLP(3, 3, (4,)))


def test_large_layers_accumulate_their_weight_gradients_and_small_ones_concatenate():
    """The size rule: a gene-scale first and last layer accumulate, the 64-wide middle one does not."""
    field = MLP(529, 529, (64, 64))
    params = tuple(p for layer in field.layers for p in (layer.weight, layer.bias))
    seen, sums = fused_rk4._collectors(params, torch.Size([32]))
    assert [pairs is None for pairs in seen] == [True, False, True]
    assert sums[0].shape == (64, 529) and sums[1].shape == (32, 64) and sums[2].numel() == 0


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("field_kind", ["mlp", "grouped"])
@pytest.mark.parametrize("step_size", [None, 0.1])
def test_float64_times_that_are_not_float32_numbers_keep_every_observation(native, field_kind, step_size):
    """The grid is built in the times' dtype, as torchdiffeq builds it: built in float32, a float64 grid ended
    before its last observation (1.3 is not a float32 number), which every fixed-grid solve then dropped (the
    loop failed, the fused solves returned one time point too few)."""
    torch.manual_seed(0)
    field = MLP(5, 5, (8,)) if field_kind == "mlp" else GroupedMLP(5, 5, (4, 3))
    model = NeuralODE(field, solver="rk4", step_size=step_size).double()
    model.native_solve = native
    t = torch.linspace(0, 1.3, 9, dtype=torch.float64)
    x0 = torch.randn(3, 5, dtype=torch.float64)
    ours = model(x0, t)
    model.fixed_grid_loop = False  # torchdiffeq's odeint
    reference = model(x0, t)
    assert ours.shape == reference.shape == (3, 9, 5)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
