"""FlatAdam: lockstep members' Adam steps on flat buffers give bit for bit each optimizer's own step, and the
buffers never leak into a saved checkpoint or a trained model."""

import torch

from sparsedyn import io
from sparsedyn.flat_adam import FlatAdam, _is_view
from sparsedyn.optim import AdamWithHeavyBall


def _members(seed: int, lrs: tuple[float, ...]) -> list[tuple[list[torch.nn.Parameter], torch.optim.Adam]]:
    """Members with two parameter groups each (their own lr; one with weight decay), odd sizes included."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for lr in lrs:
        params = [torch.nn.Parameter(torch.randn(5, 3, generator=g)), torch.nn.Parameter(torch.randn(7, generator=g)),
                  torch.nn.Parameter(torch.randn(3, generator=g))]
        opt = torch.optim.Adam([{"params": params[:2], "lr": lr},
                                {"params": params[2:], "lr": 0.1, "weight_decay": 1e-2}], foreach=True)
        out.append((params, opt))
    return out


def _set_grads(members, step: int, skip: set[tuple[int, int]] = frozenset()) -> None:
    """Gradients for every parameter, except (member, parameter) pairs in ``skip`` (left None, as for a tensor
    that took no part in the forward)."""
    g = torch.Generator().manual_seed(100 + step)
    for m, (params, _) in enumerate(members):
        for k, p in enumerate(params):
            grad = torch.randn(p.shape, generator=g)
            p.grad = None if (m, k) in skip else grad


def _assert_same(flat_members, own_members) -> None:
    for (pf, of), (po, oo) in zip(flat_members, own_members):
        for a, b in zip(pf, po):
            assert torch.equal(a, b)
            sa, sb = of.state.get(a, {}), oo.state.get(b, {})
            assert sa.keys() == sb.keys()
            for name in sa:
                assert torch.equal(sa[name], sb[name]), name


def test_flat_steps_equal_each_optimizers_own_steps_bitwise_through_missing_gradients_and_late_joiners():
    lrs = (1e-2, 1e-2, 3e-3)  # two members share a setting, one does not
    flat_members, own_members = _members(0, lrs), _members(0, lrs)
    # the third member has stepped once before the lockstep (it joins with another step count)
    for members in (flat_members, own_members):
        _set_grads(members[2:], 99)
        members[2][1].step()
    flat = FlatAdam()
    skips = [set(), set(), {(0, 1)}, {(0, 1)}, set(), {(1, 0), (2, 2)}, set()]  # a tensor without a gradient
    for step, skip in enumerate(skips):
        _set_grads(flat_members, step, skip)
        _set_grads(own_members, step, skip)
        assert flat.step([opt for _, opt in flat_members])
        assert flat._arenas and all(_is_view(p) for p in flat._arenas[0].params)  # the flat path was taken
        for _, opt in own_members:
            opt.step()
        _assert_same(flat_members, own_members)
    flat.release()
    for params, opt in flat_members:
        for p in params:
            assert not _is_view(p) and not any(_is_view(t) for t in opt.state[p].values())
    _assert_same(flat_members, own_members)
    # the state round-trips through a checkpoint like any Adam's and keeps stepping identically
    reloaded = _members(1, lrs)
    for (trained, src), (params, dst) in zip(flat_members, reloaded):
        dst.load_state_dict(src.state_dict())
        for p, q in zip(params, trained):
            p.data.copy_(q)
    _set_grads(reloaded, 50)
    _set_grads(own_members, 50)
    assert flat.step([opt for _, opt in reloaded])
    for _, opt in own_members:
        opt.step()
    flat.release()
    _assert_same(reloaded, own_members)


def _step_both(flat: FlatAdam, flat_members, own_members, step: int) -> None:
    """One step of the same gradients: flat for one copy of the members, each optimizer's own for the other."""
    for members in (flat_members, own_members):
        _set_grads(members, step)
    assert flat.step([opt for _, opt in flat_members])
    for _, opt in own_members:
        opt.step()


def test_a_resumed_optimizer_state_replaces_the_views_and_the_buffers_are_rebuilt():
    flat_members, own_members = _members(0, (1e-2, 1e-2)), _members(0, (1e-2, 1e-2))
    flat = FlatAdam()
    for step in range(2):
        _step_both(flat, flat_members, own_members, step)
    # a resume: load_state_dict replaces the state tensors, and a parameter gets new values in place
    flat_members[0][1].load_state_dict(own_members[0][1].state_dict())
    for step in range(2, 4):
        _step_both(flat, flat_members, own_members, step)
    flat.release()
    _assert_same(flat_members, own_members)


