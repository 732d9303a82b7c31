"""Members evaluated as one: M independent models of one shape in batched matrix products.

Small models waste a CPU on per-operation overhead (measured in ``bench/stacked_training.py``).
Members here stay ordinary modules, each with its own gates, masks, optimizer and checkpoints;
what is stacked, once per forward, is their *effective* weights (gates sampled with the member's
own noise, masks applied), along a new leading member axis. Every product is then one batched
product over members, and nothing is summed across that axis: member ``m``'s output depends on
member ``m``'s weights and inputs only, so the gradient of the summed member losses reaches each
member's parameters exactly as its own loss's gradient would (up to float rounding).

Supported: :class:`~sparsedyn.nn.ode.NeuralODE` and :class:`~sparsedyn.nn.ode.SecondOrderODE`
with :class:`MLP`, :class:`GroupedMLP` and :class:`SkipField` fields, outer skips, interventions,
solved on a fixed grid (``rk4``, ``euler``, ``midpoint``: an adaptive solver would choose one
step size for all members, so members would no longer be independent); the recurrent layers
(:func:`stacked_recurrent`) and path-integration RNNs (:func:`stacked_path_integration`, the
navigation task's stacked forward). :func:`stackable` says whether a list of NODEs qualifies.

Each field kind's stacked form is registered in :data:`STACKED_FORMS` (``@stacked_form``) with a small
example field; the tests are generated from that registry (every kind x first/second order x outer skip
x intervention), so a new field kind cannot go untested.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .fields import MLP, GroupedMLP, SkipField
from .fused_rk4 import can_fuse, fused_rk4_stacked, stack_members
from .ode import NeuralODE, SecondOrderODE, _apply_intervention, _intervention_mask, integrate
from .rnn import RecurrentLayer, State, elman_step, gru_step, lstm_step

FIXED_GRID_SOLVERS = ("rk4", "euler", "midpoint")
StackedFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class StackedForm:
    """How members with fields of one kind evaluate as one: ``build(fields)`` gives the stacked function;
    ``example(n_in, n_out)`` is a small field of the kind, for the tests generated from the registry."""

    build: Callable[[Sequence[nn.Module]], StackedFn]
    example: Callable[[int, int], nn.Module]


STACKED_FORMS: dict[type[nn.Module], StackedForm] = {}


def stacked_form(kind: type[nn.Module], example: Callable[[int, int], nn.Module]) -> Callable:
    """Decorator: register ``build`` as the stacked form of fields of type ``kind``."""
    def register(build: Callable[[Sequence[nn.Module]], StackedFn]) -> Callable[[Sequence[nn.Module]], StackedFn]:
        STACKED_FORMS[kind] = StackedForm(build, example)
        return build
    return register


@stacked_form(MLP, example=lambda n_in, n_out: MLP(n_in, n_out, (5, 4)))
def _stacked_mlp(fields: Sequence[MLP]) -> StackedFn:
    """``x (M, B, in) -> (M, B, out)`` with every layer a batched product over members."""
    n_layers = len(fields[0].layers)
    weights = [stack_members([f.layers[i].weight for f in fields]).transpose(1, 2) for i in range(n_layers)]
    biases = [stack_members([f.layers[i].bias for f in fields]) for i in range(n_layers)]
    act = fields[0].act

    def forward(x: Tensor) -> Tensor:
        for i, (w, b) in enumerate(zip(weights, biases)):
            x = torch.bmm(x, w) if b is None else torch.baddbmm(b.unsqueeze(1), x, w)
            if i < n_layers - 1:
                x = act(x)
        return x

    return forward


@stacked_form(GroupedMLP, example=lambda n_in, n_out: GroupedMLP(n_in, n_out, (4, 2)))
def _stacked_grouped_mlp(fields: Sequence[GroupedMLP]) -> StackedFn:
    """Per-output networks of every member: weights ``(M, groups, out, in)``."""
    n_layers = len(fields[0].layers)
    weights = [stack_members([f.layers[i].weight for f in fields]) for i in range(n_layers)]
    biases = [stack_members([f.layers[i].bias for f in fields]) for i in range(n_layers)]
    act = fields[0].act

    def forward(x: Tensor) -> Tensor:
        m, g, o, i = weights[0].shape  # the first layer reads the shared input: one (g*o, i) product
        h = torch.bmm(x, weights[0].reshape(m, g * o, i).transpose(1, 2)).view(m, x.shape[1], g, o)
        if biases[0] is not None:
            h = h + biases[0].unsqueeze(1)
        for w, b in zip(weights[1:], biases[1:]):
            h = torch.einsum("mbgi,mgoi->mbgo", act(h), w)
            if b is not None:
                h = h + b.unsqueeze(1)
        return h.squeeze(-1)

    return forward


def _stacked_linear_no_bias(layers: Sequence[nn.Module]) -> StackedFn:
    w = stack_members([layer.weight for layer in layers]).transpose(1, 2)
    return lambda x: torch.bmm(x, w)


@stacked_form(SkipField, example=lambda n_in, n_out: SkipField(MLP(n_in, n_out, (5,), "elu")))
def _stacked_skip_field(fields: Sequence[SkipField]) -> StackedFn:
    skip = _stacked_linear_no_bias([f.skip for f in fields])
    net = stacked_field([f.net for f in fields])
    return lambda x: skip(x) + net(x)


def stacked_field(fields: Sequence[nn.Module]) -> StackedFn:
    """One function ``x (M, B, n_in) -> (M, B, n_out)`` computing every member's field on its own
    slice; reads each member's effective weights now (call it once per forward)."""
    kinds = {type(f) for f in fields}
    if len(kinds) != 1:
        raise ValueError(f"members have different field types: {sorted(k.__name__ for k in kinds)}")
    kind = kinds.pop()
    if kind not in STACKED_FORMS:
        raise TypeError(f"no stacked form for a {kind.__name__} field")
    return STACKED_FORMS[kind].build(fields)


