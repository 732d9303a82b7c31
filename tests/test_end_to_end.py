"""Short fixed-seed trainings: each method moves its own metric in the expected direction."""

import pytest

from sparsedyn.analysis import dependency_matrix, jacobian_scores, recovery_metrics
from sparsedyn.config import parse_config
from sparsedyn.runner import train_experiment
from sparsedyn.tasks.trajectories import masked_mse

BASE = {
    "seed": 0,
    "task": {"system": "sparse_tanh", "system_params": {"n": 5, "parents": 1, "seed": 0}, "n_train": 16,
             "n_val": 4, "n_test": 8, "t_end": 2.0, "n_points": 11, "noise": 0.01},
    "model": {"hidden": [12, 12], "solver": "rk4", "step_size": 0.2},
    "trainer": {"epochs": 150, "lr": 1e-2, "gate_lr": 0.1, "batch_size": 4, "eval_every": 150,
                "lr_schedule": "cosine", "progress": False},
}


def _run(methods):
    """Metrics, plus two numbers to judge them by: the persistence predictor's test MSE and the
    fraction of the dependencies the model cut that are truly absent."""
    outcome = train_experiment(parse_config({**BASE, "methods": methods}))
    res, task, model = outcome.record, outcome.experiment.task, outcome.experiment.model
    test = task.splits["test"]
    persistence = float(masked_mse(test.x0[:, None, :].expand_as(test.y), test))  # x(t) = x0
    cut = dependency_matrix(model).numpy() == 0
    right_cuts = float((task.truth[cut] == 0).mean()) if cut.any() else float("nan")
    jac = jacobian_scores(model, task.field_inputs("train"))  # 176 states: all of them are scored
    return {**res["metrics"], "persistence_mse": persistence, "right_cuts": right_cuts,
            "absent_rate": float((task.truth == 0).mean()), "jac": jac, "cut": cut,
            **{f"jac_{k}": v for k, v in recovery_metrics(jac, task.truth).items() if k.startswith("auroc")}}


@pytest.fixture(scope="module")
def vanilla():
    return _run([])


def test_pathreg_cuts_absent_dependencies_and_recovers_more_of_the_graph(vanilla):
    pathreg = _run([{"name": "pathreg", "lambda_paths": 1e-3, "init_drop": 0.1}])
    assert vanilla["feature_sparsity"] == 0.0 < pathreg["feature_sparsity"]
    # its cuts beat cutting at random (which would be right at the base rate of absent edges)
    assert pathreg["right_cuts"] > pathreg["absent_rate"]
    assert pathreg["weight_sparsity"] > 0.3 > vanilla["weight_sparsity"]
    assert pathreg["recovery_auroc"] > vanilla["recovery_auroc"]
    assert pathreg["test_mse"] < pathreg["persistence_mse"] / 2  # a working model, not a trivial one


def test_group_lasso_removes_absent_input_groups(vanilla):
    gl = _run([{"name": "group_lasso", "lam": 0.01, "hidden": [8]}])  # lam on the loss scale (Adam-scaled prox)
    assert gl["feature_sparsity"] > 0.25 and gl["right_cuts"] == 1.0  # every removed input is truly absent
    assert gl["recovery_auroc"] > vanilla["recovery_auroc"]
    assert gl["test_mse"] < gl["persistence_mse"] / 2
    # the functional score agrees with the structure (a cut input moves no output) and is what the run recorded
    assert (gl["jac"][gl["cut"]] == 0).all()
    assert gl["recovery_jacobian_auroc"] == pytest.approx(gl["jac_auroc"])
    assert vanilla["recovery_jacobian_auroc"] == pytest.approx(vanilla["jac_auroc"])
    assert gl["recovery_jacobian_auroc_offdiag"] == pytest.approx(gl["jac_auroc_offdiag"])  # without self-loops


def test_magnitude_pruning_reaches_its_target(vanilla):
    mp = _run([{"name": "magnitude", "sparsity": 0.8, "schedule": "cubic", "start": 20, "end": 100}])
    assert mp["weight_sparsity"] > 0.79 and vanilla["weight_sparsity"] == 0.0
