"""The fused rk4 solve in C (nn.native, nn.fused_native) against the PyTorch fused solve and the plain loop:
states and gradients to float rounding, gradcheck in float64, the kernel's tanh against float64's, bits that do
not depend on the stack or the batch, the switches, and a failed build falling back with a warning."""

import ctypes
import json

import pytest
import torch

from conftest import TINY_RUN, assert_same_bits_alone_and_stacked
from sparsedyn.config import parse_config
from sparsedyn.nn import fused_rk4, native
from sparsedyn.nn.fields import MLP, GroupedMLP, SkipField
from sparsedyn.nn.fixed_grid import _plan, solve_fixed_grid
from sparsedyn.nn.fused_native import _NativeRK4, applies
from sparsedyn.nn.ode import NeuralODE, SecondOrderODE
from sparsedyn.nn.stacked import stacked_forecast
from sparsedyn.runner import run_experiment


@pytest.fixture(autouse=True)
def _kernel():
    if native.kernel() is None:
        pytest.skip(f"the native kernel is not available here: {native.status()}")


def _params(field):
    return tuple(p for layer in field.layers for p in (layer.weight, layer.bias))


@pytest.mark.parametrize("times,step_size", [
    ((0.0, 0.4, 1.1, 1.5, 2.9), 0.1),     # every output between grid points
    ((0.0, 0.2, 0.4, 0.6), 0.2),           # every output on the grid
    ((0.0, 0.1, 0.13, 0.2, 0.5), None),    # the observation grid itself
    ((0.0, 0.0501, 0.1, 0.3), 0.05),       # outputs at a step's start, end and between
])
@pytest.mark.parametrize("intervene", [False, True])
def test_the_native_solve_equals_the_pytorch_fused_solve_and_the_loop(times, step_size, intervene):
    torch.manual_seed(0)
    field = MLP(4, 4, (16, 8))
    keep = torch.tensor([1.0, 0.0, 1.0, 1.0]) if intervene else None
    t = torch.tensor(times)
    y0 = torch.randn(6, 4)
    target = torch.randn(len(times), 6, 4)
    outs, grads = [], []
    for path in ("native", "torch", "loop"):
        y = y0.clone().requires_grad_()
        if path == "loop":
            out = solve_fixed_grid(lambda s, u: field(u) if keep is None else field(u) * keep, y, t, "rk4", step_size)
        else:
            out = fused_rk4.fused_rk4_solve(field, y, t, step_size, keep, native=path == "native")
        outs.append(out)
        grads.append(torch.autograd.grad(((out - target) ** 2).sum(), [y, *field.parameters()]))
    for out, g in zip(outs[1:], grads[1:]):
        torch.testing.assert_close(outs[0], out, rtol=1e-5, atol=1e-6)
        for a, b in zip(grads[0], g):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_native_backward_passes_gradcheck_in_float64():
    torch.manual_seed(0)
    field = MLP(2, 2, (3, 3)).double()
    t = torch.tensor([0.0, 0.13, 0.4, 0.5], dtype=torch.float64)
    y0 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor([1.0, 0.0], dtype=torch.float64)
    plan = _plan(tuple(t.tolist()), 0.1)
    params = [p.detach().clone().requires_grad_() for p in field.parameters()]
    assert applies(y0, tuple(params))

    def solve(y, *ps):
        return _NativeRK4.apply(plan, keep, (1, (1, 1, 1), False, False), y, *ps)

    assert torch.autograd.gradcheck(solve, (y0, *params), eps=1e-6, atol=1e-6)


def test_a_stacked_native_solve_equals_the_members_pytorch_solves():
    torch.manual_seed(0)
    fields = [MLP(5, 5, (16, 16)) for _ in range(4)]
    y0, t = torch.randn(4, 8, 5), torch.linspace(0, 2, 12)
    params = [p for f in fields for p in f.parameters()]
    together = fused_rk4.fused_rk4_stacked(fields, y0, t, 0.1)
    g_together = torch.autograd.grad(together.square().sum(), params)
    each = torch.stack([fused_rk4.fused_rk4_solve(f, y0[m], t, 0.1, native=False) for m, f in enumerate(fields)], 1)
    g_each = torch.autograd.grad(each.square().sum(), params)
    torch.testing.assert_close(together, each, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_together, g_each):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n,hidden", [(3, (4,)), (3, (5, 7)), (200, (16,))])