def _solver_options(model: nn.Module) -> tuple:
    return (type(model), model.solver, model.step_size, model.adjoint, model.rtol, model.atol,
            model.fixed_grid_loop, model.native_solve)


def stackable(models: Sequence[nn.Module]) -> str | None:
    """``None`` if ``models`` can be evaluated as one stacked forward, else the reason they cannot."""
    if not models:
        return "no members"
    if not all(isinstance(m, (NeuralODE, SecondOrderODE)) for m in models):
        return "only continuous-depth models (NeuralODE, SecondOrderODE) have a stacked forward"
    if len({_solver_options(m) for m in models}) != 1:
        return "members differ in model type or solver options"
    first = models[0]
    if first.solver not in FIXED_GRID_SOLVERS:
        return f"solver {first.solver!r} is adaptive: one step-size sequence would be shared by all members"
    if first.adjoint:
        return "the adjoint solve is not stacked"
    if len({type(m.field) for m in models}) != 1 or type(first.field) not in STACKED_FORMS:
        return f"no stacked form for a {type(first.field).__name__} field"
    if len({m.outer_skip is None for m in models}) != 1:
        return "some members have an outer skip and others not"
    if isinstance(first, SecondOrderODE) and len({m.init_velocity is None for m in models}) != 1:
        return "some members have an initial-velocity network and others not"
    return None  # parameter shapes are checked as the weights are stacked (a clear error names them)


def stacked_forecast(models: Sequence[Any], x0: Tensor, t: Tensor, intervention: Any = None,
                     v0: Tensor | None = None) -> Tensor:
    """Every member's forecast ``model_m(x0[m], t, intervention)`` as one solve: ``(M, B, T, n)``.

    ``models`` must be :func:`stackable` (checked by the caller, once). Gates are *not* resampled
    here: a training forward of a member must have drawn its sample first
    (:func:`~sparsedyn.nn.gates.hold_gates` with the member's random state), as the member's own
    forward would; eval-mode members use their deterministic gates.
    """
    first = models[0]
    n = first.n_state
    if x0.dim() != 3 or x0.shape[0] != len(models) or x0.shape[2] != n:
        raise ValueError(f"x0 must have shape ({len(models)}, batch, {n}), got {tuple(x0.shape)}")
    if t.dim() != 1 or t.numel() < 2:
        raise ValueError(f"t must be a 1-d tensor of >= 2 increasing times, got shape {tuple(t.shape)}")
    keep = _intervention_mask(n, intervention, x0)
    x0 = _apply_intervention(x0, intervention)
    with parametrize.cached():
        fields = [m.field for m in models]
        second = isinstance(first, SecondOrderODE)
        y0 = x0
        if second:
            if v0 is None:
                if first.init_velocity is None:
                    raise ValueError("these SONODEs have no init_velocity network: pass v0")
                v0 = stacked_field([m.init_velocity for m in models])(x0)
            if keep is not None:
                v0 = v0 * keep
            y0 = torch.cat([x0, v0], -1)
        if (first.fixed_grid_loop and first.solver == "rk4" and can_fuse(fields, y0, first.native_solve, second)
                and bool((t[1:] > t[:-1]).all())):
            states = fused_rk4_stacked(fields, y0, t, first.step_size, keep, first.native_solve, second)
        else:  # the stacked field's weights are read only here: the fused solve stacks its own
            field = stacked_field(fields)
            func: nn.Module = _StackedSecondOrder(field, n, keep) if second else _StackedFirstOrder(field, keep)
            states = integrate(func, y0, t, first.solver, first.rtol, first.atol, first.step_size,
                               first.fixed_grid_loop)
        x = states[..., :n].permute(1, 2, 0, 3)  # (T, M, B, n) -> (M, B, T, n)
        if first.outer_skip is not None:
            s = _stacked_linear_no_bias([m.outer_skip for m in models])(x0)
            x = x + (s if keep is None else s * keep).unsqueeze(2)
    return x


