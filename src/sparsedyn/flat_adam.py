"""Lockstep members' Adam steps as a few whole-buffer operations: parameters and moments in flat buffers.

:func:`~sparsedyn.joint_adam.joint_adam_step` steps many members' optimizers in one foreach call per setting,
but on the CPU a foreach call is still a loop over its tensors: at 81 small members (486 tensors) it ran a few
thousand tiny kernels, 6.6 ms of a 28 ms lockstep step. :class:`FlatAdam` keeps, per setting (learning rate,
betas, eps, weight decay; dtype and device), every member's parameters, first and second moments in one flat
buffer each, every parameter and every optimizer-state tensor a view into them, so an Adam step is one call of
``torch.optim.adam.adam`` on three flat tensors (the gradients concatenated into a fourth).

The numbers are those of each optimizer's own ``step()``: Adam is elementwise, and the same operations on the
same values give the same bits whether an element sits in a small tensor or in a long buffer (tests: bit for
bit against each member's own step, and a lockstep run against the same run alone). Adam leaves parameters
without a gradient untouched and keeps a step count per tensor: the buffers hold the parameters that have a
gradient, one arena per step count, and are rebuilt when that changes (members joining at different epochs,
a phase that freezes some tensors). Optimizers that :func:`~sparsedyn.joint_adam.joint_adam_step` does not
cover are left to it, and it declines them in turn; shared or complex parameters and sparse gradients go to
:func:`~sparsedyn.joint_adam.joint_adam_step` as well.

While the buffers exist a parameter's storage is a lockstep's buffer: :meth:`FlatAdam.release` gives every
parameter and state tensor its own storage again (a member pickled after training must not carry the others'
weights), and :func:`sparsedyn.io.save_torch` writes views as their own tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.optim.adam import adam

from .joint_adam import joinable, joint_adam_step

_STATE = ("exp_avg", "exp_avg_sq")


def _setting(group: dict) -> tuple:
    return (group["lr"], *group["betas"], group["eps"], group["weight_decay"], group["decoupled_weight_decay"])


class _Arena:
    """One setting's parameters (of any number of optimizers) and their Adam state in flat buffers."""

    def __init__(self, setting: tuple, entries: list[tuple[torch.optim.Optimizer, Tensor]], step: float) -> None:
        self.setting = setting
        self.params = [p for _, p in entries]
        with torch.no_grad():
            self.param = torch.cat([p.detach().reshape(-1) for p in self.params])
            moments = {}
            for name in _STATE:
                moments[name] = torch.cat([opt.state[p][name].detach().reshape(-1) if opt.state.get(p)
                                           else torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
                                           for opt, p in entries])
        self.exp_avg, self.exp_avg_sq = moments["exp_avg"], moments["exp_avg_sq"]
        scalar = torch.tensor(0.0).dtype  # Adam's own step dtype for a non-capturable optimizer
        self.step_count = torch.tensor(step, dtype=scalar)
        self.steps = torch.full((len(entries),), step, dtype=scalar)
        self.views: list[tuple[dict, Tensor, Tensor, Tensor]] = []
        offset = 0
        for i, (opt, p) in enumerate(entries):
            n = p.numel()
            p.data = self.param[offset:offset + n].view_as(p)
            state = opt.state[p]
            state["step"] = self.steps[i]
            state["exp_avg"] = self.exp_avg[offset:offset + n].view_as(p)
            state["exp_avg_sq"] = self.exp_avg_sq[offset:offset + n].view_as(p)
            self.views.append((state, state["step"], state["exp_avg"], state["exp_avg_sq"]))
            offset += n
        self.optimizers = [opt for opt, _ in entries]
        self.data_ptrs = [p.data_ptr() for p in self.params]

    def intact(self) -> bool:
        """Whether every parameter and state tensor is still the view this arena made (a resume's
        ``load_state_dict`` or a method that swaps a parameter's storage breaks that), and no optimizer stepped
        its tensors on its own since (their step counts would differ from the arena's)."""
        if not bool((self.steps == self.step_count).all()):
            return False
        for opt, p, ptr, (state, step, m, v) in zip(self.optimizers, self.params, self.data_ptrs, self.views):
            if p.data_ptr() != ptr or opt.state.get(p) is not state:
                return False
            if state.get("step") is not step or state.get("exp_avg") is not m or state.get("exp_avg_sq") is not v:
                return False
        return True

    def step(self, grads: list[Tensor]) -> None:
        lr, beta1, beta2, eps, weight_decay, decoupled = self.setting
        with torch.no_grad():
            flat = torch.cat([g.reshape(-1) for g in grads])
            adam([self.param], [flat], [self.exp_avg], [self.exp_avg_sq], [], [self.step_count], foreach=True,
                 has_complex=False, decoupled_weight_decay=decoupled, amsgrad=False, beta1=beta1, beta2=beta2,
                 lr=lr, weight_decay=weight_decay, eps=eps, maximize=False)
            self.steps.add_(1.0)


