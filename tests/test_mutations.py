"""Tests that fail under the one-line edits a mutation review found surviving the suite (issue 24):
each names the edit it catches."""

import copy

import pytest
import torch

from sparsedyn.config import parse_config
from sparsedyn.methods import GroupLasso
from sparsedyn.nn import MLP, NeuralODE
from sparsedyn.rundir import RunDirError, fingerprint
from sparsedyn.runner import build_experiment, run_experiment
from sparsedyn.train import Trainer, TrainSettings

TINY = {
    "name": "m", "seed": 1,
    "task": {"system": "sparse_tanh", "system_params": {"n": 3, "parents": 1}, "n_train": 8, "n_val": 4, "n_test": 4,
             "t_end": 1.0, "n_points": 6},
    "model": {"hidden": [8], "solver": "rk4", "step_size": 0.25},
    "trainer": {"epochs": 4, "lr": 1e-2, "batch_size": 4, "eval_every": 1, "finetune_epochs": 0, "progress": False},
}


def test_group_lasso_threshold_is_lam_times_the_groups_mean_step_by_hand():
    """Catches: the proximal threshold halved (or any other factor)."""
    method = GroupLasso(lam=0.3)
    model = method.prepare(NeuralODE(MLP(2, 2, (3,))))
    w = model.field.layers[0].weight  # (out 2, hidden 3, in 2): groups are w[i, :, k]
    with torch.no_grad():
        w.copy_(torch.arange(1.0, 13.0).reshape(2, 3, 2) / 10)
    before = w.detach().clone()
    steps = torch.full_like(w, 0.5)
    steps[0, :, 1] = torch.tensor([0.1, 0.2, 0.6])  # group (0, 1): mean step 0.3
    method.after_step(model, lr=1.0, step_size=lambda p: steps)
    for i in range(2):
        for k in range(2):
            g = before[i, :, k]
            threshold = 0.3 * steps[i, :, k].mean()
            expected = g * max(0.0, 1 - float(threshold) / float(g.norm()))
            torch.testing.assert_close(w[i, :, k], expected)


def test_the_proximal_step_size_is_adams_bias_corrected_step():
    """Catches: Adam's bias correction dropped from the step sizes handed to proximal methods."""
    exp = build_experiment(parse_config(TINY))
    trainer = Trainer(exp.model, exp.method, exp.task, TrainSettings(lr=0.05, progress=False), None, seed=0)
    p = next(exp.model.parameters())
    for _ in range(3):  # three Adam steps on an arbitrary loss
        trainer.optimizer.zero_grad()
        (sum((q**2).sum() for q in exp.model.parameters()) * 7.0).backward()
        trainer.optimizer.step()
    state = trainer.optimizer.state[p]
    beta2, eps = trainer.optimizer.param_groups[0]["betas"][1], trainer.optimizer.param_groups[0]["eps"]
    hand = 0.05 / ((state["exp_avg_sq"] / (1 - beta2**3)).sqrt() + eps)
    torch.testing.assert_close(trainer._step_size(p), hand)


def test_the_reported_model_is_the_best_fine_tuning_checkpoint_when_fine_tuning_gets_worse(tmp_path):
    """Catches: the best fine-tuning checkpoint not restored (the final weights reported instead). A
    fine-tuning learning rate of 0.3 makes later fine-tuning epochs worse than the first ones."""
    raw = copy.deepcopy(TINY)
    raw["trainer"].update(epochs=6, finetune_epochs=6, finetune_lr=0.3)
    raw["methods"] = [{"name": "l1", "lam": 1e-3}]
    res = run_experiment(parse_config(raw), tmp_path / "r")
    import csv

    with open(tmp_path / "r" / "metrics.csv") as f:
        fine = [float(r["val_mse"]) for r in csv.DictReader(f) if int(r["phase"]) == 2]
    assert fine[-1] > min(fine), "fine-tuning did not get worse: make finetune_lr larger"
    assert res["metrics"]["val_mse"] <= min(fine) * (1 + 1e-6)
    best = torch.load(tmp_path / "r" / "best.pt", weights_only=False)["model"]
    final = torch.load(tmp_path / "r" / "model.pt", weights_only=False)
    final = final.get("model", final) if isinstance(final, dict) else final
    for k, v in best.items():
        assert torch.equal(final[k], v), k


def test_the_run_directory_fingerprint_includes_the_seed(tmp_path):
    """Catches: the fingerprint ignoring ``seed`` (a run of seed 2 would then resume seed 1's checkpoints)."""
    a, b = parse_config(TINY), parse_config({**TINY, "seed": 2})
    assert fingerprint(a.model_dump()) != fingerprint(b.model_dump())
    run_experiment(a, tmp_path / "r")
    with pytest.raises(RunDirError, match="another config"):
        run_experiment(b, tmp_path / "r", resume=True)


def test_the_estimators_graph_is_indexed_output_by_input():
    """Catches: ``SparseODE.graph_`` transposed. Cutting GroupLasso's group (output 0, input 1) must clear
    ``graph_[0, 1]`` and nothing else."""
    import numpy as np

    from sparsedyn import SparseODE
    from sparsedyn.nn.masks import raw_parameter

    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 6, 3)).cumsum(axis=1) * 0.1
    est = SparseODE(method="group_lasso", strength=0.0, method_params={"hidden": [4]}, hidden=(4,), epochs=2,
                    finetune_epochs=0, seed=0).fit(X, t=np.linspace(0, 1, 6))
    layer = est.model_.field.layers[0]
    with torch.no_grad():
        raw_parameter(layer, "weight")[0, :, 1] = 0.0
    est._read_off()
    expected = np.ones((3, 3))
    expected[0, 1] = 0.0
    np.testing.assert_array_equal(est.graph_, expected)
