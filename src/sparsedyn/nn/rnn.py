"""Recurrent layers with plain, separately exposed weights (Elman, GRU, LSTM) and stacks of them.

PyTorch's fused ``nn.RNN`` keeps its weights in flat buffers that masks and pruning break;
these layers hold ``weight_ih`` ``(gates*H, in)`` and ``weight_hh`` ``(gates*H, H)`` as ordinary
parameters, so parametrized masks and penalties act on them directly. Each weight is read
once per forward (one mask/gate evaluation per sequence, not per time step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .fields import check_size

GATES = {"elman": 1, "gru": 3, "lstm": 4}
State = Tensor | tuple[Tensor, Tensor]


class RecurrentLayer(nn.Module):
    """One recurrent layer over a sequence ``x (T, B, in) -> (outputs (T, B, H), final state)``.

    ``cell``: ``elman`` (``h = act(W_ih x + W_hh h + b)``, act ``tanh`` or ``relu``), ``gru`` or
    ``lstm``. The LSTM's final state is ``(h, c)``.
    """

    prunable_attributes = ("weight_ih", "weight_hh")

    def __init__(self, input_size: int, hidden_size: int, cell: str = "elman", nonlinearity: str = "tanh",
                 bias: bool = True) -> None:
        super().__init__()
        if cell not in GATES:
            raise ValueError(f"unknown cell {cell!r}; choose from {sorted(GATES)}")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be >= 1, got {input_size}, {hidden_size}")
        self.input_size, self.hidden_size, self.cell, self.nonlinearity = input_size, hidden_size, cell, nonlinearity
        g = GATES[cell]
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(g * hidden_size, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(g * hidden_size, hidden_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(g * hidden_size).uniform_(-bound, bound)) if bias else None

    @property
    def gates(self) -> int:
        return GATES[self.cell]

    def initial_state(self, batch: int, like: Tensor) -> State:
        h = like.new_zeros(batch, self.hidden_size)
        return (h, h.clone()) if self.cell == "lstm" else h

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must have shape (T, B, {self.input_size}), got {tuple(x.shape)}")
        w_ih, w_hh = self.weight_ih, self.weight_hh  # one (masked) evaluation per sequence
        xp = x @ w_ih.T
        if self.bias is not None:
            xp = xp + self.bias
        state = self.initial_state(x.shape[1], x) if state is None else state
        step: Any = {"elman": self._elman, "gru": self._gru, "lstm": self._lstm}[self.cell]
        outs: list[Any] = []
        for xp_t in xp.unbind(0):  # one unbind: indexing xp[t] made backward build a full-size zero grad per step
            state = step(xp_t, state, w_hh)
            outs.append(state[0] if self.cell == "lstm" else state)
        return torch.stack(outs), state

    def _elman(self, xp: Tensor, h: Tensor, w_hh: Tensor) -> Tensor:
        return elman_step(xp, h @ w_hh.T, self.nonlinearity)

    def _gru(self, xp: Tensor, h: Tensor, w_hh: Tensor) -> Tensor:
        return gru_step(xp, h, h @ w_hh.T)

    def _lstm(self, xp: Tensor, state: tuple[Tensor, Tensor], w_hh: Tensor) -> tuple[Tensor, Tensor]:
        return lstm_step(xp, state[1], state[0] @ w_hh.T)


def elman_step(xp: Tensor, hp: Tensor, nonlinearity: str) -> Tensor:
    """``act(xp + hp)`` with ``xp = W_ih x + b`` and ``hp = W_hh h`` already computed."""
    pre = xp + hp
    return torch.relu(pre) if nonlinearity == "relu" else torch.tanh(pre)


def gru_step(xp: Tensor, h: Tensor, hp: Tensor) -> Tensor:
    """GRU update from the input projection ``xp`` and the hidden projection ``hp`` (gates r, z, n)."""
    H = h.shape[-1]
    r = torch.sigmoid(xp[..., :H] + hp[..., :H])
    z = torch.sigmoid(xp[..., H:2 * H] + hp[..., H:2 * H])
    n = torch.tanh(xp[..., 2 * H:] + r * hp[..., 2 * H:])
    return (1 - z) * n + z * h


def lstm_step(xp: Tensor, c: Tensor, hp: Tensor) -> tuple[Tensor, Tensor]:
    """LSTM update (gates i, f, g, o) from ``xp``, the cell state and the hidden projection ``hp``."""
    i, f, g, o = (xp + hp).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def check_hidden(hidden: Sequence[int]) -> None:
    """Refuse an empty list of layer sizes, or one with a size that is not a positive integer (a model
    building other modules first calls it before any, so that its seeded initialisation is unchanged)."""
    if len(hidden) == 0:
        raise ValueError("hidden must list at least one layer size")
    for size in hidden:
        check_size("each hidden size", size)


class RNNStack(nn.Module):
    """Layers of :class:`RecurrentLayer`; ``hidden`` lists each layer's size."""

    def __init__(self, input_size: int, hidden: Sequence[int], cell: str = "elman", nonlinearity: str = "tanh",
                 bias: bool = True) -> None:
        super().__init__()
        check_hidden(hidden)
        sizes = [input_size, *hidden]
        self.layers = nn.ModuleList(RecurrentLayer(a, b, cell, nonlinearity, bias) for a, b in zip(sizes, sizes[1:]))

    @property
    def hidden_size(self) -> int:
        last: RecurrentLayer = self.layers[-1]  # type: ignore[assignment]  # ModuleList items are Modules
        return last.hidden_size

    def forward(self, x: Tensor, states: list[State] | None = None) -> tuple[Tensor, list[State]]:
        finals = []
        for i, layer in enumerate(self.layers):
            x, s = layer(x, None if states is None else states[i])
            finals.append(s)
        return x, finals


def recurrent_layers(model: nn.Module) -> list[RecurrentLayer]:
    """Every recurrent layer of ``model`` in registration order."""
    return [m for m in model.modules() if isinstance(m, RecurrentLayer)]
