"""Stacked (lockstep) training: members never mix, so a stacked job equals its members trained alone."""

from __future__ import annotations

import json

import pytest
import torch

from sparsedyn.config import parse_config
from sparsedyn.nn import MLP, GroupedMLP, NeuralODE, RecurrentLayer, SecondOrderODE, add_gate, add_mask
from sparsedyn.nn.gates import hold_gates
from sparsedyn.nn.stacked import STACKED_FORMS, stackable, stacked_forecast, stacked_recurrent
from sparsedyn.runner import build_experiment, run_experiment, run_stacked, stack_key
from sparsedyn.sweep import parse_sweep, stack_groups
from sparsedyn.tasks.forecast import ForecastTask
from sparsedyn.train import Trainer
from sparsedyn.train_stacked import train_stacked


def _config(seed: int, methods: list, kind: str = "node", system: str = "lotka_volterra", solver: str = "rk4",
            trainer: dict | None = None) -> dict:
    params = {"n": 4, "seed": 0} if system == "lotka_volterra" else {}
    return {"name": "stack", "seed": seed, "methods": methods,
            "model": {"kind": kind, "hidden": [8, 8], "solver": solver, "step_size": None},
            "task": {"name": "systems", "system": system, "system_params": params, "n_train": 16, "n_val": 4,
                     "n_test": 4, "n_points": 8, "t_end": 2.0},
            "trainer": {"epochs": 6, "finetune_epochs": 2, "batch_size": 8, "eval_every": 2, "progress": False,
                        **(trainer or {})}}


def _trainer(cfg: dict) -> Trainer:
    """A run's trainer, holding the random state the run's own training would start from."""
    cfg = parse_config(cfg)
    exp = build_experiment(cfg)
    t = Trainer(exp.model, exp.method, exp.task, cfg.trainer, None, seed=cfg.seed)
    t.rng_state = torch.get_rng_state()
    return t


def _alone(cfg: dict):
    t = _trainer(cfg)
    torch.set_rng_state(t.rng_state)
    t.rng_state = None
    return t.fit(), t.model.state_dict()


def _assert_same_training(alone, stacked_results, stacked_trainers, rtol=1e-4, atol=1e-6):
    for (r1, state1), r2, t2 in zip(alone, stacked_results, stacked_trainers):
        assert (r1.status, r1.best_epoch, len(r1.history)) == (r2.status, r2.best_epoch, len(r2.history))
        for row1, row2 in zip(r1.history, r2.history):
            for k, v in row1.items():
                if k != "seconds":
                    assert row2[k] == pytest.approx(v, rel=rtol, abs=atol), (k, row1["epoch"])
        state2 = t2.model.state_dict()
        assert state1.keys() == state2.keys()
        for k in state1:
            torch.testing.assert_close(state2[k], state1[k], rtol=rtol, atol=atol, msg=k)


def _count_stacked_calls(monkeypatch, task_class) -> dict:
    """How many training steps went through ``task_class``'s one stacked forward."""
    calls = {"n": 0}
    original = task_class.stacked_loss

    def counted(self, models, batches):
        calls["n"] += 1
        return original(self, models, batches)

    monkeypatch.setattr(task_class, "stacked_loss", counted)
    return calls


@pytest.fixture
def count_stacked(monkeypatch):
    return _count_stacked_calls(monkeypatch, ForecastTask)


