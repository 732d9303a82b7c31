"""Pruned models -> inference modules that multiply by CSR matrices where that is faster.

The CSR products use scipy (measured on this project's CPU machine: a 1024 x 1024 matrix at
98% sparsity times a vector takes ~20 us in scipy, ~80 us with ``torch.mv`` on a torch CSR
tensor and ~5 ms with ``torch.sparse_csr @ (n, 1)``).

Each weight matrix is read once from the model's effective weights (eval mode: mask x
deterministic gate x weight). With ``policy="auto"`` the exporter times a CSR and a dense
product for that matrix at the expected batch size and keeps the faster one; ``"csr"`` and
``"dense"`` force a choice. Outputs equal the masked dense model's to float rounding.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.special import expit
from torch import Tensor, nn

from .nn.fields import MLP, activation
from .nn.modes import eval_mode
from .nn.rnn import RecurrentLayer, RNNStack, elman_step, gru_step, lstm_step


class SparseLinear(nn.Module):
    """``x (B, in) -> x W^T (+ b)`` with ``W`` held as a scipy CSR matrix or a dense tensor."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None, fmt: str = "auto", batch: int = 1) -> None:
        super().__init__()
        weight = weight.detach().float().contiguous()
        if fmt == "auto":
            fmt = fastest_format(weight, batch)
        if fmt not in ("csr", "dense"):
            raise ValueError(f"format must be 'auto', 'csr' or 'dense', got {fmt!r}")
        self.format = fmt
        self.shape = tuple(weight.shape)
        self.nnz = int((weight != 0).sum())
        self.density = self.nnz / weight.numel()
        self.csr = sp.csr_matrix(weight.numpy()) if fmt == "csr" else None
        self.weight: Tensor | None
        self.bias: Tensor | None
        self.register_buffer("weight", None if fmt == "csr" else weight)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    def forward(self, x: Tensor) -> Tensor:
        if self.csr is not None:
            xn = x.detach().numpy()
            y = torch.from_numpy(self.csr @ xn[0])[None] if x.shape[0] == 1 else torch.from_numpy((self.csr @ xn.T).T)
        else:
            assert self.weight is not None
            y = x @ self.weight.T
        return y if self.bias is None else y + self.bias


def fastest_format(weight: Tensor, batch: int = 1, repeats: int = 30) -> str:
    """Time ``x W^T`` with W as scipy CSR and as a dense tensor for ``batch`` rows; return the faster."""
    x = torch.randn(batch, weight.shape[1])
    csr = sp.csr_matrix(weight.numpy())
    xn = np.ascontiguousarray(x.numpy().T)
    ops = {"dense": lambda: x @ weight.T, "csr": (lambda: csr @ xn[:, 0]) if batch == 1 else (lambda: csr @ xn)}
    best = {}
    for name, op in ops.items():
        op()  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            op()
        best[name] = time.perf_counter() - t0
    return min(best, key=lambda name: best[name])