def test_a_member_and_a_row_get_the_same_bits_whatever_they_are_computed_with(n, hidden):
    """The kernel computes members one after the other and every element by one fma chain, so a member's states
    and gradients do not depend on the member count (odd widths included, which MKL's batched product does not
    give), nor a trajectory's states on the batch it is in."""
    torch.manual_seed(0)
    fields = [MLP(n, n, hidden) for _ in range(3)]
    y0, t = torch.randn(3, 5, n), torch.linspace(0, 1, 6)
    per_field = len(list(fields[0].parameters()))
    together = fused_rk4.fused_rk4_stacked(fields, y0, t, 0.1)
    grads = torch.autograd.grad(together.square().sum(), [p for f in fields for p in f.parameters()])
    for m, field in enumerate(fields):
        alone = fused_rk4.fused_rk4_stacked([field], y0[m:m + 1], t, 0.1)
        assert torch.equal(alone[:, 0], together[:, m])
        own = torch.autograd.grad(alone.square().sum(), list(field.parameters()))
        assert all(torch.equal(a, b) for a, b in zip(own, grads[per_field * m: per_field * (m + 1)]))
    row = fused_rk4.fused_rk4_solve(fields[0], y0[0, 2:3], t, 0.1)
    assert torch.equal(row[:, 0], fused_rk4.fused_rk4_solve(fields[0], y0[0], t, 0.1)[:, 2])


def test_the_kernels_float_tanh_is_within_a_few_ulp_and_saturates_where_torch_does():
    lib = native.kernel()
    x = torch.cat([torch.linspace(-12, 12, 400_001), torch.tensor([0.0, 1e-30, -3e-4, 9.01084041595459, 1e30,
                                                                   float("inf"), -float("inf")])])
    out = torch.empty_like(x)
    lib.tanh_f32(x.numel(), x.data_ptr(), out.data_ptr())
    exact = torch.tanh(x.double())
    err = (out.double() - exact).abs()
    assert err.max() <= 3e-7  # a few float ulp at 1 (6e-8 each)
    small = x.abs() < 1
    assert (err[small] / exact[small].abs().clamp_min(1e-30)).max() <= 6e-7  # relative, near 0
    neg, mirrored = -x, torch.empty_like(x)
    lib.tanh_f32(x.numel(), neg.data_ptr(), mirrored.data_ptr())
    assert torch.equal(mirrored, -out)  # odd, bit for bit
    assert torch.equal(torch.sign(out), torch.sign(x))
    saturated = x.abs() >= 9.01084041595459
    assert torch.equal(out[saturated], torch.sign(x[saturated]))  # exactly +-1, as torch.tanh: no gradient leaks
    assert torch.equal(torch.tanh(x[saturated]), out[saturated])
    assert out.abs().max() <= 1.0
    nan = torch.tensor([float("nan")])
    lib.tanh_f32(1, nan.data_ptr(), nan.data_ptr())
    assert torch.isnan(nan).all()


def test_the_switches_turn_the_kernel_off(monkeypatch):
    torch.manual_seed(0)
    model = NeuralODE(MLP(3, 3, (8,)), solver="rk4", step_size=0.1)
    x0, t = torch.randn(4, 3), torch.linspace(0, 1, 5)
    params = _params(model.field)
    plan = _plan(tuple(t.tolist()), 0.1)
    with torch.no_grad():
        pytorch = fused_rk4._FusedRK4.apply(plan, None, x0, *params)
        kernel = _NativeRK4.apply(plan, None, (1, (1, 1), False, False), x0, *params)
        assert not torch.equal(pytorch, kernel)  # the two paths differ in the last bits: the check can tell them
        assert torch.equal(model(x0, t).transpose(0, 1), kernel)
        model.native_solve = False
        assert torch.equal(model(x0, t).transpose(0, 1), pytorch)
        model.native_solve = True
        monkeypatch.setenv("SPARSEDYN_NATIVE", "0")
        assert native.kernel() is None and native.status() == "disabled"
        assert torch.equal(model(x0, t).transpose(0, 1), pytorch)