class FlatAdam:
    """The joint Adam step of a lockstep job on flat buffers (see the module docstring). Use one per job:
    ``step(optimizers)`` after each backward, ``release()`` when the job ends (also after an error)."""

    def __init__(self) -> None:
        self._arenas: list[_Arena] = []
        self._layout: tuple | None = None
        self._declined: tuple | None = None
        self._placed: dict[tuple[int, int], tuple[torch.optim.Optimizer, Tensor]] = {}  # ever placed, to release

    def step(self, optimizers: Sequence[torch.optim.Optimizer]) -> bool:
        """Step every optimizer of ``optimizers`` as its own ``step()`` would; False (and nothing done) where
        :func:`~sparsedyn.joint_adam.joint_adam_step` would decline them."""
        from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

        if (not optimizers or _global_optimizer_pre_hooks or _global_optimizer_post_hooks
                or not all(joinable(opt) for opt in optimizers)):
            self._layout = None  # the caller steps them on its own: re-check the arenas next time
            return False
        # which tensors Adam steps (those with a gradient), under which settings: the arenas stand while this
        # and every view they made stay the same
        layout = tuple((id(opt), _setting(group), tuple(id(p) for p in group["params"] if p.grad is not None))
                       for opt in optimizers for group in opt.param_groups)
        if layout != self._layout or not all(arena.intact() for arena in self._arenas):
            if layout == self._declined or not self._build(optimizers):
                self._layout, self._declined = None, layout
                return joint_adam_step(optimizers)
            self._layout = layout
        for arena in self._arenas:
            arena.step([p.grad for p in arena.params])  # type: ignore[misc]  # the layout says none is None
        for opt in optimizers:
            opt._opt_called = True  # type: ignore[attr-defined]  # what an LR scheduler's wrapped step() records
        return True

    def _build(self, optimizers: Sequence[torch.optim.Optimizer]) -> bool:
        """Place every parameter of ``optimizers`` that has a gradient, and its state, in one arena per
        setting, dtype, device and step count; False (nothing placed) where no flat step is possible: complex
        or shared parameters, or sparse gradients."""
        self._arenas = []
        entries: dict[tuple, list[tuple[torch.optim.Optimizer, Tensor]]] = {}
        for opt in optimizers:
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    if p.grad.is_sparse or p.is_complex():
                        return False
                    step = float(opt.state[p]["step"]) if opt.state.get(p) else 0.0
                    entries.setdefault((_setting(group), p.dtype, p.device, step), []).append((opt, p))
        params = [p for members in entries.values() for _, p in members]
        if len({p.data_ptr() for p in params}) != len(params):
            return False
        self._arenas = [_Arena(key[0], members, key[3]) for key, members in entries.items()]
        self._placed.update({(id(opt), id(p)): (opt, p) for members in entries.values() for opt, p in members})
        return True

    def release(self) -> None:
        """Give every parameter and optimizer-state tensor ever placed in a buffer its own storage again."""
        for opt, p in self._placed.values():
            if _is_view(p):
                p.data = p.data.clone()
            state = opt.state.get(p, {})
            for name in ("step", *_STATE):
                if name in state and _is_view(state[name]):
                    state[name] = state[name].clone()
        self._arenas, self._layout, self._declined, self._placed = [], None, None, {}


def _is_view(t: Tensor) -> bool:
    """Whether ``t`` is a part of a larger storage."""
    return t.untyped_storage().nbytes() > t.numel() * t.element_size()