class SparseRecurrentLayer(nn.Module):
    """Inference twin of :class:`~sparsedyn.nn.rnn.RecurrentLayer` (same equations)."""

    def __init__(self, layer: RecurrentLayer, fmt: str = "auto", batch: int = 1) -> None:
        super().__init__()
        self.cell, self.nonlinearity, self.hidden_size = layer.cell, layer.nonlinearity, layer.hidden_size
        with eval_mode(layer), torch.no_grad():
            self.ih = SparseLinear(layer.weight_ih, layer.bias, fmt, batch)
            self.hh = SparseLinear(layer.weight_hh, None, fmt, batch)

    @torch.no_grad()
    def forward(self, x: Tensor, state=None):
        xp = self.ih(x.reshape(-1, x.shape[-1])).view(x.shape[0], x.shape[1], -1)  # all steps at once
        B, H = x.shape[1], self.hidden_size
        if state is None:
            h = x.new_zeros(B, H)
            state = (h, h.clone()) if self.cell == "lstm" else h
        if self.hh.format == "csr":
            return self._forward_numpy(xp, state)
        outs = []
        for t in range(x.shape[0]):
            state = self._step(xp[t], state)
            outs.append(state[0] if self.cell == "lstm" else state)
        return torch.stack(outs), state

    def _step(self, xp: Tensor, state):
        if self.cell == "elman":
            return elman_step(xp, self.hh(state), self.nonlinearity)
        if self.cell == "gru":
            return gru_step(xp, state, self.hh(state))
        return lstm_step(xp, state[1], self.hh(state[0]))

    def _forward_numpy(self, xp: Tensor, state):
        """The recurrence in numpy around scipy's CSR product: no per-step torch/numpy crossings."""
        csr, H, xp_np = self.hh.csr, self.hidden_size, xp.numpy()
        single = xp_np.shape[1] == 1

        def hh(h):
            return (csr @ h[0])[None] if single else (csr @ h.T).T

        if self.cell == "lstm":
            h, c = (s.numpy() for s in state)
        else:
            h = state.numpy()
        outs = np.empty((xp_np.shape[0], xp_np.shape[1], H), dtype=np.float32)
        for t in range(xp_np.shape[0]):
            if self.cell == "elman":
                pre = xp_np[t] + hh(h)
                h = np.maximum(pre, 0) if self.nonlinearity == "relu" else np.tanh(pre)
            elif self.cell == "gru":
                hp, xt = hh(h), xp_np[t]
                r, z = expit(xt[:, :H] + hp[:, :H]), expit(xt[:, H:2 * H] + hp[:, H:2 * H])
                h = (1 - z) * np.tanh(xt[:, 2 * H:] + r * hp[:, 2 * H:]) + z * h
            else:
                g = xp_np[t] + hh(h)
                c = expit(g[:, H:2 * H]) * c + expit(g[:, :H]) * np.tanh(g[:, 2 * H:3 * H])
                h = expit(g[:, 3 * H:]) * np.tanh(c)
            outs[t] = h
        final = (torch.from_numpy(h), torch.from_numpy(c)) if self.cell == "lstm" else torch.from_numpy(h)
        return torch.from_numpy(outs), final

class SparseRNNStack(nn.Module):
    def __init__(self, layers: Sequence[SparseRecurrentLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    @torch.no_grad()
    def forward(self, x: Tensor, states=None):
        finals = []
        for i, layer in enumerate(self.layers):
            x, s = layer(x, None if states is None else states[i])
            finals.append(s)
        return x, finals


class SparseMLP(nn.Module):
    """Inference twin of an MLP vector field: ``field(x)`` with CSR/dense layers."""

    def __init__(self, mlp: MLP, fmt: str = "auto", batch: int = 1) -> None:
        super().__init__()
        with eval_mode(mlp), torch.no_grad():
            linears: list[Any] = list(mlp.layers)
            self.layers = nn.ModuleList(SparseLinear(la.weight, la.bias, fmt, batch) for la in linears)
        self.act = activation(mlp.activation_name)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1  # iterate, never slice a ModuleList (a new module per call)
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == last else self.act(layer(x))
        return x


def export(model: nn.Module, fmt: str = "auto", batch: int = 1) -> nn.Module:
    """Export a pruned :class:`RNNStack`, :class:`RecurrentLayer` or :class:`MLP` (e.g. a NODE field)."""
    if isinstance(model, RNNStack):
        layers: list[Any] = list(model.layers)
        return SparseRNNStack([SparseRecurrentLayer(layer, fmt, batch) for layer in layers])
    if isinstance(model, RecurrentLayer):
        return SparseRecurrentLayer(model, fmt, batch)
    if isinstance(model, MLP):
        return SparseMLP(model, fmt, batch)
    field = getattr(model, "field", None)
    if isinstance(field, MLP):
        return SparseMLP(field, fmt, batch)
    raise TypeError(f"cannot export {type(model).__name__}: expected an RNNStack, RecurrentLayer, MLP "
                    "or a NODE with an MLP field")