def test_a_failed_build_warns_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("SPARSEDYN_CACHE_DIR", str(tmp_path / "cache"))
    native._load.cache_clear()
    try:
        with pytest.warns(native.NativeBuildWarning, match="could not be built"):
            assert native.kernel() is None
        assert native.status().startswith("unavailable: ")
        field, y0 = MLP(3, 3, (4,)), torch.randn(2, 3)
        assert not applies(y0, _params(field))
        out = fused_rk4.fused_rk4_solve(field, y0, torch.linspace(0, 1, 3), 0.1)  # the PyTorch path
        assert torch.isfinite(out).all()
    finally:
        native._load.cache_clear()


def test_the_build_is_cached_by_its_source_and_written_once(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSEDYN_CACHE_DIR", str(tmp_path))
    first = native._build()
    stamp = first.stat().st_mtime_ns
    assert native._build() == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary files left behind


def test_a_run_records_whether_its_solves_could_use_the_kernel(tmp_path):
    for native_solve, expected in ((True, "native"), (False, "off")):
        raw = json.loads(json.dumps(TINY_RUN))
        raw["trainer"]["epochs"], raw["model"]["native_solve"] = 1, native_solve
        run_experiment(parse_config(raw), tmp_path / expected)
        assert json.loads((tmp_path / expected / "run.json").read_text())["rk4_kernel"] == expected


def test_with_several_threads_large_fields_keep_the_threaded_pytorch_solve(monkeypatch):
    small, large = MLP(3, 3, (8,)), MLP(200, 200, (256, 256))
    y_small, y_large = torch.randn(4, 3), torch.randn(64, 200)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert applies(y_small, _params(small)) and applies(y_large, _params(large))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert applies(y_small, _params(small)) and not applies(y_large, _params(large))


def test_a_run_gives_the_same_bits_alone_as_stacked_with_another(tmp_path):
    """With the kernel a single solve and a stacked member's solve run the same loops, so a PathReg run (gate
    samples, penalty, Adam) trained alone and the same run trained in lockstep with another seed end with equal
    metrics and weights, bit for bit (the PyTorch path's single and batched products differ in the last bits)."""
    assert_same_bits_alone_and_stacked(tmp_path)


def test_a_model_pickled_before_the_switch_existed_still_solves():
    import pickle

    model = NeuralODE(MLP(3, 3, (4,)), solver="rk4", step_size=0.1)
    old = pickle.loads(pickle.dumps(model))
    del old.__dict__["native_solve"]  # what a pickle of an older version holds
    revived = pickle.loads(pickle.dumps(old))
    x0, t = torch.randn(2, 3), torch.linspace(0, 1, 4)
    assert revived.native_solve and torch.equal(revived(x0, t), model(x0, t))


def test_an_empty_batch_is_left_to_the_pytorch_solve():
    field = MLP(3, 3, (4,))
    empty = torch.zeros(0, 3)
    assert not applies(empty, _params(field))
    assert fused_rk4.fused_rk4_solve(field, empty, torch.linspace(0, 1, 3), 0.1).shape == (3, 0, 3)


def _assert_native_solves_as_the_loop(field, intervene: bool) -> None:
    """A 5-variable field's native solve against the plain rk4 loop: states and every gradient, observations
    between grid points, with or without an intervention's mask."""
    keep = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0]) if intervene else None
    y0, t = torch.randn(6, 5), torch.tensor([0.0, 0.3, 0.45, 1.0])
    outs, grads = [], []
    for path in ("native", "loop"):
        y = y0.clone().requires_grad_()
        if path == "native":
            out = fused_rk4.fused_rk4_solve(field, y, t, 0.1, keep)
        else:
            out = solve_fixed_grid(lambda s, u: field(u) if keep is None else field(u) * keep, y, t, "rk4", 0.1)
        outs.append(out)
        grads.append(torch.autograd.grad(out.square().sum(), [y, *field.parameters()]))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# -- GroupLasso's per-output networks (GroupedMLP): a dense first layer, block-diagonal later ones ---------------

@pytest.mark.parametrize("hidden", [(1,), (4,), (8, 6)])
@pytest.mark.parametrize("intervene", [False, True])
def test_a_grouped_field_solves_as_the_loop_does_with_its_gradients(hidden, intervene):
    torch.manual_seed(0)
    field = GroupedMLP(5, 5, hidden)
    _assert_native_solves_as_the_loop(field, intervene)


