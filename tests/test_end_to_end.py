"""Short fixed-seed trainings: each method moves its own metric in the expected direction."""

import pytest

from sparsedyn.config import parse_config
from sparsedyn.runner import run_experiment

BASE = {
    "seed": 0,
    "task": {"system": "sparse_tanh", "system_params": {"n": 5, "parents": 1, "seed": 0}, "n_train": 16,
             "n_val": 4, "n_test": 8, "t_end": 2.0, "n_points": 11, "noise": 0.01},
    "model": {"hidden": [12, 12], "solver": "rk4", "step_size": 0.2},
    "trainer": {"epochs": 150, "lr": 1e-2, "gate_lr": 0.1, "batch_size": 4, "eval_every": 150,
                "lr_schedule": "cosine", "progress": False},
}


def _run(methods):
    return run_experiment(parse_config({**BASE, "methods": methods}))["metrics"]


@pytest.fixture(scope="module")
def vanilla():
    return _run([])


def test_pathreg_recovers_more_of_the_graph_than_vanilla(vanilla):
    pathreg = _run([{"name": "pathreg", "lambda_paths": 1e-3, "init_drop": 0.1}])
    assert pathreg["feature_sparsity"] > vanilla["feature_sparsity"]
    assert pathreg["weight_sparsity"] > 0.3 > vanilla["weight_sparsity"]
    assert pathreg["recovery_auroc"] > vanilla["recovery_auroc"]
    assert pathreg["test_mse"] < 10 * vanilla["test_mse"]  # still a working model


def test_group_lasso_removes_input_groups(vanilla):
    gl = _run([{"name": "group_lasso", "lam": 0.5, "hidden": [8]}])
    assert gl["feature_sparsity"] > vanilla["feature_sparsity"]
    assert gl["recovery_auroc"] > vanilla["recovery_auroc"]


def test_magnitude_pruning_reaches_its_target(vanilla):
    mp = _run([{"name": "magnitude", "sparsity": 0.8, "schedule": "cubic", "start": 20, "end": 100}])
    assert mp["weight_sparsity"] > 0.79 and vanilla["weight_sparsity"] == 0.0