class _StackedFirstOrder(nn.Module):
    def __init__(self, field: StackedFn, keep: Tensor | None) -> None:
        super().__init__()
        self.field, self.keep = field, keep

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        dx = self.field(x)
        return dx if self.keep is None else dx * self.keep


class _StackedSecondOrder(nn.Module):
    def __init__(self, field: StackedFn, n: int, keep: Tensor | None) -> None:
        super().__init__()
        self.field, self.n, self.keep = field, n, keep

    def forward(self, t: Tensor, state: Tensor) -> Tensor:
        a = self.field(state)
        if self.keep is not None:
            a = a * self.keep
        return torch.cat([state[..., self.n:], a], dim=-1)


def stacked_recurrent(layers: Sequence[RecurrentLayer], x: Tensor,
                      state: Any = None) -> tuple[Tensor, State]:
    """Every member layer over its own sequence: ``x (M, T, B, in) -> (outputs (M, T, B, H), final state)``.

    The same recurrence as :meth:`RecurrentLayer.forward` with effective weights ``(M, gates*H, .)``
    read once; the state is ``(M, B, H)`` (an LSTM's ``(h, c)``).
    """
    first = layers[0]
    if len({(la.cell, la.nonlinearity, la.input_size, la.hidden_size) for la in layers}) != 1:
        raise ValueError("members differ in cell type or sizes")
    m = len(layers)
    if x.dim() != 4 or x.shape[0] != m or x.shape[-1] != first.input_size:
        raise ValueError(f"x must have shape ({m}, T, B, {first.input_size}), got {tuple(x.shape)}")
    w_ih = stack_members([la.weight_ih for la in layers]).transpose(1, 2)  # (M, in, gH)
    w_hh = stack_members([la.weight_hh for la in layers]).transpose(1, 2)  # (M, H, gH)
    bias = stack_members([la.bias for la in layers])
    _, steps, batch, n_in = x.shape
    xp = torch.bmm(x.reshape(m, steps * batch, n_in), w_ih).view(m, steps, batch, -1)
    if bias is not None:
        xp = xp + bias[:, None, None, :]
    if state is None:
        h = x.new_zeros(m, batch, first.hidden_size)
        state = (h, h.clone()) if first.cell == "lstm" else h
    outs = []
    for xp_t in xp.unbind(1):
        if first.cell == "elman":
            state = elman_step(xp_t, torch.bmm(state, w_hh), first.nonlinearity)
        elif first.cell == "gru":
            state = gru_step(xp_t, state, torch.bmm(state, w_hh))
        else:
            state = lstm_step(xp_t, state[1], torch.bmm(state[0], w_hh))
        outs.append(state[0] if first.cell == "lstm" else state)
    return torch.stack(outs, 1), state


def stacked_path_integration(models: Sequence[Any], velocity: Tensor, start_code: Tensor) -> Tensor:
    """Every member's :class:`~sparsedyn.nn.sequence_models.PathIntegrationRNN` forward as one:
    ``velocity (M, T, B, 2), start_code (M, B, Np) -> logits (M, T, B, Np)``: the encoder and decoder as
    batched products, each recurrent layer by :func:`stacked_recurrent` (one batched recurrent product per
    time step). Members must share their structure (cell, sizes, bias); effective weights are read once."""
    m = len(models)
    if velocity.dim() != 4 or velocity.shape[0] != m or start_code.dim() != 3 or start_code.shape[0] != m:
        raise ValueError(f"velocity must be ({m}, T, B, 2) and start_code ({m}, B, Np), got "
                         f"{tuple(velocity.shape)} and {tuple(start_code.shape)}")
    with parametrize.cached():
        encoder = _stacked_linear_no_bias([model.encoder for model in models])
        decoder = _stacked_linear_no_bias([model.decoder for model in models])
        h0 = encoder(start_code)  # (M, B, H)
        x = velocity
        for i in range(len(models[0].rnn.layers)):
            layers = [model.rnn.layers[i] for model in models]
            state: Any = None
            if i == 0:
                state = (h0, torch.zeros_like(h0)) if layers[0].cell == "lstm" else h0
            x, _ = stacked_recurrent(layers, x, state)
        _, steps, batch, hidden = x.shape
        return decoder(x.reshape(m, steps * batch, hidden)).view(m, steps, batch, -1)