def test_a_grouped_field_passes_gradcheck_and_stacks_bit_for_bit():
    torch.manual_seed(0)
    field = GroupedMLP(3, 3, (2, 2)).double()
    t = torch.tensor([0.0, 0.13, 0.4], dtype=torch.float64)
    y0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    plan = _plan(tuple(t.tolist()), 0.1)
    params = [p.detach().clone().requires_grad_() for p in field.parameters()]

    def solve(y, *ps):
        return _NativeRK4.apply(plan, None, (1, (1, 3, 3), False, False), y, *ps)

    assert torch.autograd.gradcheck(solve, (y0, *params), eps=1e-6, atol=1e-6)
    fields = [GroupedMLP(4, 4, (5,)) for _ in range(3)]
    ys, tt = torch.randn(3, 2, 4), torch.linspace(0, 1, 5)
    together = fused_rk4.fused_rk4_stacked(fields, ys, tt, 0.1)
    for m, f in enumerate(fields):
        assert torch.equal(fused_rk4.fused_rk4_stacked([f], ys[m:m + 1], tt, 0.1)[:, 0], together[:, m])
        assert torch.equal(fused_rk4.fused_rk4_solve(f, ys[m], tt, 0.1), together[:, m])


def test_without_the_kernel_a_grouped_field_takes_the_loop():
    torch.manual_seed(0)
    model = NeuralODE(GroupedMLP(3, 3, (4,)), solver="rk4", step_size=0.1)
    x0, t = torch.randn(2, 3), torch.linspace(0, 1, 4)
    assert fused_rk4.can_fuse([model.field], x0, native=True)
    assert not fused_rk4.can_fuse([model.field], x0, native=False)
    with pytest.raises(TypeError, match="no fused rk4 solve for this GroupedMLP"):
        fused_rk4.fused_rk4_solve(model.field, x0, t, 0.1, native=False)
    model.native_solve = False
    loop = solve_fixed_grid(lambda s, u: model.field(u), x0, t, "rk4", 0.1).transpose(0, 1)
    assert torch.equal(model(x0, t), loop)


# -- inner LassoNet's field: a linear skip plus a network (SkipField) -------------------------------------------

@pytest.mark.parametrize("net", ["mlp", "grouped"])
@pytest.mark.parametrize("intervene", [False, True])
def test_a_skip_field_solves_as_the_loop_does_with_its_gradients(net, intervene):
    torch.manual_seed(0)
    field = SkipField(MLP(5, 5, (8, 6)) if net == "mlp" else GroupedMLP(5, 5, (4,)))
    with torch.no_grad():
        field.skip.weight.normal_()  # a skip that matters
    _assert_native_solves_as_the_loop(field, intervene)


def test_a_skip_field_passes_gradcheck_and_stacks_bit_for_bit():
    torch.manual_seed(0)
    field = SkipField(MLP(3, 3, (2,))).double()
    t = torch.tensor([0.0, 0.13, 0.4], dtype=torch.float64)
    y0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    plan = _plan(tuple(t.tolist()), 0.1)
    params = [p.detach().clone().requires_grad_() for p in (*field.net.parameters(), field.skip.weight)]

    def solve(y, *ps):
        keep = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
        return _NativeRK4.apply(plan, keep, (1, (1, 1), True, False), y, *ps)

    assert torch.autograd.gradcheck(solve, (y0, *params), eps=1e-6, atol=1e-6)
    fields = [SkipField(MLP(4, 4, (5,))) for _ in range(3)]
    ys, tt = torch.randn(3, 2, 4), torch.linspace(0, 1, 5)
    together = fused_rk4.fused_rk4_stacked(fields, ys, tt, 0.1)
    for m, f in enumerate(fields):
        assert torch.equal(fused_rk4.fused_rk4_solve(f, ys[m], tt, 0.1), together[:, m])


# -- second-order NODEs (SONODE): state [x, v], derivative [v, field([x, v])] --------------------------------------

