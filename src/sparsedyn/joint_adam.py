"""One Adam step for the optimizers of many lockstep members: their tensors in one foreach call per setting.

A stacked job (:mod:`sparsedyn.train_stacked`) gives every member its own ``torch.optim.Adam``; stepping
them one by one costs a few dozen small kernels per member, which at 32-81 small members is a fifth of
the step. Members' parameter groups with the same hyperparameters are independent lists of tensors to
the foreach implementation, so concatenating them changes no number (each tensor's update reads only its
own gradient, moments and step count): :func:`joint_adam_step` collects every group's tensors with
Adam's own lazy state initialisation (``Adam._init_group``), so each optimizer keeps its state for
checkpoints, and calls ``torch.optim.adam.adam`` once per distinct setting. Optimizers it does not cover
(another class, hooks, amsgrad, fused, capturable, differentiable, maximize, foreach off) are left to
their own ``step()``; the function says whether it stepped them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.optim.adam import adam


def joinable(opt: torch.optim.Optimizer) -> bool:
    """Whether :func:`joint_adam_step` covers ``opt``: a plain foreach ``torch.optim.Adam`` without hooks, amsgrad,
    fused, capturable, differentiable or maximize, and with float learning rates."""
    if type(opt) is not torch.optim.Adam or opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks:
        return False
    return all(g["foreach"] and not (g["amsgrad"] or g["fused"] or g["capturable"] or g["differentiable"]
                                     or g["maximize"] or torch.is_tensor(g["lr"])) for g in opt.param_groups)


def joint_adam_step(optimizers: Sequence[torch.optim.Optimizer]) -> bool:
    """Step every optimizer of ``optimizers`` as its own ``step()`` would, in as few foreach calls as their
    settings allow; False (and nothing done) when any of them is not a plain foreach ``torch.optim.Adam``
    or global optimizer hooks are registered."""
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

    if not optimizers or _global_optimizer_pre_hooks or _global_optimizer_post_hooks:
        return False
    if not all(joinable(opt) for opt in optimizers):
        return False
    batches: dict[tuple, tuple[list[list[Tensor]], list[bool]]] = {}
    for opt in optimizers:
        for group in opt.param_groups:
            key = (group["lr"], *group["betas"], group["eps"], group["weight_decay"],
                   group["decoupled_weight_decay"])
            lists, complex_ = batches.setdefault(key, ([[] for _ in range(6)], [False]))
            complex_[0] |= opt._init_group(group, *lists)  # type: ignore[attr-defined]
        opt._opt_called = True  # type: ignore[attr-defined]  # what an LR scheduler's wrapped step() records
    with torch.no_grad():
        for (lr, beta1, beta2, eps, weight_decay, decoupled), (lists, complex_) in batches.items():
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = lists
            if params:
                adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, foreach=True,
                     has_complex=complex_[0], decoupled_weight_decay=decoupled, amsgrad=False, beta1=beta1,
                     beta2=beta2, lr=lr, weight_decay=weight_decay, eps=eps, maximize=False)
    return True
