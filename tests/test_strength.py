"""Relative strengths (trainer.strength: relative): the penalty at initialisation is exactly rho times the
initial data loss, for every penalty method; the calibration leaves the run's random numbers alone."""

import pytest
import torch

from conftest import TINY_RUN
from sparsedyn.config import parse_config
from sparsedyn.methods import L1
from sparsedyn.methods.strength import calibrate
from sparsedyn.nn import MLP
from sparsedyn.runner import build_experiment, initial_data_loss, run_experiment

REL = {**TINY_RUN, "trainer": {**TINY_RUN["trainer"], "strength": "relative"}}


@pytest.mark.parametrize("spec", [
    {"name": "l1", "lam": 0.5}, {"name": "l0", "lam": 0.5}, {"name": "cnode", "lam": 0.5},
    {"name": "pathreg", "lambda_paths": 0.5}, {"name": "group_lasso", "lam": 0.5, "hidden": [4]},
    {"name": "lassonet", "lam": 0.5},
])
def test_at_initialisation_the_penalty_is_rho_times_the_data_loss(spec):
    cfg = parse_config({**REL, "methods": [spec]})
    exp = build_experiment(cfg)
    loss = initial_data_loss(exp.task, exp.model, cfg.trainer.batch_size, cfg.seed)
    assert float(exp.method.penalty(exp.model).detach()) == pytest.approx(0.5 * loss, rel=1e-5)
    (name, absolute), = exp.strengths.items()
    assert absolute != 0.5 and name.startswith(spec["name"])


def test_strength_zero_and_the_random_numbers_of_the_run_are_unchanged():
    absolute = run_experiment(parse_config({**TINY_RUN, "methods": [{"name": "l0", "lam": 0.0}]}))
    relative = run_experiment(parse_config({**REL, "methods": [{"name": "l0", "lam": 0.0}]}))
    assert relative["strengths"] == {"l0.lam": 0.0}
    assert relative["metrics"] == absolute["metrics"]


def test_a_warm_started_point_shares_the_scale_of_a_cold_start(tmp_path):
    first = run_experiment(parse_config({**REL, "methods": [{"name": "l1", "lam": 0.1}]}), tmp_path / "a")
    warm = build_experiment(parse_config({**REL, "methods": [{"name": "l1", "lam": 0.1}],
                                          "warm_start": str(tmp_path / "a" / "sparsified.pt")}))
    assert warm.strengths == first["strengths"]


def test_a_penalty_that_is_zero_at_strength_one_cannot_be_calibrated():
    model = MLP(3, 3, (4,))
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    with pytest.raises(ValueError, match="at strength 1 is 0.0"):
        calibrate(L1(lam=0.1), model, data_loss=1.0)
    with pytest.raises(ValueError, match="positive initial data loss"):
        calibrate(L1(lam=0.1), MLP(3, 3, (4,)), data_loss=0.0)
