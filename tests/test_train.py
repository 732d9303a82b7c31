import csv

import pytest
import torch

from conftest import TINY_RUN as TINY
from sparsedyn.config import parse_config
from sparsedyn.runner import build_experiment, run_experiment, train_experiment
from sparsedyn.train import Trainer, TrainSettings


def _cfg(**overrides):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    for key, value in overrides.items():
        section, field = key.split("__")
        raw[section][field] = value
    return parse_config(raw)


def test_same_seed_gives_identical_numbers(tmp_path):
    a = run_experiment(_cfg(), tmp_path / "a")
    b = run_experiment(_cfg(), tmp_path / "b")
    assert a["metrics"] == b["metrics"]
    c = run_experiment(parse_config({**TINY, "seed": 2}), tmp_path / "c")
    assert c["metrics"] != a["metrics"]


def test_resume_continues_to_the_same_final_numbers(tmp_path, stop_after):
    from sparsedyn.train import clear_stop

    full = run_experiment(_cfg(), tmp_path / "full")
    stop_after(3)
    part = run_experiment(_cfg(), tmp_path / "part")  # stopped on request after 3 epochs
    assert part["status"] == "interrupted" and not (tmp_path / "part" / "results.json").exists()
    clear_stop()
    resumed = run_experiment(_cfg(), tmp_path / "part", resume=True)
    assert resumed["metrics"] == full["metrics"]
    with open(tmp_path / "part" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 7))


def test_run_directory_contents(tmp_path):
    run_experiment(_cfg(), tmp_path / "run")
    for name in ("config.yaml", "metrics.csv", "last.pt", "best.pt", "results.json", "dependency.pt"):
        assert (tmp_path / "run" / name).exists(), name
    assert not list((tmp_path / "run").glob("*.tmp"))  # atomic writes leave no debris


def test_divergence_stops_with_message_and_keeps_best_checkpoint(tmp_path):
    exp = build_experiment(_cfg(trainer__epochs=8))
    settings = TrainSettings(epochs=8, lr=1e-2, batch_size=4, eval_every=1, progress=False)
    trainer = Trainer(exp.model, exp.method, exp.task, settings, tmp_path, seed=0)
    original_loss = exp.task.loss
    calls = {"n": 0}

    def exploding_loss(model, batch):  # finite for 3 epochs (2 batches each), then NaN
        calls["n"] += model.training
        loss = original_loss(model, batch)
        return loss * float("nan") if calls["n"] > 6 and model.training else loss

    exp.task.loss = exploding_loss
    result = trainer.fit()
    assert result.status == "diverged"
    assert "non-finite" in result.message and "best checkpoint" in result.message
    assert result.epochs_run == 3
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    assert best["epoch"] == result.best_epoch
    for k, v in best["model"].items():  # the model now holds the best weights, not NaN ones
        assert torch.equal(exp.model.state_dict()[k], v)
    assert all(torch.isfinite(p).all() for p in exp.model.parameters())


def test_methods_hooks_are_called_by_the_trainer():
    from sparsedyn.methods import Method

    class Spy(Method):
        def __init__(self):
            self.steps, self.epochs, self.finalized, self.step_sizes = 0, [], 0, []

        def after_step(self, model, lr, step_size=None):
            self.steps += 1
            self.step_sizes.append(step_size)

        def on_epoch_end(self, model, epoch):
            self.epochs.append(epoch)

        def finalize(self, model):
            self.finalized += 1

    exp = build_experiment(_cfg())
    spy = Spy()
    # 4 sparsification epochs of 2 batches, then one fine-tuning epoch (a quarter): no hooks there
    result = Trainer(exp.model, spy, exp.task, TrainSettings(epochs=4, batch_size=4, progress=False)).fit()
    assert result.epochs_run == 5 and [r["phase"] for r in result.history] == [1, 1, 1, 1, 2]
    assert spy.steps == 4 * 2 and spy.epochs == [1, 2, 3, 4] and spy.finalized == 1
    assert all(callable(f) for f in spy.step_sizes)


@pytest.mark.parametrize("schedule", ["linear", "cubic"])
def test_gradual_pruning_through_the_trainer_reaches_target(tmp_path, schedule):
    cfg = _cfg(trainer__epochs=5)
    raw = cfg.model_dump()
    raw["methods"] = [{"name": "magnitude", "sparsity": 0.8, "schedule": schedule, "start": 1, "end": 4}]
    outcome = train_experiment(parse_config(raw))
    res = outcome.record
    n = sum(p.numel() for name, p in outcome.experiment.model.named_parameters() if "original" in name)
    assert res["metrics"]["weight_sparsity"] == pytest.approx(round(0.8 * n) / n)


@pytest.mark.parametrize("methods,n_gates", [([{"name": "l0"}], 2), ([{"name": "pathreg"}], 2),
                                             ([{"name": "l1"}], 0)])
def test_gate_parameters_train_at_gate_lr_through_the_methods_hook(methods, n_gates):
    exp = build_experiment(parse_config({**TINY, "methods": methods,
                                         "trainer": {**TINY["trainer"], "lr": 1e-3, "gate_lr": 0.2}}))
    trainer = Trainer(exp.model, exp.method, exp.task, TrainSettings(lr=1e-3, gate_lr=0.2, progress=False))
    groups = {g["role"]: g for g in trainer.optimizer.param_groups}
    gates = groups.get("gates", {"params": []})["params"]
    assert len(gates) == n_gates and all(g.shape == p.shape for g, p in zip(gates, exp.method.parameter_groups(
        exp.model).get("gates", [])))
    if n_gates:
        assert groups["gates"]["lr"] == 0.2 and groups["weights"]["lr"] == 1e-3
    n_params = sum(1 for _ in exp.model.parameters())
    assert sum(len(g["params"]) for g in trainer.optimizer.param_groups) == n_params  # each once
