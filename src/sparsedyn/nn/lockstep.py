"""Members' parameters that sit side by side in one flat autograd leaf: their stacked tensor is a view of it.

A stacked forward (:func:`~sparsedyn.nn.fused_rk4.stack_members`) stacks the members' weights with
``torch.stack``: a copy in the forward, and in the backward an ``unbind`` and one gradient accumulation per
member and tensor (486 of them for 81 small MLP members, ~2 ms of a 19 ms lockstep step). A lockstep job whose
Adam keeps every member's parameters in flat buffers (:class:`~sparsedyn.flat_adam.FlatAdam`) can lay them out
slot by slot (every member's first weight, then every member's first bias, ...) and :func:`register` each slot
here. The stacked tensor of a registered slot is then a view of the buffer, which is itself a leaf: the forward
copies nothing and the backward accumulates every member's gradient into one flat gradient.

The view is used only while it holds exactly what ``torch.stack`` would: the very tensors registered, in their
order, each still stored at its place in the leaf (a parameter given new storage is not aliased). Each use is
recorded (:func:`used`), so that the owner knows whether a step's gradients all went into the flat leaf.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor


@dataclass(eq=False)
class Slot:
    """One parameter of every member (``members``, in order), stored contiguously in ``leaf`` from element
    ``offset`` on; ``ptrs`` their data pointers when registered."""

    leaf: Tensor
    offset: int
    members: tuple[Tensor, ...]
    ptrs: tuple[int, ...] = field(init=False)
    used: bool = False

    def __post_init__(self) -> None:
        self.ptrs = tuple(t.data_ptr() for t in self.members)

    def holds(self, tensors: Sequence[Tensor]) -> bool:
        """Whether ``tensors`` are this slot's members, in order, each still a view at its place in the leaf."""
        return (len(tensors) == len(self.members) and all(map(operator.is_, tensors, self.members))
                and tuple(map(Tensor.data_ptr, tensors)) == self.ptrs)  # loops in C: a step reads every slot

    def view(self) -> Tensor:
        """The slot's part of the leaf as the stacked tensor ``(members, *shape)``, in the autograd graph."""
        first = self.members[0]
        return self.leaf.narrow(0, self.offset, first.numel() * len(self.members)).view(len(self.members),
                                                                                       *first.shape)


_SLOTS: dict[int, Slot] = {}  # id of a slot's first member -> the slot (the slot holds the tensor: no id reuse)


def register(slot: Slot) -> None:
    """Let :func:`alias` read ``slot``'s members as a view of its leaf (until :func:`unregister`)."""
    _SLOTS[id(slot.members[0])] = slot


def unregister(slot: Slot) -> None:
    if _SLOTS.get(id(slot.members[0])) is slot:
        del _SLOTS[id(slot.members[0])]


def alias(tensors: Sequence[Tensor]) -> Tensor | None:
    """The registered slot's view of the leaf for ``tensors`` (what ``torch.stack(tensors)`` holds), or None."""
    slot = _SLOTS.get(id(tensors[0])) if tensors else None
    if slot is None or not slot.holds(tensors):
        return None
    slot.used = True
    return slot.view()


def used(slots: Sequence[Slot]) -> bool:
    """Whether every one of ``slots`` was aliased since :func:`forget_uses`."""
    return all(slot.used for slot in slots)


def forget_uses(slots: Sequence[Slot]) -> None:
    """Start a step: no slot counts as read."""
    for slot in slots:
        slot.used = False