METHODS = {
    "vanilla": [[], [], []],
    "l1": [[{"name": "l1", "lam": lam}] for lam in (0.0, 1e-3, 1e-2)],
    "l0": [[{"name": "l0", "lam": lam, "init_drop": 0.1}] for lam in (0.0, 1e-3, 1e-2)],
    "pathreg": [[{"name": "pathreg", "lambda_paths": lam, "lambda_weights": lam / 10, "init_drop": 0.1}]
                for lam in (0.0, 1e-3, 1e-2)],
    "cnode": [[{"name": "cnode", "lam": lam}] for lam in (0.0, 1e-3, 1e-2)],
    "group_lasso": [[{"name": "group_lasso", "lam": lam, "hidden": [4]}] for lam in (0.0, 1e-2, 1e-1)],
    "lassonet_inner": [[{"name": "lassonet", "lam": lam, "mode": "inner"}] for lam in (0.0, 0.1, 1.0)],
    "lassonet_outer": [[{"name": "lassonet", "lam": lam, "mode": "outer"}] for lam in (0.0, 0.1, 1.0)],
    "magnitude": [[{"name": "magnitude", "sparsity": s, "schedule": "cubic", "start": 1, "end": 4}]
                  for s in (0.0, 0.5, 0.9)],
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_node_method_trains_the_same_stacked_as_alone(method, count_stacked):
    # three members with their own seeds and strengths, through both phases (sparsify, fine-tune)
    cfgs = [_config(seed, spec) for seed, spec in enumerate(METHODS[method])]
    alone = [_alone(c) for c in cfgs]
    trainers = [_trainer(c) for c in cfgs]
    results = train_stacked(trainers, progress=False)
    assert count_stacked["n"] == 8 * 2  # every step of every epoch was one stacked forward
    _assert_same_training(alone, results, trainers)
    assert len({round(r.history[-1]["val_mse"], 6) for r in results}) == 3  # the members did differ


def test_a_second_order_model_trains_the_same_stacked_as_alone(count_stacked):
    spec = [[{"name": "pathreg", "lambda_paths": lam, "init_drop": 0.1}] for lam in (0.0, 1e-3)]
    cfgs = [_config(seed, s, kind="sonode", system="oscillators") for seed, s in zip((3, 4), spec)]
    alone = [_alone(c) for c in cfgs]
    trainers = [_trainer(c) for c in cfgs]
    results = train_stacked(trainers, progress=False)
    assert count_stacked["n"] > 0
    _assert_same_training(alone, results, trainers)


def test_an_adaptive_solver_trains_in_lockstep_without_stacking_and_exactly_as_alone(count_stacked):
    cfgs = [_config(seed, [{"name": "l0", "lam": 1e-3, "init_drop": 0.1}], solver="dopri5") for seed in (0, 1)]
    alone = [_alone(c) for c in cfgs]
    trainers = [_trainer(c) for c in cfgs]
    results = train_stacked(trainers, progress=False)
    assert count_stacked["n"] == 0  # one step size for all members would couple them: not stacked
    _assert_same_training(alone, results, trainers, rtol=0, atol=0)


def test_a_diverging_member_leaves_the_lockstep_and_the_others_keep_their_own_numbers():
    good = _config(0, [{"name": "l1", "lam": 1e-3}])
    bad = _config(1, [{"name": "l1", "lam": 1e-3}], trainer={"lr": 1e6})
    alone_good = _alone(good)
    trainers = [_trainer(good), _trainer(bad)]
    results = train_stacked(trainers, progress=False)
    assert results[1].status == "diverged" and results[0].status == "completed"
    _assert_same_training([alone_good], results[:1], trainers[:1])


def test_a_member_whose_objective_turns_non_finite_leaves_with_the_message_of_its_own_run():
    """The lockstep checks every member's objective in one conversion: a NaN penalty stops that member with the
    error its own run raises, at the same epoch, and the other member's numbers are untouched."""
    from sparsedyn.methods.l1 import L1

    original = L1.penalty

    def nan_later(self, model):  # finite for the first 5 steps of a run, then NaN
        self.calls = getattr(self, "calls", 0) + 1
        value = original(self, model)
        return value * float("nan") if self.calls > 5 and self.lam > 5e-3 else value

    good, bad = _config(0, [{"name": "l1", "lam": 1e-3}]), _config(1, [{"name": "l1", "lam": 1e-2}])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(L1, "penalty", nan_later)
        alone_good, alone_bad = _alone(good), _alone(bad)
        trainers = [_trainer(good), _trainer(bad)]
        results = train_stacked(trainers, progress=False)
    assert alone_bad[0].status == results[1].status == "diverged"
    assert "non-finite training loss (nan) at epoch 3" in results[1].message
    assert results[1].message == alone_bad[0].message and results[1].epochs_run == alone_bad[0].epochs_run
    assert results[0].status == "completed"
    _assert_same_training([alone_good], results[:1], trainers[:1])


# -- the stacked forward, member by member -------------------------------------------------------

def _node(field, **kw):
    return NeuralODE(field, solver="rk4", step_size=0.1, **kw)


def _fields(kind: str, seed: int):
    """Members whose weights go through parametrizations (gates, masks) on top of a registered form."""
    torch.manual_seed(seed)
    if kind == "gated":
        model = _node(MLP(3, 3, (5,)))
        for layer in model.field.layers:
            add_gate(layer, init_drop=0.3)
        return model
    if kind == "masked_outer":
        model = _node(MLP(3, 3, (5,)))
        model.outer_skip = torch.nn.Linear(3, 3, bias=False)
        mask = add_mask(model.field.layers[0])
        mask.mask.copy_((torch.rand_like(mask.mask) > 0.5).float())
        return model
    raise AssertionError(kind)


def _example_model(kind: type, order: str, outer: bool, seed: int):
    """A small model around the registered example field of ``kind``."""
    torch.manual_seed(seed)
    form = STACKED_FORMS[kind]
    if order == "first":
        model = _node(form.example(3, 3))
    else:
        model = SecondOrderODE(form.example(6, 3), MLP(3, 3, (4,)), solver="midpoint", step_size=0.1)
    if outer:
        model.outer_skip = torch.nn.Linear(3, 3, bias=False)
    return model


def _assert_stacked_equals_alone(models, intervention) -> None:
    x0 = torch.randn(len(models), 4, 3)
    t = torch.linspace(0, 1, 6)
    for m in models:
        hold_gates(m)  # a training forward's one gate sample, drawn before the solve
    stacked = stacked_forecast(models, x0, t, intervention)
    grads = torch.autograd.grad(stacked.square().sum(), [p for m in models for p in m.parameters()])
    alone, alone_grads = [], []
    for i, m in enumerate(models):
        for g in [g for g in m.modules() if hasattr(g, "held")]:
            g.resample = lambda: None  # keep the sample drawn above
        y = m(x0[i], t, intervention=intervention)
        alone.append(y)
        alone_grads += torch.autograd.grad(y.square().sum(), list(m.parameters()))
    torch.testing.assert_close(stacked, torch.stack(alone), rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, alone_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("intervention", [None, {1: 0.5}], ids=["free", "intervened"])
@pytest.mark.parametrize("outer", [False, True], ids=["no_skip", "outer_skip"])
@pytest.mark.parametrize("order", ["first", "second"])
@pytest.mark.parametrize("kind", sorted(STACKED_FORMS, key=lambda k: k.__name__), ids=lambda k: k.__name__)
def test_every_registered_stacked_form_equals_each_members_forecast_and_gradients(kind, order, outer,
                                                                                intervention):
    """Generated from the registry: every field kind x NODE/SONODE x outer skip x intervention (a stacked
    second-order solve that ignored interventions, or a new kind without its form tested, fails here)."""
    _assert_stacked_equals_alone([_example_model(kind, order, outer, seed) for seed in range(3)], intervention)


@pytest.mark.parametrize("intervention", [None, {1: 0.5}], ids=["free", "intervened"])
@pytest.mark.parametrize("kind", ["gated", "masked_outer"])
def test_stacked_forecast_reads_each_members_gates_and_masks(kind, intervention):
    _assert_stacked_equals_alone([_fields(kind, seed) for seed in range(3)], intervention)


@pytest.mark.parametrize("cell,nonlinearity", [("elman", "tanh"), ("elman", "relu"), ("gru", "tanh"),
                                               ("lstm", "tanh")])
def test_stacked_recurrent_layers_equal_each_member_layer_and_gradients(cell, nonlinearity):
    torch.manual_seed(0)
    layers = [RecurrentLayer(3, 5, cell, nonlinearity) for _ in range(3)]
    mask = add_mask(layers[1], "weight_hh")  # a pruned member
    mask.mask.copy_((torch.rand_like(mask.mask) > 0.7).float())
    x = torch.randn(3, 7, 2, 3)
    out, final = stacked_recurrent(layers, x)
    params = [p for la in layers for p in la.parameters()]
    h_final = final[0] if cell == "lstm" else final
    grads = torch.autograd.grad(out.sin().sum() + h_final.square().sum(), params)
    alone_grads = []
    for i, layer in enumerate(layers):
        o, f = layer(x[i])
        torch.testing.assert_close(out[i], o, rtol=1e-5, atol=1e-6)
        h = f[0] if cell == "lstm" else f
        torch.testing.assert_close(h_final[i], h, rtol=1e-5, atol=1e-6)
        alone_grads += torch.autograd.grad(o.sin().sum() + h.square().sum(), list(layer.parameters()))
    for a, b in zip(grads, alone_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    grad_of = dict(zip(map(id, params), grads))
    w_hh = layers[1].parametrizations.weight_hh.original
    assert (grad_of[id(w_hh)] * (1 - mask.mask)).abs().max() == 0  # the pruned member's masked entries: no gradient


def test_stackable_names_why_members_cannot_stack():
    mlp = [_example_model(MLP, "first", False, seed) for seed in (0, 1)]
    assert stackable(mlp) is None
    assert "adaptive" in stackable([NeuralODE(MLP(3, 3, (4,)), solver="dopri5")])
    assert "field" in stackable([mlp[0], _example_model(GroupedMLP, "first", False, 0)])
    t = torch.linspace(0, 1, 3)
    with pytest.raises(ValueError, match="members differ in shape"):
        stacked_forecast([_node(MLP(3, 3, (4,))), _node(MLP(3, 3, (5,)))], torch.randn(2, 4, 3), t)
    with pytest.raises(ValueError, match=r"x0 must have shape \(2, batch, 3\)"):
        stacked_forecast(mlp, torch.randn(3, 4, 3), torch.linspace(0, 1, 3))


# -- runs, sweeps ------------------------------------------------------------------------------

def test_run_stacked_writes_what_separate_runs_write_with_the_same_numbers(tmp_path):
    cfgs = [_config(seed, [{"name": "pathreg", "lambda_paths": lam, "init_drop": 0.1}])
            for seed, lam in ((0, 1e-3), (1, 1e-2))]
    for i, c in enumerate(cfgs):
        run_experiment(parse_config(c), tmp_path / f"alone{i}")
    run_stacked([parse_config(c) for c in cfgs], [tmp_path / "st0", tmp_path / "st1"])
    for i in range(2):
        alone, stacked = tmp_path / f"alone{i}", tmp_path / f"st{i}"
        assert sorted(p.name for p in alone.iterdir()) == sorted(p.name for p in stacked.iterdir())
        a = json.loads((alone / "results.json").read_text())["metrics"]
        b = json.loads((stacked / "results.json").read_text())["metrics"]
        assert a.keys() == b.keys()
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), k
        assert json.loads((stacked / "run.json").read_text())["stacked"] == 2


def test_run_stacked_refuses_members_that_differ_in_more_than_seed_and_strength(tmp_path):
    a = _config(0, [{"name": "l1", "lam": 1e-3}])
    b = _config(1, [{"name": "l1", "lam": 1e-3}], trainer={"lr": 0.05})
    with pytest.raises(ValueError, match="differ only in seed and method strengths"):
        run_stacked([parse_config(a), parse_config(b)])


def test_sweep_points_stack_when_they_differ_only_in_seed_and_strengths(tmp_path):
    base = _config(0, [])
    spec = parse_sweep({"name": "s", "base": base, "seeds": [0, 1, 2], "variants": {
        "vanilla": {}, "l1": {"set": {"methods": [{"name": "l1"}]}, "grid": {"methods.0.lam": [1e-3, 1e-2]}},
        "wide": {"set": {"model.hidden": [16]}},
        "sindy": {"set": {"model": {"kind": "sindy"}, "methods": []}}}})
    points = spec.points(tmp_path)
    groups = stack_groups(points, size=4)
    sizes = {g[0].variant: [len(x) for x in groups if x[0].variant == g[0].variant] for g in groups}
    assert sizes == {"vanilla": [3], "l1": [4, 2], "wide": [3], "sindy": [1, 1, 1]}
    assert all(len({stack_key(p.config) for p in g}) == 1 for g in groups)
    assert [len(g) for g in stack_groups(points, size=1)] == [1] * len(points)


@pytest.mark.parametrize("cell,nonlinearity,hidden", [("elman", "relu", [8]), ("elman", "tanh", [8, 6]),
                                                      ("gru", "tanh", [8]), ("lstm", "tanh", [6, 5])])
def test_the_navigation_tasks_stacked_loss_equals_each_members_loss_and_gradients(cell, nonlinearity, hidden):
    """The navigation task's stacked forward (encoder, recurrent layers, decoder as batched products; masked
    recurrent weights read per member) gives every member its own loss and gradients."""
    import numpy as np

    from sparsedyn.config import ModelConfig
    from sparsedyn.tasks import NavigationTask

    task = NavigationTask(n_place_cells=16, sequence_length=5, n_val=4, n_test=4)
    cfg = ModelConfig(kind="rnn", cell=cell, nonlinearity=nonlinearity, hidden=hidden, rnn_bias=cell != "elman")
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = task.build_model(cfg)
        mask = add_mask(model.rnn.layers[0], "weight_hh")
        mask.mask.copy_((torch.rand_like(mask.mask) > 0.3).float())
        models.append(model)
    batches = [task.batch(np.random.default_rng(seed), 4) for seed in range(3)]
    assert task.can_stack(models, batches)
    stacked = task.stacked_loss(models, batches)
    grads = torch.autograd.grad(sum(stacked), [p for m in models for p in m.parameters()])
    alone, alone_grads = [], []
    for m, b in zip(models, batches):
        loss = task.loss(m, b)
        alone.append(loss)
        alone_grads += torch.autograd.grad(loss, list(m.parameters()))
    torch.testing.assert_close(torch.stack(stacked), torch.stack(alone), rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, alone_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    other = task.build_model(ModelConfig(kind="rnn", cell=cell, nonlinearity=nonlinearity, hidden=[7]))
    assert not task.can_stack([models[0], other], batches[:2])  # another structure: each its own forward


@pytest.mark.parametrize("methods", [[], [{"name": "moduli", "lam": 1e-3, "manifold": "torus"}],
                                     [{"name": "magnitude", "sparsity": 0.5, "schedule": "cubic", "start": 1,
                                       "end": 3}]], ids=["none", "moduli", "magnitude"])
def test_navigation_members_train_the_same_stacked_as_alone(methods, monkeypatch):
    from sparsedyn.tasks import NavigationTask

    calls = _count_stacked_calls(monkeypatch, NavigationTask)
    cfgs = [{"name": "nav", "seed": seed, "methods": methods,
             "model": {"kind": "rnn", "cell": "elman", "nonlinearity": "relu", "hidden": [12], "rnn_bias": False},
             "task": {"name": "navigation", "n_place_cells": 16, "sequence_length": 5, "steps_per_epoch": 3,
                      "n_val": 8, "n_test": 8},
             "trainer": {"epochs": 4, "finetune_epochs": 1, "batch_size": 6, "eval_every": 1, "progress": False}}
            for seed in range(2)]
    alone = [_alone(c) for c in cfgs]
    trainers = [_trainer(c) for c in cfgs]
    results = train_stacked(trainers, progress=False)
    assert calls["n"] == 5 * 3  # every step of every epoch (both phases) was one stacked forward
    _assert_same_training(alone, results, trainers)


def test_lockstep_zeroes_each_members_gradients_through_its_own_optimizer_where_it_has_its_own():
    """Members with torch's zero_grad get their gradients set to None directly; an optimizer with its own
    zero_grad is still called."""
    from sparsedyn.train_stacked import _zero_grads

    class Counting(torch.optim.SGD):
        calls = 0

        def zero_grad(self, set_to_none: bool = True) -> None:
            Counting.calls += 1
            super().zero_grad(set_to_none)

    plain, custom = _trainer(_config(0, [])), _trainer(_config(1, []))
    custom.optimizer = Counting(custom.model.parameters(), lr=0.1)
    for t in (plain, custom):
        for p in t.model.parameters():
            p.grad = torch.ones_like(p)
    _zero_grads([plain, custom])
    assert Counting.calls == 1
    assert all(p.grad is None for t in (plain, custom) for p in t.model.parameters())


def test_a_member_trains_to_the_same_bits_in_a_lockstep_of_two_as_in_a_lockstep_of_one():
    """What lets an interrupted lockstep job resume with fewer members (their checkpoints at different epochs)
    to the uninterrupted job's numbers: nothing a member computes depends on how many members step with it.
    A replay of five epochs, bit for bit (the timing-dependent end-to-end check is in test_reliability_sweep)."""
    from sparsedyn.flat_adam import FlatAdam
    from sparsedyn.train_stacked import _joint_epoch

    def config(seed: int) -> dict:  # width 6: a member's 48 activations fill no whole number of vectors
        cfg = _config(seed, [])
        return {**cfg, "model": {**cfg["model"], "hidden": [6, 6]}}

    together = [_trainer(config(seed)) for seed in (0, 1)]
    apart = [[_trainer(config(seed))] for seed in (0, 1)]
    flat = FlatAdam()  # the pair steps Adam on flat buffers, each single member through joint_adam_step
    for epoch in range(1, 6):
        _joint_epoch(together, epoch, flat)
        for single in apart:
            _joint_epoch(single, epoch)
    assert flat._arenas  # the flat step was taken
    flat.release()
    for t, (alone,) in zip(together, apart):
        for p, q in zip(t.model.parameters(), alone.model.parameters()):
            assert torch.equal(p, q)


def test_a_lockstep_leaves_every_member_its_own_storage_and_checkpoints_of_its_own_size(tmp_path):
    """While a lockstep trains, its members' parameters and Adam states live in shared flat buffers
    (sparsedyn.flat_adam): afterwards each member's tensors own their storage again, and no checkpoint carries
    the other members' weights."""
    from sparsedyn.flat_adam import _is_view

    spec = [{"name": "pathreg", "lambda_paths": 1e-3, "init_drop": 0.1}]
    trainers = [_trainer(_config(seed, spec)) for seed in range(3)]
    train_stacked(trainers, progress=False)
    for t in trainers:
        assert not any(_is_view(p) for p in t.model.parameters())
        assert not any(_is_view(v) for state in t.optimizer.state.values() for v in state.values())
    cfgs = [parse_config(_config(seed, spec)) for seed in range(3)]
    run_stacked(cfgs, [tmp_path / f"m{k}" for k in range(3)])

    def tensors(obj):
        if isinstance(obj, torch.Tensor):
            yield obj
        elif isinstance(obj, dict):
            for v in obj.values():
                yield from tensors(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                yield from tensors(v)

    for name in ("last.pt", "best.pt", "model.pt"):  # written while the buffers existed (model.pt after)
        saved = list(tensors(torch.load(tmp_path / "m1" / name, weights_only=False)))
        assert saved and not any(_is_view(t) for t in saved), name
