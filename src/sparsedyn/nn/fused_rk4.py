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
gradients equal the unfused loop's to float rounding (tests, including ``gradcheck`` in float64). The MLP is
evaluated as the equal sigmoid network (:func:`_sigmoid_form`: torch's CPU tanh costs several times its
sigmoid), its weight gradients mapped back to the tanh network's (:func:`_original_grads`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .fields import MLP
from .fixed_grid import _plan

_THIRD = 1 / 3


def fusable(field: torch.nn.Module) -> bool:
    """Whether :func:`fused_rk4_solve` applies: a plain :class:`~sparsedyn.nn.fields.MLP` with tanh
    between layers and biases (the library's default field; subclasses and other fields are not fused)."""
    return type(field) is MLP and field.activation_name == "tanh" and all(
        layer.bias is not None for layer in field.layers)


def _sigmoid_form(params: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The same MLP with logistic sigmoids in place of tanh: weights and biases ``(W_i', b_i')`` such that
    ``s_i = sigmoid(W_i' s_{i-1} + b_i')`` equals ``(1 + tanh(u_i)) / 2`` at every hidden layer and the
    output is unchanged (``tanh(u) = 2 sigmoid(2u) - 1``; the affine map ``2 s - 1`` is folded into the next
    layer: ``W' = 4 W`` and ``b' = 2 (b - W 1)`` between hidden layers, ``2 W`` and ``2 b`` into the first,
    ``2 W`` and ``b - W 1`` out of the last). Why: torch's CPU ``tanh`` is 4-6x slower per element than its
    ``sigmoid`` (7.1 against 2.1 us per call on 2,048 floats, 141 against 22 us on 51,200, one thread;
    ``bench/fused_activation.py``), and a solve makes two activations per field evaluation: a solve with its
    backward takes 0.93x the time."""
    last = len(params) // 2 - 1
    out: list[Tensor] = []
    for i in range(last + 1):
        w, b = params[2 * i], params[2 * i + 1]
        if i > 0:  # the previous layer's tanh is 2 s - 1
            b = b - w.sum(-1)
            w = 2.0 * w
        if i < last:  # this layer's tanh(u) = 2 sigmoid(2 u) - 1
            w, b = 2.0 * w, 2.0 * b
        out += [w, b]
    return tuple(out)


def _original_grads(grads: list[Tensor], layers: int) -> list[Tensor]:
    """Gradients of :func:`_sigmoid_form`'s weights and biases mapped back to the original ones (the chain rule
    through ``W' = c W`` and ``b' = d (b - [i > 0] W 1)``)."""
    last = layers - 1
    out: list[Tensor] = []
    for i in range(layers):
        gw, gb = grads[2 * i], grads[2 * i + 1]
        c = (2.0 if i > 0 else 1.0) * (2.0 if i < last else 1.0)
        d = 2.0 if i < last else 1.0
        gw = c * gw
        if i > 0:
            gw = gw - (d * gb).unsqueeze(-1)
        out += [gw, d * gb]
    return out


def _sigmoid_slope(g: Tensor, h: Tensor) -> Tensor:
    """``g`` times the sigmoid's derivative at the unit whose output is ``h``: ``g h (1 - h)``."""
    gh = g * h
    return torch.addcmul(gh, gh, h, value=-1.0)


def _mlp(params: tuple[Tensor, ...], u: Tensor, activation: Callable[[Tensor], Tensor] = torch.sigmoid
         ) -> tuple[Tensor, list[Tensor]]:
    """The MLP at ``u`` in :func:`_sigmoid_form` and its post-activation hidden states (for the backward).
    Weights ``(out, in)`` with ``u (B, in)``, or stacked members' ``(M, out, in)`` with ``u (M, B, in)``."""
    hidden, h = [], u
    last = len(params) // 2 - 1
    for i in range(last + 1):
        w, b = params[2 * i], params[2 * i + 1]
        h = torch.addmm(b, h, w.t()) if w.dim() == 2 else torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if i < last:
            h = activation(h)
            hidden.append(h)
    return h, hidden


