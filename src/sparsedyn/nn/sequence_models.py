"""RNN models of the [MODULI] tasks: path integration (navigation) and sequence regression (adding)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .rnn import RNNStack


class PathIntegrationRNN(nn.Module):
    """Velocity in, place-cell logits out (Sorscher et al.): ``h0 = encoder(place code at start)``.

    ``forward(velocity (T, B, 2), start_code (B, Np)) -> logits (T, B, Np)``.
    """

    def __init__(self, n_place_cells: int, hidden: Sequence[int], cell: str = "elman", nonlinearity: str = "relu",
                 bias: bool = False) -> None:
        super().__init__()
        self.encoder = nn.Linear(n_place_cells, hidden[0], bias=False)
        self.rnn = RNNStack(2, hidden, cell, nonlinearity, bias)
        self.decoder = nn.Linear(hidden[-1], n_place_cells, bias=False)

    def forward(self, velocity: Tensor, start_code: Tensor) -> Tensor:
        h0 = self.encoder(start_code)
        first = (h0, torch.zeros_like(h0)) if self.rnn.layers[0].cell == "lstm" else h0
        out, _ = self.rnn(velocity, [first] + [None] * (len(self.rnn.layers) - 1))
        return self.decoder(out)


class SequenceRegressor(nn.Module):
    """An RNN stack read out linearly at the last time step: ``(T, B, in) -> (B,)``."""

    def __init__(self, input_size: int, hidden: Sequence[int], cell: str = "elman", nonlinearity: str = "tanh",
                 bias: bool = True) -> None:
        super().__init__()
        self.rnn = RNNStack(input_size, hidden, cell, nonlinearity, bias)
        self.head = nn.Linear(hidden[-1], 1)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out[-1]).squeeze(-1)
