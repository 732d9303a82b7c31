"""Vector fields: plain/gated MLPs, batched per-output networks, and LassoNet's skip field.

Every field exposes ``chain_product(transform)``: the product, last layer to first, of
``transform(layer)`` (a matrix of the layer's weight shape). With ``transform`` the gate
probabilities this is PathReg's ``A_z``; with ``|W|`` it is C-NODE's path-weight matrix;
with ``W != 0`` the structural dependency. ``path_weights`` adds what bypasses the chain
(LassoNet's linear skip).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

LayerTransform = Callable[[nn.Module], Tensor]


@runtime_checkable
class LayerChain(Protocol):
    """The field contract the path-based methods and read-outs rely on (gates, PathReg, C-NODE,
    LassoNet): the weighted layers input to output, and the product of a per-layer transform over them."""

    n_in: int
    n_out: int

    def chain(self) -> list[nn.Module]: ...

    def chain_product(self, transform: LayerTransform) -> Tensor: ...

    def chain_entry_sum(self, transform: LayerTransform) -> Tensor:
        """The sum of ``chain_product(transform)``'s entries, ``1^T M_L ... M_1 1``, by matrix-vector products
        from the inputs' side (the (n_out, n_in) product is never formed)."""
        ...

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid, "silu": nn.SiLU,
}


def activation(name: str) -> nn.Module:
    """An activation module by name (tanh, relu, elu, softplus, sigmoid, silu)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}") from None


def _chain(layers: Iterable[nn.Module], transform: LayerTransform, summed_inputs: bool) -> Tensor:
    """``transform(layer_L) @ ... @ transform(layer_1)`` (batched over leading axes, as a GroupedMLP's blocks);
    with ``summed_inputs`` the first factor is summed over its inputs, so every product is matrix-vector."""
    it = iter(layers)  # not layers[1:]: slicing a ModuleList builds a new module
    out = transform(next(it))
    if summed_inputs:
        out = out.sum(dim=-1, keepdim=True)
    for layer in it:
        out = transform(layer) @ out
    return out


def check_size(name: str, value: object) -> None:
    """Refuse a layer size that is not a positive integer (ints and numpy integers pass; 2.5, "2" and
    True do not; torch itself accepts 0 and builds an empty model that fails later)."""
    try:
        size = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        size = 0
    if isinstance(value, bool) or size < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_sizes(n_in: int, n_out: int, hidden: Sequence[int]) -> None:
    for label, v in [("n_in", n_in), ("n_out", n_out), *[("hidden", h) for h in hidden]]:
        check_size(label, v)


class MLP(nn.Module):
    """``n_in -> hidden... -> n_out`` with ``activation`` between layers (autonomous field)."""

    def __init__(
        self, n_in: int, n_out: int, hidden: Sequence[int] = (64, 64), activation_name: str = "tanh",
        bias: bool = True,
    ) -> None:
        super().__init__()
        _check_sizes(n_in, n_out, hidden)
        self.n_in, self.n_out, self.hidden = n_in, n_out, tuple(hidden)
        self.activation_name = activation_name
        sizes = [n_in, *hidden, n_out]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(sizes, sizes[1:]))
        self.act = activation(activation_name)

    def forward(self, x: Tensor) -> Tensor:
        # no ``self.layers[:-1]``: slicing a ModuleList builds a new module on every call (~16 us each)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == last else self.act(layer(x))
        return x

    def chain(self) -> list[nn.Module]:
        return list(self.layers)

    def chain_product(self, transform: LayerTransform) -> Tensor:
        return self._chain(transform, summed_inputs=False)

    def chain_entry_sum(self, transform: LayerTransform) -> Tensor:
        return self._chain(transform, summed_inputs=True).sum()

    def _chain(self, transform: LayerTransform, summed_inputs: bool) -> Tensor:
        return _chain(self.layers, transform, summed_inputs)

    def path_weights(self, transform: LayerTransform) -> Tensor:
        return self.chain_product(transform)


class GroupedLinear(nn.Module):
    """``groups`` independent linear maps, weight ``(groups, out, in)``, applied batched.

    Input ``(B, in)`` (shared by all groups) or ``(B, groups, in)``; output ``(B, groups, out)``.
    """

    def __init__(self, groups: int, n_in: int, n_out: int, bias: bool = True) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(groups, n_out, n_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, n_out).uniform_(-bound, bound)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        g, o, i = self.weight.shape
        if x.dim() == 2:  # shared input: one (g*o, i) matmul
            bias = None if self.bias is None else self.bias.reshape(g * o)
            return torch.nn.functional.linear(x, self.weight.reshape(g * o, i), bias).view(-1, g, o)
        y = torch.bmm(x.transpose(0, 1), self.weight.transpose(1, 2)).transpose(0, 1)  # (B, g, o)
        return y if self.bias is None else y + self.bias


class GroupedMLP(nn.Module):
    """One small MLP per output variable (Bellot et al.), as one batched module.

    Network ``i`` maps all ``n_in`` inputs to output ``i``; its first-layer input columns
    ``layers[0].weight[i, :, k]`` are GroupLasso's groups.
    """

    def __init__(
        self, n_in: int, n_out: int, hidden: Sequence[int] = (16,), activation_name: str = "tanh",
    ) -> None:
        super().__init__()
        _check_sizes(n_in, n_out, hidden)
        self.n_in, self.n_out, self.hidden = n_in, n_out, tuple(hidden)
        self.activation_name = activation_name
        sizes = [n_in, *hidden, 1]
        self.layers = nn.ModuleList(GroupedLinear(n_out, a, b) for a, b in zip(sizes, sizes[1:]))
        self.act = activation(activation_name)

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1  # iterate, never slice: see MLP.forward
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == last else self.act(layer(x))
        return x.squeeze(-1)

    def chain(self) -> list[nn.Module]:
        return list(self.layers)

    def chain_product(self, transform: LayerTransform) -> Tensor:
        return self._chain(transform, summed_inputs=False).squeeze(1)  # (n_out, n_in): row i from network i

    def chain_entry_sum(self, transform: LayerTransform) -> Tensor:
        return self._chain(transform, summed_inputs=True).sum()

    def _chain(self, transform: LayerTransform, summed_inputs: bool) -> Tensor:
        return _chain(self.layers, transform, summed_inputs)  # (n_out, h, n_in) blocks, batched products

    def path_weights(self, transform: LayerTransform) -> Tensor:
        return self.chain_product(transform)


class SkipField(nn.Module):
    """LassoNet's inner field ``f(x) = S x + h(x)``: a bias-free linear skip plus a net."""

    net: Any  # the wrapped field (a LayerChain)

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.n_in, self.n_out = self.net.n_in, self.net.n_out
        self.skip = nn.Linear(self.n_in, self.n_out, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.net(x)

    def chain(self) -> list[nn.Module]:
        return self.net.chain()

    def chain_product(self, transform: LayerTransform) -> Tensor:
        return self.net.chain_product(transform)

    def chain_entry_sum(self, transform: LayerTransform) -> Tensor:
        return self.net.chain_entry_sum(transform)

    def path_weights(self, transform: LayerTransform) -> Tensor:
        return self.net.path_weights(transform) + transform(self.skip)
