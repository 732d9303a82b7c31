import math

import numpy as np
import pytest
import torch

from sparsedyn.config import parse_config
from sparsedyn.runner import run_experiment, train_experiment
from sparsedyn.tasks.adding import MEAN_PREDICTOR_MSE, AddingTask, adding_batch
from sparsedyn.tasks.navigation import NavigationTask, PlaceCells, random_walk


def test_random_walk_stays_in_the_box_and_moves_at_rayleigh_speed():
    start, pos, vel = random_walk(np.random.default_rng(0), 400, 50)
    assert np.all(np.abs(pos) <= 1.1) and np.all(np.abs(start) <= 1.1)
    speed = np.linalg.norm(vel, axis=-1) / 0.02
    expected = 0.13 * 2 * math.pi * math.sqrt(math.pi / 2)  # Rayleigh mean, away from walls
    assert 0.8 * expected < speed.mean() < 1.02 * expected  # slowed near walls only
    assert np.allclose(np.clip(start + vel[0], -1.1, 1.1), pos[0])  # position integrates velocity


def test_random_walk_is_seeded():
    a = random_walk(np.random.default_rng(3), 5, 10)[1]
    b = random_walk(np.random.default_rng(3), 5, 10)[1]
    assert np.array_equal(a, b)


@pytest.mark.parametrize("dog", [True, False])
def test_place_cell_codes_are_distributions_and_decode_back(dog):
    pc = PlaceCells(512, seed=0, dog=dog)
    pos = torch.rand(200, 2) * 2.0 - 1.0
    code = pc.code(pos)
    assert torch.all(code >= 0) and torch.allclose(code.sum(-1), torch.ones(200))
    err = (pc.decode(torch.log(code + 1e-12)) - pos).norm(dim=-1).mean()
    assert err < 0.10  # decoding the target itself lands within 10 cm


def test_always_predicting_the_centre_gives_about_84_cm():
    task = NavigationTask(n_place_cells=64, sequence_length=10, n_val=2000, n_test=10)
    err_cm = 100 * task.splits["val"].positions.norm(dim=-1).mean().item()
    assert err_cm == pytest.approx(84.2, abs=2.0)  # E|p| for p uniform in a 2.2 m square


def test_navigation_trivial_baselines_equal_models_that_ignore_velocity():
    task = NavigationTask(n_place_cells=256, sequence_length=20, n_val=300, n_test=200,
                          place_cell_dog=False)  # nav_cpu's cells
    base = task.trivial_baselines()
    test = task.splits["test"]

    class Constant(torch.nn.Module):  # outputs the same logits at every step
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, velocity, start_code):
            return self.logits.expand(velocity.shape[0], *self.logits.shape)

    stay = Constant(torch.log(test.start_code))  # decodes to the start at every step
    assert base["start_position"]["test_error_cm"] == pytest.approx(task.error_cm(stay, test), rel=1e-6)
    assert base["box_centre"]["val_error_cm"] == pytest.approx(84.2, abs=3.0)
    # the target codes decoded: far better than staying put, and what a model emitting them scores
    floor = task.decoding_floor_cm()
    assert floor < 0.5 * base["start_position"]["test_error_cm"]
    assert floor == pytest.approx(task._error_cm(torch.log(test.codes), test), rel=1e-6)


def test_adding_batches_have_two_markers_and_the_right_target():
    b = adding_batch(np.random.default_rng(0), 500, 50)
    markers = b.x[..., 1]
    assert torch.all(markers.sum(0) == 2)
    assert torch.allclose((b.x[..., 0] * markers).sum(0), b.y)
    mean_mse = ((b.y - 1.0) ** 2).mean().item()
    assert mean_mse == pytest.approx(MEAN_PREDICTOR_MSE, abs=0.02)


def test_adding_task_errors_name_the_field():
    with pytest.raises(ValueError, match="sequence_length"):
        AddingTask(sequence_length=1)
    with pytest.raises(ValueError, match="n_place_cells"):
        PlaceCells(2)


def _adding_cfg(**trainer):
    return {"name": "add", "seed": 0,
            "task": {"name": "adding", "sequence_length": 10, "steps_per_epoch": 50, "n_val": 200, "n_test": 200},
            "model": {"kind": "rnn", "hidden": [32]},
            "methods": [{"name": "moduli", "manifold": "torus", "lam": 0.001},
                        {"name": "magnitude", "sparsity": 0.8, "schedule": "linear", "start": 2, "end": 12,
                         "include": "recurrent"}],
            "trainer": {"epochs": 20, "lr": 0.003, "batch_size": 32, "grad_clip": 0.5, "progress": False,
                        **trainer}}