def test_optimizers_it_does_not_cover_are_declined_with_nothing_done():
    members = _members(0, (1e-2,))
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    heavy = AdamWithHeavyBall([{"params": [p], "lr": 0.1}], foreach=True)
    _set_grads(members, 0)
    before = [q.detach().clone() for q in members[0][0]]
    flat = FlatAdam()
    assert not flat.step([members[0][1], heavy])
    assert not flat.step([])
    assert all(torch.equal(a, b) and not _is_view(a) for a, b in zip(members[0][0], before))
    assert not members[0][1].state


def test_shared_parameters_go_to_the_joint_step_with_the_same_numbers():
    shared, twin = torch.nn.Parameter(torch.randn(4)), torch.nn.Parameter(torch.randn(4))
    twin.data.copy_(shared)
    pairs = [[torch.optim.Adam([p], lr=0.1, foreach=True) for _ in range(2)] for p in (shared, twin)]  # one
    shared.grad, twin.grad = torch.linspace(-1, 1, 4), torch.linspace(-1, 1, 4)  # tensor in two optimizers
    assert FlatAdam().step(pairs[0])  # stepped by each optimizer in turn, not flattened
    for opt in pairs[1]:
        opt.step()
    assert not _is_view(shared) and torch.equal(shared, twin)


def test_save_torch_writes_a_view_as_a_tensor_of_its_own(tmp_path):
    big = torch.arange(10_000.0)
    state = torch.nn.Linear(2, 3).state_dict()
    state["part"] = big[10:16].view(2, 3)
    io.save_torch(tmp_path / "c.pt", {"model": state, "steps": [big[3]]})
    back = torch.load(tmp_path / "c.pt", weights_only=False)
    assert torch.equal(back["model"]["part"], big[10:16].view(2, 3))
    assert back["model"]["part"].untyped_storage().nbytes() == 6 * 4  # not the 10,000 of the buffer
    assert float(back["steps"][0]) == 3.0
    assert (tmp_path / "c.pt").stat().st_size < 10_000  # the buffer alone would be 40 kB
    assert back["model"]._metadata == state._metadata  # what load_state_dict reads


def test_an_optimizer_stepped_on_its_own_between_flat_steps_keeps_its_own_bias_correction():
    flat_members, own_members = _members(0, (1e-2, 1e-2)), _members(0, (1e-2, 1e-2))
    flat = FlatAdam()
    for step in range(4):
        if step == 2:  # one member steps alone (a caller's fallback), the other does not step
            for members in (flat_members, own_members):
                _set_grads(members, step)
                members[0][1].step()
            continue
        _step_both(flat, flat_members, own_members, step)
    flat.release()
    _assert_same(flat_members, own_members)


def test_a_run_through_both_phases_with_schedules_gives_the_same_bits_alone_and_in_a_lockstep(tmp_path):
    """The flat buffers are rebuilt when a schedule moves the learning rate (every epoch here) and when the
    fine-tuning phase brings a new optimizer: PathReg runs (weights and gates in two settings) trained alone and
    in a lockstep of two end with equal metrics and weights, bit for bit."""
    from conftest import assert_same_bits_alone_and_stacked

    assert_same_bits_alone_and_stacked(tmp_path, {"epochs": 4, "finetune_epochs": 3, "lr_schedule": "cosine"})


def test_vanilla_members_read_their_weights_through_the_flat_leaf_and_train_bit_for_bit_as_alone(tmp_path,
                                                                                                monkeypatch):
    """Vanilla members (no gates): after the first step the stacked forward reads every member's weights as views
    of the flat buffer (one autograd leaf) and their gradients accumulate in one kept buffer zeroed in place. Runs
    through both phases and a schedule that moves the learning rate every epoch (the flat step must notice it)
    end bit for bit as alone, and the in-place path was taken."""
    from conftest import assert_same_bits_alone_and_stacked

    taken = []
    zero_grad = FlatAdam.zero_grad
    monkeypatch.setattr(FlatAdam, "zero_grad", lambda self, opts: taken.append(zero_grad(self, opts)) or taken[-1])
    assert_same_bits_alone_and_stacked(tmp_path, {"epochs": 4, "finetune_epochs": 3, "lr_schedule": "cosine"},
                                       methods=[])
    assert sum(taken) > len(taken) // 2  # most steps ran on the kept flat gradient


