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
a phase that freezes some tensors); a change of settings alone (a schedule moving every member's learning rate)
only retunes them. Optimizers that :func:`~sparsedyn.joint_adam.joint_adam_step` does not
cover are left to it, and it declines them in turn; shared or complex parameters and sparse gradients go to
:func:`~sparsedyn.joint_adam.joint_adam_step` as well.

The parameters are laid out slot by slot (every member's first weight side by side, then every member's first
bias, ...), and each slot is registered with :mod:`sparsedyn.nn.lockstep`: a stacked forward then reads the
members' tensors as a view of the parameter buffer, which is one autograd leaf, and the backward accumulates all
members' gradients into its one kept gradient (every ``.grad`` a view into it). :meth:`FlatAdam.zero_grad` zeroes
that gradient in place when the step's forward read every buffered tensor through its slot (so each gets a
gradient, as the members' own leaves would); otherwise it lets it go and the members' gradients are set to None
as usual, the leaf's part handed to them before the step (:meth:`_Arena.aliased_grads`). A lockstep step is
``begin_step()``, the forward, ``zero_grad(optimizers)`` (falling back to each member's own), the backward,
``step(optimizers)``.

While the buffers exist a parameter's storage is a lockstep's buffer: :meth:`FlatAdam.release` gives every
parameter and state tensor its own storage again (a member pickled after training must not carry the others'
weights), and :func:`sparsedyn.io.save_torch` writes views as their own tensors.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.optim.adam import adam

from .io import is_storage_view as _is_view
from .joint_adam import joinable, joint_adam_step
from .nn import lockstep

_STATE = ("exp_avg", "exp_avg_sq")
_GRAD = operator.attrgetter("grad")


def _setting(group: dict) -> tuple:
    return (group["lr"], *group["betas"], group["eps"], group["weight_decay"], group["decoupled_weight_decay"])


class _Arena:
    """One setting's parameters (of any number of optimizers) and their Adam state in flat buffers.

    The parameters are laid out slot by slot: the k-th parameter of every optimizer (a lockstep's members, in
    order) side by side, then the next; each such run of equal shapes is a :class:`~sparsedyn.nn.lockstep.Slot`,
    so a stacked forward of the members reads it as a view of ``param``, which is an autograd leaf whose
    gradient ``grad`` is kept across steps (every parameter's ``.grad`` a view into it, zeroed in place)."""

    def __init__(self, setting: tuple, entries: list[tuple[torch.optim.Optimizer, Tensor]], step: float) -> None:
        self.setting = setting
        optimizers = {id(opt): opt for opt, _ in entries}.values()
        position = {id(p): k for opt in optimizers for k, p in enumerate(_params(opt))}
        entries = sorted(entries, key=lambda e: position[id(e[1])])  # stable: members keep their order
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
        self.offsets: list[int] = []
        offset = 0
        for i, (opt, p) in enumerate(entries):
            n = p.numel()
            p.data = self.param[offset:offset + n].view_as(p)
            state = opt.state[p]
            state["step"] = self.steps[i]
            state["exp_avg"] = self.exp_avg[offset:offset + n].view_as(p)
            state["exp_avg_sq"] = self.exp_avg_sq[offset:offset + n].view_as(p)
            self.views.append((state, state["step"], state["exp_avg"], state["exp_avg_sq"]))
            self.offsets.append(offset)
            offset += n
        self.optimizers = [opt for opt, _ in entries]
        self.states = [opt.state for opt in self.optimizers]
        self.state_dicts = list({id(opt): (opt, opt.state) for opt in self.optimizers}.values())
        self.data_ptrs = [p.data_ptr() for p in self.params]
        self.param.requires_grad_(True)
        self.slots = _slots(self.param, self.params, self.offsets, [position[id(p)] for p in self.params])
        for slot in self.slots:
            lockstep.register(slot)
        self.grad = torch.zeros_like(self.param)
        self.grad_views: list[Tensor] = []

    def attach(self, flat: Tensor) -> None:
        """Keep ``flat`` (this step's gradients, in the arena's layout) as the leaf's gradient and give every
        parameter a view of it as its ``.grad``: later steps accumulate into it in place."""
        with torch.no_grad():
            self.grad.copy_(flat)
        self.param.grad = self.grad
        self.grad_views = [self.grad[o:o + p.numel()].view_as(p) for p, o in zip(self.params, self.offsets)]
        for p, g in zip(self.params, self.grad_views):
            p.grad = g

    def attached(self) -> bool:
        """Whether every parameter's ``.grad`` and the leaf's are still this arena's views."""
        return (self.param.grad is self.grad and len(self.grad_views) == len(self.params)
                and all(map(operator.is_, map(_GRAD, self.params), self.grad_views)))  # loops in C

    def detach_grads(self) -> None:
        """Stop accumulating into the kept gradient (the members' ``.grad`` are set to None by the caller)."""
        self.param.grad = None
        self.grad_views = []

    def aliased_grads(self) -> None:
        """After a step whose gradients were not zeroed in place (:meth:`FlatAdam.zero_grad`): give the members
        of the slots this step's forward read through the leaf their part of the leaf's gradient (added to any
        gradient they have), as the members' own leaves would have received it."""
        leaf_grad = self.param.grad
        self.param.grad = None
        if leaf_grad is None or leaf_grad is self.grad:
            return
        for slot in self.slots:
            if not slot.used:
                continue
            size = slot.members[0].numel()
            for k, p in enumerate(slot.members):
                part = leaf_grad[slot.offset + k * size:slot.offset + (k + 1) * size].view_as(p)
                p.grad = part if p.grad is None else p.grad + part

    def close(self) -> None:
        """Unregister the slots, and give every gradient view its own storage (a member keeps its last gradient
        as after any step)."""
        for slot in self.slots:
            lockstep.unregister(slot)
        for p, g in zip(self.params, self.grad_views):
            if p.grad is g:
                p.grad = g.clone()
        self.param.grad = None
        self.param.requires_grad_(False)

    def intact(self, placed: bool = False) -> bool:
        """Whether every parameter and state tensor is still the view this arena made (a resume's
        ``load_state_dict`` or a method that swaps a parameter's storage breaks that), and no optimizer stepped
        its tensors on its own since (their step counts would differ from the arena's). ``placed``: the
        parameters' storage is known to be in place (this step's forward read every one through its slot,
        which checks that), so only the step counts and each optimizer's state dict are checked (the library
        never writes an optimizer's state but through ``load_state_dict``, which replaces that dict)."""
        if not bool((self.steps == self.step_count).all()):
            return False
        if placed:  # only a load_state_dict replaces state tensors here, and it replaces the optimizer's state dict
            return all(opt.state is states for opt, states in self.state_dicts)
        for opt, states, p, ptr, (state, step, m, v) in zip(self.optimizers, self.states, self.params,
                                                             self.data_ptrs, self.views):
            if p.data_ptr() != ptr or opt.state is not states or states.get(p) is not state:
                return False
            if state.get("step") is not step or state.get("exp_avg") is not m or state.get("exp_avg_sq") is not v:
                return False
        return True

    def step(self, grads: list[Tensor] | None) -> None:
        """One Adam step of every parameter, on ``grads`` (one per parameter) or, with None, on the flat
        gradient the parameters' ``.grad`` views hold."""
        lr, beta1, beta2, eps, weight_decay, decoupled = self.setting
        with torch.no_grad():
            flat = self.grad if grads is None else torch.cat([g.reshape(-1) for g in grads])
            adam([self.param], [flat], [self.exp_avg], [self.exp_avg_sq], [], [self.step_count], foreach=True,
                 has_complex=False, decoupled_weight_decay=decoupled, amsgrad=False, beta1=beta1, beta2=beta2,
                 lr=lr, weight_decay=weight_decay, eps=eps, maximize=False)
            self.steps.add_(1.0)
        if grads is not None and lockstep.used(self.slots):  # the next steps can run on the flat gradient
            self.attach(flat)


def _tensors(layout: tuple) -> tuple:
    """A layout without its settings: which optimizers' tensors have gradients."""
    return tuple((opt, ids) for opt, _, ids in layout)


def _params(opt: torch.optim.Optimizer) -> list[Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]


def _slots(leaf: Tensor, params: list[Tensor], offsets: list[int], positions: list[int]) -> list[lockstep.Slot]:
    """Runs of consecutive parameters at the same position in their optimizers, of one shape: the slots."""
    slots, start = [], 0
    for k in range(1, len(params) + 1):
        if k == len(params) or positions[k] != positions[start] or params[k].shape != params[start].shape:
            slots.append(lockstep.Slot(leaf, offsets[start], tuple(params[start:k])))
            start = k
    return slots


class FlatAdam:
    """The joint Adam step of a lockstep job on flat buffers (see the module docstring). Use one per job:
    ``step(optimizers)`` after each backward, ``release()`` when the job ends (also after an error)."""

    def __init__(self) -> None:
        self._arenas: list[_Arena] = []
        self._layout: tuple | None = None
        self._declined: tuple | None = None
        self._placed: dict[tuple[int, int], tuple[torch.optim.Optimizer, Tensor]] = {}  # ever placed, to release
        self._built_for: tuple[int, ...] = ()  # the optimizers the arenas were built for, in order
        self._outside: list[Tensor] = []  # their parameters in no arena (no gradient when built)
        self._built_groups: tuple = ()
        self._flat_grads = False  # this step's gradients were zeroed in place and accumulate in the arenas

    def begin_step(self) -> None:
        """Call before a lockstep step's forward: forget which slots earlier forwards (an evaluation) read."""
        for arena in self._arenas:
            lockstep.forget_uses(arena.slots)

    def zero_grad(self, optimizers: Sequence[torch.optim.Optimizer]) -> bool:
        """Between a step's forward and its backward: zero the arenas' kept gradients in place, where this
        step's forward read every arena parameter through the leaves (:mod:`~sparsedyn.nn.lockstep`) and every
        ``.grad`` is still the arena's view; True then. Every parameter then gets a gradient in the backward, as
        the members' own leaves would, so Adam steps the same tensors as after ``zero_grad(set_to_none=True)``.
        Otherwise (False) the kept gradients are let go and the caller sets the members' gradients to None."""
        self._flat_grads = False
        if (self._arenas and tuple(id(opt) for opt in optimizers) == self._built_for
                and all(lockstep.used(arena.slots) and arena.attached() for arena in self._arenas)):
            for arena in self._arenas:
                arena.grad.zero_()
            for p in self._outside:
                p.grad = None
            self._flat_grads = True
            return True
        for arena in self._arenas:
            arena.detach_grads()
        return False

    def step(self, optimizers: Sequence[torch.optim.Optimizer]) -> bool:
        """Step every optimizer of ``optimizers`` as its own ``step()`` would; False (and nothing done) where
        :func:`~sparsedyn.joint_adam.joint_adam_step` would decline them."""
        from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

        flat_grads, self._flat_grads = self._flat_grads, False
        if (not optimizers or _global_optimizer_pre_hooks or _global_optimizer_post_hooks
                or not all(joinable(opt) for opt in optimizers)):
            self._layout = None  # the caller steps them on its own: re-check the arenas next time
            for arena in self._arenas:
                arena.aliased_grads()
            return False
        if (flat_grads and tuple(id(opt) for opt in optimizers) == self._built_for
                and all(arena.intact(placed=True) for arena in self._arenas)  # zero_grad saw them attached
                and all(p.grad is None for p in self._outside)
                and (self._groups(optimizers) == self._built_groups or self._retune(optimizers))):
            for arena in self._arenas:  # every gradient accumulated in the arenas' kept buffers
                arena.step(None)
        else:
            for arena in self._arenas:
                arena.aliased_grads()
            # which tensors Adam steps (those with a gradient), under which settings: the arenas stand while this
            # and every view they made stay the same
            layout = tuple((id(opt), _setting(group), tuple(id(p) for p in group["params"] if p.grad is not None))
                           for opt in optimizers for group in opt.param_groups)
            intact = all(arena.intact() for arena in self._arenas)
            if layout != self._layout or not intact:
                if (intact and self._layout is not None and _tensors(layout) == _tensors(self._layout)
                        and self._retune(optimizers)):
                    pass  # only a setting moved (a schedule's learning rate): the arenas stand
                elif layout == self._declined or not self._build(optimizers):
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
        self._close()
        entries: dict[tuple, list[tuple[torch.optim.Optimizer, Tensor]]] = {}
        outside = []
        for opt in optimizers:
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        outside.append(p)
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
        self._built_for, self._outside = tuple(id(opt) for opt in optimizers), outside
        self._built_groups = self._groups(optimizers)
        return True

    def _retune(self, optimizers: Sequence[torch.optim.Optimizer]) -> bool:
        """Give each arena its parameters' new setting where only settings changed since the arenas were built
        and every arena's parameters still share one (a schedule moves every member's learning rate alike); False
        (nothing changed) otherwise."""
        groups = self._groups(optimizers)
        if [g[1:] for g in groups] != [g[1:] for g in self._built_groups]:
            return False
        setting_of = {id(p): _setting(group) for opt in optimizers for group in opt.param_groups
                      for p in group["params"]}
        settings: list[tuple] = []
        for arena in self._arenas:
            found = {setting_of.get(id(p)) for p in arena.params}
            setting = found.pop() if len(found) == 1 else None
            if setting is None:
                return False
            settings.append(setting)
        for arena, setting in zip(self._arenas, settings):
            arena.setting = setting
        self._built_groups = groups
        return True

    @staticmethod
    def _groups(optimizers: Sequence[torch.optim.Optimizer]) -> tuple:
        """Every parameter group's setting (a scheduler changes the learning rate) and parameter list (its
        identity and length): what the arenas were built for, checked on steps that skip the full layout."""
        return tuple((_setting(group), id(group["params"]), len(group["params"]))
                     for opt in optimizers for group in opt.param_groups)

    def _close(self) -> None:
        for arena in self._arenas:
            arena.close()
        self._arenas, self._built_for, self._outside = [], (), []

    def release(self) -> None:
        """Give every parameter, gradient and optimizer-state tensor ever placed in a buffer its own storage
        again, and stop aliasing the members' stacked tensors to the buffers."""
        self._close()
        for opt, p in self._placed.values():
            if _is_view(p):
                p.data = p.data.clone()
            if p.grad is not None and _is_view(p.grad):
                p.grad = p.grad.clone()
            state = opt.state.get(p, {})
            for name in ("step", *_STATE):
                if name in state and _is_view(state[name]):
                    state[name] = state[name].clone()
        self._arenas, self._layout, self._declined, self._placed = [], None, None, {}
        self._flat_grads = False
