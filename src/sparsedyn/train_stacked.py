"""Train several runs as one job: their trainers advance in lockstep and share one batched forward.

Each member is an ordinary :class:`~sparsedyn.train.Trainer` with its own model, method, optimizer,
data order, run directory and checkpoints, and its own torch random state (swapped in around
everything it does, :meth:`Trainer.own_rng`), so it draws the gate samples and writes the files a
run of its own would. Per mini-batch the members' losses come from one stacked forward
(:func:`~sparsedyn.nn.stacked.stacked_forecast`) where the task and models allow it, and one
backward pass of their sum gives every member its own gradient (members share no parameter and
the stacked forward never mixes them). Penalties, optimizer steps, proximal steps, schedules,
evaluation, divergence checks and checkpoints stay per member. A member that diverges or is
interrupted leaves the lockstep; the others go on.

Where no stacked forward applies (an adaptive solver, a recurrent model, a task with its own
``predict``), members are still trained in lockstep with their own forwards: same numbers, no
speed-up. :func:`stacked_losses` says which way a step went.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .flat_adam import FlatAdam
from .joint_adam import joint_adam_step
from .nn.gates import gates, hold_gates
from .train import DivergenceError, Trainer, TrainResult, non_finite

_MISSING = object()


def _gated(trainers: Sequence[Trainer]) -> set[int]:
    """The ids of the members whose models have gates (which a training forward samples)."""
    return {id(t) for t in trainers if any(True for _ in gates(t.model))}


def _stacked_task_losses(trainers: Sequence[Trainer], batches: Sequence, gated: set[int]) -> list[Tensor] | None:
    """The members' losses from one stacked forecast, or None when this step cannot be stacked."""
    task, models = trainers[0].task, [t.model for t in trainers]
    if not task.can_stack(models, batches):
        return None
    for t in trainers:  # each member draws its gate sample as its own forward would, from its own state
        if t.model.training and id(t) in gated:  # no state to switch for a model without gates
            with t.own_rng():
                hold_gates(t.model)
    return task.stacked_loss(models, batches)


def stacked_losses(trainers: Sequence[Trainer], batches: Sequence,
                   gated: set[int] | None = None) -> tuple[list[Tensor], bool]:
    """Every member's task loss on its batch, and whether one stacked forward computed them (``gated``: the
    ids of the members with gates, :func:`_gated`, when the caller knows them)."""
    losses = _stacked_task_losses(trainers, batches, _gated(trainers) if gated is None else gated)
    if losses is not None:
        return losses, True
    out = []
    for t, batch in zip(trainers, batches):
        with t.own_rng():
            out.append(t.task.loss(t.model, batch))
    return out, False


def _zero_grads(trainers: Sequence[Trainer]) -> None:
    """Every member's ``optimizer.zero_grad(set_to_none=True)``; for optimizers that keep torch's own
    ``zero_grad``, its effect done directly (the call's per-optimizer bookkeeping was ~3% of a lockstep step
    of 81 small members)."""
    for t in trainers:
        if type(t.optimizer).zero_grad is torch.optim.Optimizer.zero_grad:
            for group in t.optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
        else:
            t.optimizer.zero_grad(set_to_none=True)


def _plain(trainers: Sequence[Trainer], gated: set[int]) -> set[int]:
    """The ids of the members that draw no random numbers in a step's objective and update: no gates and no
    method (a vanilla run: zero penalty, no proximal step), so their random state need not be switched in."""
    return {id(t) for t in trainers if id(t) not in gated and t.method.vanilla}


def _update(trainers: Sequence[Trainer], flat: FlatAdam | None = None, plain: AbstractSet[int] = frozenset()) -> None:
    """Every member's :meth:`Trainer.update`, with one joint Adam step for all of them where their
    optimizers allow it (the same numbers, fewer kernels): on ``flat``'s buffers
    (:class:`~sparsedyn.flat_adam.FlatAdam`), else :func:`~sparsedyn.joint_adam.joint_adam_step`. ``plain``:
    members whose random state need not be switched in (:func:`_plain`)."""
    for t in trainers:  # clipping draws no random numbers: no random state to switch
        t.clip_gradients()
    optimizers = [t.optimizer for t in trainers]
    if not (flat.step(optimizers) if flat is not None else joint_adam_step(optimizers)):
        for t in trainers:
            with t.own_rng():
                t.optimizer.step()
    for t in trainers:
        if id(t) not in plain:  # a vanilla member has no step hook (Method.vanilla)
            with t.own_rng():
                t.after_optimizer_step()


