"""joint_adam_step: one foreach Adam call for many optimizers gives bit-for-bit the numbers of their own steps."""

import torch

from sparsedyn.joint_adam import joint_adam_step
from sparsedyn.optim import AdamWithHeavyBall


def _members(seed: int, lrs: tuple[float, ...]) -> list[tuple[list[torch.nn.Parameter], torch.optim.Adam]]:
    """Members with two parameter groups each (different lr, one with weight decay), as trainers build them."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for lr in lrs:
        params = [torch.nn.Parameter(torch.randn(5, 3, generator=g)), torch.nn.Parameter(torch.randn(3, generator=g))]
        opt = torch.optim.Adam([{"params": [params[0]], "lr": lr},
                                {"params": [params[1]], "lr": 0.1, "weight_decay": 1e-2}], foreach=True)
        out.append((params, opt))
    return out


def _set_grads(members, step: int) -> None:
    g = torch.Generator().manual_seed(100 + step)
    for params, _ in members:
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)


def test_joint_step_equals_each_optimizers_own_step_bitwise():
    lrs = (1e-2, 1e-2, 3e-3)  # two members share a setting, one does not
    joint, alone = _members(0, lrs), _members(0, lrs)
    for step in range(4):
        _set_grads(joint, step)
        _set_grads(alone, step)
        assert joint_adam_step([opt for _, opt in joint])
        for _, opt in alone:
            opt.step()
    for (pj, oj), (pa, oa) in zip(joint, alone):
        for a, b in zip(pj, pa):
            assert torch.equal(a, b)
        for a, b in zip(pj, pa):
            sj, sa = oj.state[a], oa.state[b]
            assert torch.equal(sj["exp_avg"], sa["exp_avg"]) and torch.equal(sj["exp_avg_sq"], sa["exp_avg_sq"])
            assert float(sj["step"]) == float(sa["step"]) == 4.0
    # and the state round-trips through a checkpoint like any Adam's
    reloaded = _members(1, lrs)[0][1]
    reloaded.load_state_dict(joint[0][1].state_dict())
    assert reloaded.state_dict()["state"][0]["step"] == 4.0


def test_joint_step_declines_optimizers_it_does_not_cover_and_changes_nothing():
    members = _members(0, (1e-2,))
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    heavy = AdamWithHeavyBall([{"params": [p], "lr": 0.1}], foreach=True)
    no_foreach = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))], foreach=False)
    _set_grads(members, 0)
    before = [q.detach().clone() for q in members[0][0]]
    assert not joint_adam_step([members[0][1], heavy])
    assert not joint_adam_step([members[0][1], no_foreach])
    assert not joint_adam_step([])
    assert all(torch.equal(a, b) for a, b in zip(before, members[0][0]))
    assert not members[0][1].state  # no lazy state was created either
    assert torch.equal(p, torch.ones(3))
