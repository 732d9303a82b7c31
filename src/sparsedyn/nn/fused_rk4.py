"""A hand-fused rk4 solve for the library's default field, a tanh MLP: one autograd node per solve.

A small NODE's training step is bound by per-operation overhead, and much of it is autograd's: every
elementwise vector update and every layer of every field evaluation is a graph node (about 30 per rk4
step). Here the whole fixed-grid solve is one :class:`torch.autograd.Function`: the forward runs the
steps of :mod:`~sparsedyn.nn.fixed_grid` without building a graph (saving the stage inputs and hidden
activations), and the backward is written out by hand: for the 3/8-rule step

    k1 = f(y), k2 = f(y + dt k1 / 3), k3 = f(y + dt (k2 - k1 / 3)), k4 = f(y + dt (k1 - k2 + k3)),
    y' = y + dt (k1 + 3 k2 + 3 k3 + k4) / 8

the adjoint ``a`` of ``y'`` gives, stage by stage from the last (``u_s`` the stage inputs, ``J_s^T`` the
field's vector-Jacobian product there, which also accumulates the weight gradients):

    g4 = J4^T (dt a / 8)
    g3 = J3^T (3 dt a / 8 + dt g4)
    g2 = J2^T (3 dt a / 8 - dt g4 + dt g3)
    g1 = J1^T (dt a / 8 + dt g4 - dt g3 / 3 + dt g2 / 3)
    adjoint of y = a + g1 + g2 + g3 + g4

Observation times between grid points are linearly interpolated as torchdiffeq does, and an
intervention's mask multiplies the field as in :class:`~sparsedyn.nn.ode._FirstOrder`. The weights
enter as tensors (a parametrized layer's effective weight), so gates and masks receive their gradients
through autograd as before. The step's scalars are folded into fused adds and the weight gradients are
summed over every field evaluation of the solve in one product per layer, so forward values and
gradients equal the unfused loop's to float rounding (tests, including ``gradcheck`` in float64). Every
operation computes an element the same way whatever the tensor's size, so a stacked member's numbers do not
depend on how many members it is stacked with (test); that is why the activation is ``torch.tanh`` and not the
equal, faster ``torch.sigmoid`` network (whose CPU kernel computes a tensor's last partial vector by another
formula: ``docs/benchmarks.md``, 2026-12-07).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor

from . import lockstep
from .fields import MLP, GroupedMLP, SkipField
from .fixed_grid import _plan
from .fused_native import applies, native_rk4

_THIRD = 1 / 3


def fusable(field: torch.nn.Module) -> bool:
    """Whether the PyTorch fused solve applies: a plain :class:`~sparsedyn.nn.fields.MLP` with tanh
    between layers and biases (the library's default field; subclasses and other fields are not fused)."""
    return type(field) is MLP and field.activation_name == "tanh" and all(
        _bias(layer) is not None for layer in field.layers)


def _bias(layer: Any) -> Tensor | None:
    """``layer.bias``, read from the parameter dict of a plain ``nn.Linear`` (see :func:`_layer_tensors`)."""
    return layer._parameters["bias"] if type(layer) is torch.nn.Linear else layer.bias


def _layer_tensors(layer: Any) -> tuple[Any, Any]:
    """A layer's weight and bias. For a layer whose type is exactly ``nn.Linear`` they are its parameters, read
    from its parameter dict (a parametrization replaces the layer's class, so none sits on it): a stacked
    forward reads them for every member and step, and ``nn.Module.__getattr__`` costs ~0.5 us a read. Any other
    layer's through attribute access (a parametrized layer's effective weight)."""
    if type(layer) is torch.nn.Linear:
        params = layer._parameters
        return params["weight"], params["bias"]
    return layer.weight, layer.bias


def native_fusable(field: torch.nn.Module) -> bool:
    """Whether the native kernel can solve ``field``: what :func:`fusable` takes, a plain tanh
    :class:`~sparsedyn.nn.fields.GroupedMLP` with biases (GroupLasso's per-output networks: a dense first layer,
    block-diagonal later ones), or a :class:`~sparsedyn.nn.fields.SkipField` around either (inner LassoNet)."""
    if type(field) is SkipField:
        return field.skip.bias is None and native_fusable(field.net) and type(field.net) is not SkipField
    return fusable(field) or (type(field) is GroupedMLP and field.activation_name == "tanh" and all(
        layer.bias is not None for layer in field.layers))


def _native_parts(field: Any) -> tuple[list[Tensor], tuple[int, ...], bool]:
    """The kernel's view of a :func:`native_fusable` field: every layer's weight and bias (then a skip's weight),
    the blocks per layer, and whether there is a skip."""
    return (_native_tensors(field), *_native_layout(field))


def _native_layout(field: Any) -> tuple[tuple[int, ...], bool]:
    """:func:`_native_parts`' blocks per layer and whether there is a skip."""
    skip = type(field) is SkipField
    return _groups(field.net if skip else field), skip


def _native_tensors(field: Any) -> list[Tensor]:
    """:func:`_native_parts`' tensors alone."""
    skip = type(field) is SkipField
    params: list[Tensor] = [p for layer in (field.net if skip else field).layers for p in _layer_tensors(layer)]
    if skip:
        params.append(field.skip.weight)
    return params


def _groups(field: Any) -> tuple[int, ...]:
    """Blocks per layer for the kernel: 1 (dense) everywhere for an MLP; a GroupedMLP's first layer reads the
    shared input (dense, all outputs' units), its later layers one block per output."""
    layers = len(field.layers)
    return (1,) + (field.n_out,) * (layers - 1) if type(field) is GroupedMLP else (1,) * layers


def can_fuse(fields: Sequence[Any], y0: Tensor, native: bool, second_order: bool = False) -> bool:
    """Whether :func:`fused_rk4_solve` (one field) or :func:`fused_rk4_stacked` (members) takes these fields:
    the PyTorch fused solve for plain tanh MLPs, the native kernel (when ``native`` and it applies) also for
    grouped and skip fields and for a SONODE's state (``second_order``: the kernel only)."""
    if not second_order and all(fusable(f) for f in fields):
        return True
    if not (native and all(native_fusable(f) for f in fields) and len({type(f) for f in fields}) == 1):
        return False
    return applies(y0 if len(fields) == 1 else y0[0], _native_parts(fields[0])[0])


def _mlp(params: tuple[Tensor, ...], u: Tensor) -> tuple[Tensor, list[Tensor]]:
    """The MLP at ``u`` and its post-activation hidden states (for the backward). Weights ``(out, in)``
    with ``u (B, in)``, or stacked members' ``(M, out, in)`` with ``u (M, B, in)``."""
    hidden, h = [], u
    last = len(params) // 2 - 1
    for i in range(last + 1):
        w, b = params[2 * i], params[2 * i + 1]
        h = torch.addmm(b, h, w.t()) if w.dim() == 2 else torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if i < last:
            h = torch.tanh(h)
            hidden.append(h)
    return h, hidden


def _mlp_vjp(params: tuple[Tensor, ...], u: Tensor, hidden: list[Tensor], g: Tensor,
             seen: list[list[tuple[Tensor, Tensor]] | None], sums: list[Tensor]) -> Tensor:
    """``J^T g`` at input ``u``, collecting each layer's weight gradient terms: appended to ``seen[i]`` as
    an (output gradient, input) pair (summed over all pairs at once in :func:`_weight_grads`), or, where
    ``seen[i]`` is None, accumulated at once into ``sums[2 i]`` (weight) and ``sums[2 i + 1]`` (the
    running sum of output gradients)."""
    last = len(params) // 2 - 1
    for i in range(last, -1, -1):
        x = hidden[i - 1] if i > 0 else u
        pairs = seen[i]
        if pairs is not None:
            pairs.append((g, x))
        else:
            if g.dim() == 2:
                sums[2 * i].addmm_(g.t(), x)
            else:
                sums[2 * i].baddbmm_(g.transpose(1, 2), x)
            sums[2 * i + 1].add_(g)
        g = torch.matmul(g, params[2 * i])  # (B, out) @ (out, in), or (M, B, out) @ (M, out, in)
        if i > 0:
            h = hidden[i - 1]
            g = torch.addcmul(g, g * h, h, value=-1.0)  # g * (1 - h^2): tanh's derivative
    return g


ACCUMULATE_FROM = 8192
"""Elements of a layer's input plus output gradient per field evaluation from which its weight gradient is
accumulated evaluation by evaluation rather than by one product over concatenated pairs. Concatenating
large pairs (gene-scale inputs, stacked members) is a slow strided copy, while for small ones the extra
products cost more in dispatch. Measured side by side (``python bench/update_ab.py --rounds 10``, this
project's 2-core CPU, 2026-12-05): the lockstep step of 32 members on 200 variables 0.87-0.90x the
concatenating code's time, 81 members on 10 variables and one MLP 64-64 step on 529 variables 0.92-1.02x
(within noise), one step on 10 variables 1.00-1.01x (every layer stays below the threshold)."""


ACCUMULATE_FROM_MEMBER = 128
"""The same rule for stacked members, counted per member: the choice must not depend on how many members are
stacked, or a lockstep job resumed with fewer members (their checkpoints at different epochs) would sum its
gradients in another order than the uninterrupted job (at 200 variables, 32 members chose accumulation and
one member alone concatenation, and their numbers differed in the last bits). At 128 the benches' stacked jobs
keep the choice they made before (81 members of the systems model, 168-256 values per member and layer, and 32
members on 200 variables accumulate every layer; a lockstep of 81 with the outer layers concatenated instead was
1.02-1.03x slower)."""


def _collectors(params: tuple[Tensor, ...], batch: torch.Size) -> tuple[list, list[Tensor]]:
    """Per layer: a list for (gradient, input) pairs, or None and zeroed sums to accumulate into."""
    seen: list[list[tuple[Tensor, Tensor]] | None] = []
    sums: list[Tensor] = []
    stacked = params[0].dim() == 3
    rows = math.prod(batch[1:] if stacked else batch)
    threshold = ACCUMULATE_FROM_MEMBER if stacked else ACCUMULATE_FROM
    for w, b in zip(params[::2], params[1::2]):
        if rows * (w.shape[-1] + w.shape[-2]) >= threshold:
            seen.append(None)
            sums += [torch.zeros_like(w), torch.zeros(*batch, b.shape[-1], dtype=b.dtype)]
        else:
            seen.append([])
            sums += [w.new_empty(0), b.new_empty(0)]
    return seen, sums


def _weight_grads(seen: list[list[tuple[Tensor, Tensor]] | None], sums: list[Tensor]) -> list[Tensor]:
    """Per layer, sum_s g_s^T x_s and sum_s g_s over every evaluation of the solve (per member, for stacked
    weights): one product over the concatenated pairs, or the accumulated sums."""
    grads = []
    for i, pairs in enumerate(seen):
        if pairs is None:
            grads += [sums[2 * i], sums[2 * i + 1].sum(-2)]
            continue
        g = torch.cat([p[0] for p in pairs], dim=-2)
        x = torch.cat([p[1] for p in pairs], dim=-2)
        grads += [torch.matmul(g.transpose(-1, -2), x), g.sum(-2)]
    return grads


class _FusedRK4(torch.autograd.Function):
    @staticmethod
    def forward(ctx, plan, keep, y0, *params):
        steps, outputs = plan
        solution: list[Tensor | None] = [None] * (1 + sum(len(o) for o in outputs))
        solution[0] = y0
        saved, y = [], y0

        def f(u: Tensor) -> tuple[Tensor, list[Tensor]]:
            out, hidden = _mlp(params, u)
            return (out if keep is None else out.mul_(keep)), hidden

        # the 3/8-rule step, scalars folded into fused adds, each sum built in place in one new tensor
        for dt, out in zip(steps, outputs):
            k1, h1 = f(y)
            u2 = torch.add(y, k1, alpha=dt * _THIRD)
            k2, h2 = f(u2)
            u3 = torch.add(y, k2, alpha=dt).add_(k1, alpha=-dt * _THIRD)
            k3, h3 = f(u3)
            u4 = torch.add(y, k1, alpha=dt).add_(k2, alpha=-dt).add_(k3, alpha=dt)
            k4, h4 = f(u4)
            eighth = dt * 0.125
            y1 = torch.add(y, k1, alpha=eighth).add_(k2, alpha=3 * eighth).add_(k3, alpha=3 * eighth).add_(
                k4, alpha=eighth)
            saved.append(((y, u2, u3, u4), (h1, h2, h3, h4)))
            for j, slope in out:
                solution[j] = y1 if slope is None else (y if slope == 0.0 else y + slope * (y1 - y))
            y = y1
        ctx.plan, ctx.keep, ctx.saved, ctx.params = plan, keep, saved, params
        return torch.stack(solution)

    @staticmethod
    def backward(ctx, grad_out):
        steps, outputs = ctx.plan
        params, keep = ctx.params, ctx.keep
        seen, sums = _collectors(params, grad_out.shape[1:-1])
        a = torch.zeros_like(grad_out[0])  # adjoint of the state at the current grid point
        for i in range(len(steps) - 1, -1, -1):
            dt, (inputs, hiddens) = steps[i], ctx.saved[i]
            before = None  # output contributions to this step's start state
            for j, slope in outputs[i]:
                if slope is None:
                    a = a + grad_out[j]
                elif slope == 0.0:
                    before = grad_out[j] if before is None else before + grad_out[j]
                else:
                    a = torch.add(a, grad_out[j], alpha=slope)
                    part = grad_out[j] * (1 - slope)
                    before = part if before is None else before + part

            def vjp(s: int, g: Tensor, inputs=inputs, hiddens=hiddens) -> Tensor:
                return _mlp_vjp(params, inputs[s], hiddens[s], g if keep is None else g * keep, seen, sums)

            eighth = dt * 0.125
            g4 = vjp(3, a * eighth)
            g3 = vjp(2, (g4 * dt).add_(a, alpha=3 * eighth))
            g2 = vjp(1, (g3 * dt).add_(g4, alpha=-dt).add_(a, alpha=3 * eighth))
            g1 = vjp(0, (g4 * dt).add_(g3, alpha=-dt * _THIRD).add_(g2, alpha=dt * _THIRD).add_(a, alpha=eighth))
            a = (a + g1).add_(g2).add_(g3).add_(g4)
            if before is not None:
                a.add_(before)
        a = a + grad_out[0]
        return (None, None, a, *_weight_grads(seen, sums))


def fused_rk4_solve(field: Any, y0: Tensor, t: Tensor, step_size: float | None,
                    keep: Tensor | None = None, native: bool = True, second_order: bool = False) -> Tensor:
    """The rk4 solve of ``dy/dt = field(y) (* keep)`` at the increasing times ``t``: ``(len(t), *y0.shape)``,
    the numbers of :func:`~sparsedyn.nn.fixed_grid.solve_fixed_grid`, one autograd node; in C
    (:mod:`~sparsedyn.nn.fused_native`) when ``native`` and the kernel applies (:func:`can_fuse` says whether a
    field is taken at all). With ``second_order`` (the kernel only) ``y0`` is a SONODE's state ``[x, v]``, the
    field maps it to the acceleration, and the solve is that of ``[x, v]' = [v, field([x, v]) (* keep)]``."""
    times = tuple(float(v) for v in t.detach().cpu().tolist())
    plan = _plan(times, None if step_size is None else float(step_size), t.dtype)
    if native and native_fusable(field):
        parts, groups, skip = _native_parts(field)
        if applies(y0, parts):
            return native_rk4(plan, keep, y0, parts, 1, groups, skip, second_order)
    if second_order or not fusable(field):
        raise TypeError(f"no fused rk4 solve for this {type(field).__name__} here (see fused_rk4.can_fuse)")
    params = cast(tuple[Tensor, ...], tuple(p for layer in field.layers for p in (layer.weight, layer.bias)))
    return _FusedRK4.apply(plan, keep, y0, *params)


def stack_members(tensors: Sequence[Any]) -> Any:
    """The members' tensors stacked along a new leading axis (None if every member has None: a bias-free
    layer); a member that differs in structure or shape is an error that says so. Members' attributes are read
    dynamically (``nn.Module.__getattr__``), hence ``Any``. Where the tensors sit side by side in a lockstep's
    flat leaf (:mod:`~sparsedyn.nn.lockstep`) the result is a view of it: the same numbers, no copy, and one
    gradient accumulation for all members."""
    view = lockstep.alias(tensors)
    if view is not None:
        return view
    if all(t is None for t in tensors):
        return None
    if any(t is None for t in tensors):
        raise ValueError("members differ in structure (a bias present in some, absent in others)")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"members differ in shape: {sorted(shapes)}")
    return torch.stack(list(tensors))