def test_sparse_adding_model_beats_the_mean_predictor_and_lottery_keeps_the_mask(tmp_path):
    res = run_experiment(parse_config(_adding_cfg()), tmp_path / "src")
    assert res["metrics"]["recurrent_sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert res["metrics"]["test_mse"] < 0.5 * MEAN_PREDICTOR_MSE
    src_state = torch.load(tmp_path / "src" / "last.pt", weights_only=False)["model"]
    lot = run_experiment(parse_config({**_adding_cfg(), "lottery": {"from_run": str(tmp_path / "src")}}),
                         tmp_path / "lot")
    lot_state = torch.load(tmp_path / "lot" / "last.pt", weights_only=False)["model"]
    masks = [k for k in src_state if k.endswith(".mask")]
    assert masks and all(torch.equal(src_state[k], lot_state[k]) for k in masks)  # same ticket
    assert lot["metrics"]["recurrent_sparsity"] == pytest.approx(0.8, abs=1e-3)
    with pytest.raises(FileNotFoundError, match="lottery.from_run"):
        run_experiment(parse_config({**_adding_cfg(), "lottery": {"from_run": str(tmp_path / "nope")}}))


def test_navigation_run_trains_and_reports_decoding_error():
    cfg = {"task": {"name": "navigation", "n_place_cells": 32, "sequence_length": 5, "steps_per_epoch": 20,
                    "n_val": 50, "n_test": 50, "place_cell_dog": False},
           "model": {"kind": "rnn", "nonlinearity": "relu", "rnn_bias": False, "hidden": [32]},
           "methods": [{"name": "moduli", "manifold": "klein"}],
           "trainer": {"epochs": 10, "lr": 0.01, "batch_size": 20, "progress": False}}
    outcome = train_experiment(parse_config(cfg))
    res, task = outcome.record, outcome.experiment.task
    test = task.splits["test"]
    # the trivial guess: the box centre at every step (what an untrained decoder drifts to)
    centre_cm = 100.0 * float(test.positions.norm(dim=-1).mean())
    assert res["status"] == "completed" and 0 < res["metrics"]["test_error_cm"] < centre_cm
    with pytest.raises(ValueError, match="model.kind"):
        run_experiment(parse_config({**cfg, "model": {"kind": "node"}}))


def test_lottery_original_reinit_restores_initial_weights_and_fresh_draws_new_ones(tmp_path):
    from sparsedyn.runner import build_experiment

    cfg = _adding_cfg(epochs=2)
    cfg["methods"][1].update(start=1, end=2)
    run_experiment(parse_config(cfg), tmp_path / "src")
    untrained = build_experiment(parse_config(cfg)).model.state_dict()  # the source run's initial weights
    src_masks = {k: v for k, v in torch.load(tmp_path / "src" / "last.pt", weights_only=False)["model"].items()
                 if k.endswith(".mask")}
    for reinit, same in (("original", True), ("fresh", False)):
        lot = build_experiment(parse_config({**cfg, "lottery": {"from_run": str(tmp_path / "src"),
                                                                "reinit": reinit}})).model.state_dict()
        assert all(torch.equal(lot[k], v) for k, v in src_masks.items())  # the ticket's mask
        w = "rnn.layers.0.parametrizations.weight_hh.original"
        assert torch.equal(lot[w], untrained[w]) is same


def test_the_random_ticket_keeps_each_masks_sparsity_and_moves_its_entries_by_seed(tmp_path):
    from sparsedyn.runner import build_experiment

    cfg = _adding_cfg(epochs=2)
    cfg["methods"][1].update(start=1, end=2)
    run_experiment(parse_config(cfg), tmp_path / "src")
    src_masks = {k: v for k, v in torch.load(tmp_path / "src" / "last.pt", weights_only=False)["model"].items()
                 if k.endswith(".mask")}
    lottery = {"from_run": str(tmp_path / "src"), "mask": "random"}

    def masks(seed):
        state = build_experiment(parse_config({**cfg, "seed": seed, "lottery": lottery})).model.state_dict()
        return {k: state[k] for k in src_masks}

    first, again, other = masks(0), masks(0), masks(1)
    for k, v in src_masks.items():
        assert torch.equal(first[k].sum(), v.sum()) and first[k].shape == v.shape  # same number kept
        assert not torch.equal(first[k], v) and torch.equal(first[k], again[k])  # moved, by the seed
        assert not torch.equal(first[k], other[k])
