"""Magnitude pruning with masks: global or per tensor, one-shot or gradual (linear / cubic)."""

from __future__ import annotations

import torch
from torch import nn

from ..nn.masks import add_mask, mask_of
from ..nn.prunable import prunable_weights
from .base import Method, ParamError, check_choice


def schedule_sparsity(
    t: float, final: float, start: float, end: float, initial: float = 0.0, kind: str = "linear"
) -> float:
    """Target sparsity at time ``t`` for a schedule from ``initial`` (at ``start``) to ``final`` (at ``end``).

    linear: ``s0 + (sf - s0) * frac``; cubic (Zhu & Gupta 2017): ``sf + (s0 - sf)(1 - frac)^3``;
    ``frac = clamp((t - start) / (end - start), 0, 1)``. Before ``start`` the sparsity is 0.
    """
    if t < start:
        return 0.0
    frac = 1.0 if end <= start else min(max((t - start) / (end - start), 0.0), 1.0)
    if kind == "linear":
        return initial + (final - initial) * frac
    if kind == "cubic":
        return final + (initial - final) * (1.0 - frac) ** 3
    raise ValueError(f"schedule kind must be 'linear' or 'cubic', got {kind!r}")


def _targets(model: nn.Module, include: str = "all") -> list[tuple[nn.Module, str]]:
    """Prunable weights; ``include="recurrent"`` keeps only recurrent matrices (``weight_hh``)."""
    return [(module, attr) for _, module, attr in prunable_weights(model)
            if include == "all" or attr == "weight_hh"]


def prune_to(model: nn.Module, sparsity: float, scope: str = "global", include: str = "all") -> None:
    """Zero the smallest-magnitude effective weights so that exactly ``round(s * N)`` are pruned.

    Monotone: already-pruned weights have magnitude 0 and stay pruned. ``scope="per_tensor"``
    applies the same fraction within each tensor. Requires masks (see :func:`add_masks`).
    """
    targets = _targets(model, include)
    if not targets:
        raise ValueError(f"no weights to prune (include={include!r})")
    masks = [mask_of(m, a) for m, a in targets]
    if any(mk is None for mk in masks):
        raise RuntimeError("prune_to needs masks on every prunable weight: call prepare(model) first")
    with torch.no_grad():
        mags = [getattr(m, a).detach().abs().flatten() for m, a in targets]
        groups = [list(range(len(targets)))] if scope == "global" else [[i] for i in range(len(targets))]
        for group in groups:
            pooled = torch.cat([mags[i] for i in group])
            k = int(round(sparsity * pooled.numel()))
            keep = torch.ones_like(pooled)
            if k > 0:
                keep[torch.argsort(pooled, stable=True)[:k]] = 0.0
            offset = 0
            for i in group:
                size = mags[i].numel()
                mask = masks[i]
                assert mask is not None
                new = keep[offset:offset + size].view_as(mask.mask)
                mask.mask.mul_(new)  # monotone: never revive a pruned weight
                offset += size


class MagnitudePruning(Method):
    """Prune the prunable weights by magnitude under masks.

    Args:
        sparsity: final sparsity ``s_f`` in [0, 1).
        scope: ``"global"`` (pool all tensors) or ``"per_tensor"``.
        schedule: ``"oneshot"`` (prune to ``s_f`` at the end of epoch ``start``),
            ``"linear"`` (the [MODULI] schedule, once per epoch) or ``"cubic"`` (Zhu & Gupta).
        start, end: epochs (completed-epoch counts) between which the schedule runs.
        initial_sparsity: ``s_0`` of the gradual schedule.
        include: ``"all"`` prunable weights or only the ``"recurrent"`` matrices ``W_hh``.
    """

    name = "magnitude"
    strength = "sparsity"
    penalty_strength = False
    stackable_params = ("sparsity",)

    def __init__(
        self, sparsity: float = 0.9, scope: str = "global", schedule: str = "oneshot", start: int = 1,
        end: int | None = None, initial_sparsity: float = 0.0, include: str = "all",
    ) -> None:
        self.include = check_choice("include", include, ("all", "recurrent"))
        if not 0.0 <= float(sparsity) < 1.0:
            raise ParamError("sparsity", f"sparsity must be in [0, 1), got {sparsity}")
        if not 0.0 <= float(initial_sparsity) <= float(sparsity):
            raise ParamError("initial_sparsity", f"initial_sparsity must be in [0, sparsity], got {initial_sparsity}")
        self.sparsity, self.initial_sparsity = float(sparsity), float(initial_sparsity)
        self.scope = check_choice("scope", scope, ("global", "per_tensor"))
        self.schedule = check_choice("schedule", schedule, ("oneshot", "linear", "cubic"))
        if int(start) < 0:
            raise ParamError("start", f"start must be >= 0, got {start}")
        if self.schedule != "oneshot" and (end is None or int(end) < int(start)):
            raise ParamError("end", f"end must be given and >= start ({start}) for a gradual schedule, got {end}")
        self.start, self.end = int(start), (int(end) if end is not None else int(start))

    def target(self, epoch: int) -> float:
        """The sparsity the schedule asks for after ``epoch`` completed epochs."""
        if self.schedule == "oneshot":
            return self.sparsity if epoch >= self.start else 0.0
        return schedule_sparsity(epoch, self.sparsity, self.start, self.end, self.initial_sparsity,
                                 self.schedule)

    def prepare(self, model: nn.Module) -> nn.Module:
        for module, attr in _targets(model, self.include):
            add_mask(module, attr)
        return model

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        s = self.target(epoch)
        if s > 0:
            prune_to(model, s, self.scope, self.include)