def _joint_epoch(trainers: Sequence[Trainer], epoch: int,
                 flat: FlatAdam | None = None) -> dict[int, dict[str, float] | DivergenceError]:
    """One epoch of every trainer in ``trainers``: their i-th batches form one step (Adam on ``flat``'s
    buffers when given)."""
    sums = {id(t): [0.0, 0.0, 0] for t in trainers}
    errors: dict[int, DivergenceError] = {}
    gated = _gated(trainers)  # once per epoch: gates are added before training, never during an epoch
    plain = _plain(trainers, gated)
    iterators = [t.task.train_batches(t.s.batch_size, t.generator) for t in trainers]
    for batches in itertools.zip_longest(*iterators, fillvalue=_MISSING):
        if any(b is _MISSING for b in batches):
            raise ValueError("members have different numbers of training batches; they cannot train in lockstep")
        live = [(t, b) for t, b in zip(trainers, batches) if id(t) not in errors]
        if not live:
            break
        if flat is not None:
            flat.begin_step()
        losses, _ = stacked_losses([t for t, _ in live], [b for _, b in live], gated)
        objectives, stepping, terms = [], [], []
        zeros: dict[torch.device, Tensor] = {}
        for (t, _), loss in zip(live, losses):
            if id(t) in plain:  # no penalty: the objective is the loss (Trainer.objective)
                objectives.append(loss)
                stepping.append(t)
                value = loss.detach()
                zero = zeros.get(value.device)
                if zero is None:  # one zero penalty per device, beside the losses in the stack below
                    zero = zeros[value.device] = value.new_zeros(())
                terms += [value, value, zero]
                continue
            try:
                with t.own_rng():
                    objective, penalty = t.objective(loss, epoch, check=False)
            except DivergenceError as e:
                errors[id(t)] = e
                continue
            objectives.append(objective)
            stepping.append(t)
            terms += [objective.detach(), loss.detach(), penalty.detach()]
        values = torch.stack(terms).tolist() if terms else []  # one conversion for every member's numbers
        keep = [k for k, t in enumerate(stepping) if math.isfinite(values[3 * k])]
        if len(keep) < len(stepping):  # what each member's own check would raise (Trainer.objective)
            for k, t in enumerate(stepping):
                if not math.isfinite(values[3 * k]):
                    errors[id(t)] = non_finite(values[3 * k], epoch)
            objectives, stepping = [objectives[k] for k in keep], [stepping[k] for k in keep]
        if flat is None or not flat.zero_grad([t.optimizer for t in stepping]):  # in place on flat buffers
            _zero_grads(stepping)
        if objectives:
            torch.stack(objectives).sum().backward()
            for k, t in zip(keep, stepping):
                acc = sums[id(t)]
                acc[0], acc[1], acc[2] = acc[0] + values[3 * k + 1], acc[1] + values[3 * k + 2], acc[2] + 1
        _update(stepping, flat, plain)
    out: dict[int, dict[str, float] | DivergenceError] = {}
    for t in trainers:
        total, pen, n = sums[id(t)]
        out[id(t)] = errors.get(id(t)) or {"train_loss": total / max(n, 1), "penalty": pen / max(n, 1)}
    return out


def train_stacked(trainers: Sequence[Trainer], resume: bool = False, progress: bool = True) -> list[TrainResult]:
    """Train ``trainers`` as one lockstep job; return each one's :class:`TrainResult` (in order).

    Every trainer should have ``rng_state`` set to the torch random state its run would start
    training from (``None``: it shares the process's state, and its gate samples then differ from a
    run of its own). With ``resume`` each continues from its own ``last.pt``; members whose
    checkpoints stand at different epochs join the lockstep at their own next epoch.
    """
    trainers = list(trainers)
    if not trainers:
        return []
    if len({t.total for t in trainers}) != 1:
        raise ValueError("members of a lockstep job must train for the same number of epochs")
    for t in trainers:
        with t.own_rng():
            t.begin(resume)
    total = trainers[0].total
    start = min(t.start_epoch for t in trainers)
    live = list(trainers)
    bar = tqdm(range(start + 1, total + 1), desc=f"train x{len(trainers)}", disable=not progress, leave=False,
               initial=start, total=total)
    flat = FlatAdam()
    try:
        for epoch in bar:
            members = [t for t in live if t.start_epoch < epoch]
            if not members:
                continue
            t0 = time.perf_counter()
            for t in members:
                with t.own_rng():
                    t.enter_epoch(epoch)
            stats = _joint_epoch(members, epoch, flat)
            seconds = time.perf_counter() - t0
            for t in members:
                with t.own_rng():
                    if not t.end_epoch(epoch, stats[id(t)], seconds):
                        live.remove(t)
            if not live:
                break
    finally:
        flat.release()  # every member's parameters and optimizer state in their own storage again
        bar.close()
    results = []
    for t in trainers:
        with t.own_rng():
            results.append(t.finish())
    return results