def _mlp_vjp(params: tuple[Tensor, ...], u: Tensor, hidden: list[Tensor], g: Tensor,
             seen: list[list[tuple[Tensor, Tensor]] | None], sums: list[Tensor],
             slope: Callable[[Tensor, Tensor], Tensor] = _sigmoid_slope) -> Tensor:
    """``J^T g`` at input ``u`` (``slope(g, h)``: ``g`` times the activation's derivative at output ``h``),
    collecting each layer's weight gradient terms: appended to ``seen[i]`` as an (output gradient, input)
    pair (summed over all pairs at once in :func:`_weight_grads`), or, where ``seen[i]`` is None,
    accumulated at once into ``sums[2 i]`` (weight) and ``sums[2 i + 1]`` (the running sum of output
    gradients)."""
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
            g = slope(g, hidden[i - 1])
    return g


ACCUMULATE_FROM = 8192
"""Elements of a layer's input plus output gradient per field evaluation from which its weight gradient is
accumulated evaluation by evaluation rather than by one product over concatenated pairs. Concatenating
large pairs (gene-scale inputs, stacked members) is a slow strided copy, while for small ones the extra
products cost more in dispatch. Measured side by side (``python bench/update_ab.py --rounds 10``, this
project's 2-core CPU, 2026-12-05): the lockstep step of 32 members on 200 variables 0.87-0.90x the
concatenating code's time, 81 members on 10 variables and one MLP 64-64 step on 529 variables 0.92-1.02x
(within noise), one step on 10 variables 1.00-1.01x (every layer stays below the threshold)."""


def _collectors(params: tuple[Tensor, ...], batch: torch.Size) -> tuple[list, list[Tensor]]:
    """Per layer: a list for (gradient, input) pairs, or None and zeroed sums to accumulate into."""
    seen: list[list[tuple[Tensor, Tensor]] | None] = []
    sums: list[Tensor] = []
    rows = math.prod(batch)
    for w, b in zip(params[::2], params[1::2]):
        if rows * (w.shape[-1] + w.shape[-2]) >= ACCUMULATE_FROM:
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
        params = _sigmoid_form(params)

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
        return (None, None, a, *_original_grads(_weight_grads(seen, sums), len(params) // 2))


def fused_rk4_solve(field: MLP, y0: Tensor, t: Tensor, step_size: float | None,
                    keep: Tensor | None = None) -> Tensor:
    """The rk4 solve of ``dy/dt = field(y) (* keep)`` at the increasing times ``t``: ``(len(t), *y0.shape)``,
    the numbers of :func:`~sparsedyn.nn.fixed_grid.solve_fixed_grid`, one autograd node."""
    times = tuple(float(v) for v in t.detach().cpu().tolist())
    plan = _plan(times, None if step_size is None else float(step_size))
    params = tuple(p for layer in field.layers for p in (layer.weight, layer.bias))
    return _FusedRK4.apply(plan, keep, y0, *params)


def fused_rk4_stacked(fields: list[MLP], y0: Tensor, t: Tensor, step_size: float | None,
                      keep: Tensor | None = None) -> Tensor:
    """:func:`fused_rk4_solve` for ``M`` members at once (fields of one shape, ``y0 (M, B, n)``): their
    weights stacked ``(M, out, in)``, every product batched; returns ``(len(t), M, B, n)``."""
    times = tuple(float(v) for v in t.detach().cpu().tolist())
    plan = _plan(times, None if step_size is None else float(step_size))
    params = tuple(torch.stack([getattr(f.layers[i], name) for f in fields])
                   for i in range(len(fields[0].layers)) for name in ("weight", "bias"))
    return _FusedRK4.apply(plan, keep, y0, *params)