def _lockstep_members(seed: int) -> list[tuple[list[torch.nn.Parameter], torch.optim.Adam]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(3):
        params = [torch.nn.Parameter(torch.randn(4, 3, generator=g)), torch.nn.Parameter(torch.randn(4, generator=g)),
                  torch.nn.Parameter(torch.randn(2, generator=g))]
        out.append((params, torch.optim.Adam(params, lr=1e-2, foreach=True)))
    return out


def test_the_flat_leaf_gives_each_members_own_gradients_and_steps_through_unread_and_unused_tensors():
    """A hand-made lockstep: the stacked forward reads the first two tensors through stack_members (a view of the
    leaf once registered) and the third on all but two steps (there its gradient must stay None, so Adam leaves
    it alone, as after zero_grad(set_to_none=True)); one step stacks with torch.stack instead, and one optimizer's
    state is reloaded between two in-place steps (a resume). Same bits as each member's own optimizer on the same
    losses, and both the in-place and the ordinary path taken."""
    from sparsedyn.nn.fused_rk4 import stack_members

    x = torch.randn(3, 5, 3, generator=torch.Generator().manual_seed(7))

    def loss(members, step: int, alias: bool) -> torch.Tensor:
        stack = stack_members if alias else (lambda ts: torch.stack(list(ts)))
        w, b = (stack([ps[k] for ps, _ in members]) for k in (0, 1))
        out = torch.tanh(torch.bmm(x, w.transpose(1, 2)) + b[:, None]).square().sum()
        if step not in (0, 5):
            out = out + stack([ps[2] for ps, _ in members]).square().sum()
        return out

    flat_members, own_members = _lockstep_members(0), _lockstep_members(0)
    flat = FlatAdam()
    paths = []
    for step in range(13):
        if step == 11:  # a resume between two in-place steps: the state tensors are no longer the arena's views
            flat_members[0][1].load_state_dict(own_members[0][1].state_dict())
        flat.begin_step()
        value = loss(flat_members, step, alias=step != 8)
        paths.append(flat.zero_grad([opt for _, opt in flat_members]))
        if not paths[-1]:
            for ps, _ in flat_members:
                for p in ps:
                    p.grad = None
        value.backward()
        assert flat.step([opt for _, opt in flat_members])
        for _, opt in own_members:
            opt.zero_grad(set_to_none=True)
        loss(own_members, step, alias=False).backward()
        for _, opt in own_members:
            opt.step()
        _assert_same(flat_members, own_members)
    assert paths[11] and not all(paths)  # both paths taken, the in-place one on the resumed step
    flat.release()
    _assert_same(flat_members, own_members)
    for ps, _ in flat_members:
        assert not any(_is_view(p) or (p.grad is not None and _is_view(p.grad)) for p in ps)


def test_stack_members_aliases_only_the_registered_tensors_in_their_order_and_place():
    from sparsedyn.nn import lockstep
    from sparsedyn.nn.fused_rk4 import stack_members

    leaf = torch.arange(12.0).requires_grad_()
    a, b = torch.nn.Parameter(torch.zeros(2, 3)), torch.nn.Parameter(torch.zeros(2, 3))
    a.data, b.data = leaf.detach()[:6].view(2, 3), leaf.detach()[6:].view(2, 3)
    slot = lockstep.Slot(leaf, 0, (a, b))
    lockstep.register(slot)
    try:
        view = stack_members([a, b])
        assert view.grad_fn is not None and view.data_ptr() == leaf.data_ptr() and slot.used
        assert torch.equal(view, torch.stack([a, b]))
        view.sum().backward()
        assert torch.equal(leaf.grad, torch.ones(12)) and a.grad is None  # one leaf received it all
        assert stack_members([b, a]).data_ptr() != leaf.data_ptr()  # another order: a copy
        assert stack_members([a]).data_ptr() != leaf.data_ptr()  # a subset: a copy
        b.data = b.data.clone()  # given storage of its own: no longer read through the leaf
        assert stack_members([a, b]).data_ptr() != leaf.data_ptr()
    finally:
        lockstep.unregister(slot)
    assert stack_members([a]).grad_fn is not None and stack_members([a, a]).data_ptr() != leaf.data_ptr()
