"""Which tensors count as prunable weights, in one place (analysis and pruning agree)."""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from .fields import GroupedLinear

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, GroupedLinear)


def prunable_weights(model: nn.Module) -> Iterator[tuple[str, nn.Module, str]]:
    """Yield ``(qualified_name, module, attribute)`` for every prunable weight of ``model``.

    Prunable: the ``weight`` of linear and grouped-linear layers, and any attribute a module
    lists in ``prunable_attributes`` (recurrent matrices of RNN cells). Biases are not.
    """
    for mod_name, module in model.named_modules():
        attrs: tuple[str, ...] = ()
        if isinstance(module, PRUNABLE_TYPES):
            attrs = ("weight",)
        attrs = attrs + tuple(getattr(module, "prunable_attributes", ()))
        for attr in attrs:
            yield (f"{mod_name}.{attr}" if mod_name else attr), module, attr
