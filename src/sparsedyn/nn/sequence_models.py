"""RNN models of the [MODULI] tasks: path integration (navigation) and sequence regression (adding)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .fields import check_size
from .rnn import RNNStack, check_hidden


class PathIntegrationRNN(nn.Module):
    """Velocity in, place-cell logits out (Sorscher et al.): ``h0 = encoder(place code at start)``.

    ``forward(velocity (T, B, 2), start_code (B, Np)) -> logits (T, B, Np)``.
    """

    def __init__(self, n_place_cells: int, hidden: Sequence[int], cell: str = "elman", nonlinearity: str = "relu",
                 bias: bool = False) -> None:
        super().__init__()
        check_size("n_place_cells", n_place_cells)
        check_hidden(hidden)  # before the encoder: the modules are built in their seeded order
        self.encoder = nn.Linear(n_place_cells, hidden[0], bias=False)
        self.rnn = RNNStack(2, hidden, cell, nonlinearity, bias)
        self.decoder = nn.Linear(hidden[-1], n_place_cells, bias=False)

    def forward(self, velocity: Tensor, start_code: Tensor) -> Tensor:
        n_place = self.encoder.in_features
        if start_code.dim() != 2 or start_code.shape[1] != n_place:
            raise ValueError(f"start_code must have shape (batch, {n_place}), got {tuple(start_code.shape)}")
        h0 = self.encoder(start_code)
        first = (h0, torch.zeros_like(h0)) if self.rnn.layers[0].cell == "lstm" else h0
        out, _ = self.rnn(velocity, [first] + [None] * (len(self.rnn.layers) - 1))
        return self.decoder(out)


class SequenceRegressor(nn.Module):
    """An RNN stack read out linearly at the last time step: ``(T, B, in) -> (B,)``."""

    def __init__(self, input_size: int, hidden: Sequence[int], cell: str = "elman", nonlinearity: str = "tanh",
                 bias: bool = True) -> None:
        super().__init__()
        self.rnn = RNNStack(input_size, hidden, cell, nonlinearity, bias)  # validates the sizes
        self.head = nn.Linear(hidden[-1], 1)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out[-1]).squeeze(-1)


class RNNLanguageModel(nn.Module):
    """Embedding -> RNN stack -> decoder: ``forward(tokens (T, B), states) -> (logits (T, B, V), states)``.

    Untied by default; ``tie_weights`` shares the embedding and decoder matrices (then the
    last hidden size must equal the embedding size).
    """

    def __init__(self, vocab_size: int, embedding_size: int, hidden: Sequence[int], cell: str = "elman",
                 nonlinearity: str = "tanh", tie_weights: bool = False) -> None:
        super().__init__()
        check_size("vocab_size", vocab_size)
        check_size("embedding_size", embedding_size)
        check_hidden(hidden)
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.rnn = RNNStack(embedding_size, hidden, cell, nonlinearity, True)
        self.decoder = nn.Linear(hidden[-1], vocab_size)
        if tie_weights:
            if hidden[-1] != embedding_size:
                raise ValueError(f"tie_weights needs the last hidden size ({hidden[-1]}) to equal the "
                                 f"embedding size ({embedding_size})")
            self.decoder.weight = self.embedding.weight

    def forward(self, tokens: Tensor, states=None):
        out, states = self.rnn(self.embedding(tokens), states)
        return self.decoder(out), states