@pytest.mark.parametrize("kind", ["mlp", "skip", "grouped"])
@pytest.mark.parametrize("intervention", [None, {1: 0.5}])
def test_a_sonode_solves_in_the_kernel_as_in_the_loop(kind, intervention):
    torch.manual_seed(0)
    field = {"mlp": MLP(6, 3, (8, 5)), "skip": SkipField(MLP(6, 3, (8,))), "grouped": GroupedMLP(6, 3, (4,))}[kind]
    model = SecondOrderODE(field, MLP(3, 3, (4,)), solver="rk4", step_size=0.1)
    x0, t = torch.randn(5, 3), torch.tensor([0.0, 0.3, 0.45, 1.0])
    assert fused_rk4.can_fuse([field], torch.randn(5, 6), native=True, second_order=True)
    results = []
    for native_solve in (True, False):  # False: the lean loop (no PyTorch fused solve for SONODEs)
        model.native_solve = native_solve
        x = x0.clone().requires_grad_()
        out = model(x, t, intervention)
        grads = torch.autograd.grad(out.square().sum(), [x, *model.parameters()])
        results.append((out, grads))
    (a, ga), (b, gb) = results
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-5)


def test_the_second_order_kernel_passes_gradcheck_in_float64():
    torch.manual_seed(0)
    field = MLP(4, 2, (3,)).double()
    t = torch.tensor([0.0, 0.13, 0.4], dtype=torch.float64)
    y0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    plan = _plan(tuple(t.tolist()), 0.1)
    keep = torch.tensor([1.0, 0.0], dtype=torch.float64)
    params = [p.detach().clone().requires_grad_() for p in field.parameters()]

    def solve(y, *ps):
        return _NativeRK4.apply(plan, keep, (1, (1, 1), False, True), y, *ps)

    assert torch.autograd.gradcheck(solve, (y0, *params), eps=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match="no fused rk4 solve"):
        fused_rk4.fused_rk4_solve(field, y0.detach(), t, 0.1, native=False, second_order=True)


def test_stacked_sonodes_give_each_member_its_own_bits():
    torch.manual_seed(0)
    models = [SecondOrderODE(MLP(6, 3, (5,)), None, solver="rk4", step_size=0.1) for _ in range(3)]
    x0, v0, t = torch.randn(3, 4, 3), torch.randn(3, 4, 3), torch.linspace(0, 1, 6)
    together = stacked_forecast(models, x0, t, v0=v0)
    for m, model in enumerate(models):
        assert torch.equal(together[m], model(x0[m], t, v0=v0[m]))


def test_the_build_for_any_x86_cpu_gives_the_bits_of_the_native_build(tmp_path, monkeypatch):
    """Built with -march=native on a CPU with AVX-512 the kernel's products run masked vector loops; built for any
    CPU (the fallback when the compiler refuses -march=native) they run the portable loops on zero-padded
    copies. Both sum every element by the same fma chain: the same bits, float and double, through partial row
    and column blocks (5 outputs, 3 and 7 rows), grouped and skip fields and a SONODE."""
    from sparsedyn.nn import fused_native

    compiler = native._compiler()
    assert compiler is not None  # the native kernel was built above, so there is one
    portable = tmp_path / "portable.so"
    native._compile(compiler, portable, native_arch=False)
    lib = ctypes.CDLL(str(portable))
    native._declare(lib)
    cases = [(NeuralODE(MLP(5, 5, (16, 16)), solver="rk4", step_size=0.25), 5, 3),
             (NeuralODE(MLP(3, 3, (20, 17)), solver="rk4", step_size=0.25), 3, 7),
             (NeuralODE(GroupedMLP(4, 4, (5, 3)), solver="rk4", step_size=0.25), 4, 5),
             (NeuralODE(SkipField(MLP(6, 6, (9,))), solver="rk4", step_size=0.25), 6, 4),
             (SecondOrderODE(MLP(8, 4, (11,)), MLP(4, 4, (6,)), solver="rk4", step_size=0.25), 4, 5)]
    for dtype in (torch.float32, torch.float64):
        for model, n, rows in cases:
            model = model.to(dtype)
            x0 = torch.randn(rows, n, dtype=dtype, generator=torch.Generator().manual_seed(n))
            t = torch.linspace(0, 1, 5, dtype=dtype)
            results = []
            for kernel in (native.kernel(), lib):
                monkeypatch.setattr(fused_native.native, "kernel", lambda kernel=kernel: kernel)
                model.zero_grad()
                y = model(x0, t)
                y.square().sum().backward()
                results.append([y.detach()] + [p.grad.clone() for p in model.parameters()])
            assert all(torch.equal(a, b) for a, b in zip(*results)), (type(model.field).__name__, dtype)