def fused_rk4_stacked(fields: Sequence[Any], y0: Tensor, t: Tensor, step_size: float | None,
                      keep: Tensor | None = None, native: bool = True, second_order: bool = False) -> Tensor:
    """:func:`fused_rk4_solve` for ``M`` members at once (fields of one shape, ``y0 (M, B, n)``): their
    weights stacked ``(M, out, in)``, every product batched; returns ``(len(t), M, B, n)``."""
    times = tuple(float(v) for v in t.detach().cpu().tolist())
    plan = _plan(times, None if step_size is None else float(step_size), t.dtype)
    if native and native_fusable(fields[0]):
        groups, skip = _native_layout(fields[0])
        tensors = [_native_tensors(f) for f in fields]
        stacked = [stack_members([ts[i] for ts in tensors]) for i in range(len(tensors[0]))]
        if applies(y0, stacked, len(fields)):
            return native_rk4(plan, keep, y0, stacked, len(fields), groups, skip, second_order)
    if second_order or not fusable(fields[0]):
        raise TypeError(f"no fused rk4 solve for these {type(fields[0]).__name__}s here (see fused_rk4.can_fuse)")
    layers = [list(f.layers) for f in fields]  # iterating a ModuleList, not indexing it: ~2 us less a layer
    params = tuple(stack_members([getattr(ls[i], name) for ls in layers])
                   for i in range(len(layers[0])) for name in ("weight", "bias"))
    return _FusedRK4.apply(plan, keep, y0, *params)
