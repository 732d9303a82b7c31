"""Issue 12 probes on single runs: honest statuses, run directories that cannot be clobbered,
checkpoints that cannot block a resume, and thread counts that are part of the run."""

import json
import threading

import pytest
import torch

from conftest import TINY_RUN
from sparsedyn.config import parse_config
from sparsedyn.rundir import RunDirectory, RunDirError, fingerprint
from sparsedyn.runner import build_experiment, run_experiment, train_experiment

TINY = {**TINY_RUN, "trainer": {**TINY_RUN["trainer"], "eval_every": 6}}


def _cfg(trainer=None, model=None, **top):
    raw = json.loads(json.dumps(TINY))
    raw["trainer"].update(trainer or {})
    raw["model"].update(model or {})
    raw.update(top)
    return parse_config(raw)


# -- wrong status -----------------------------------------------------------------------------

def test_a_blow_up_before_the_first_scheduled_evaluation_is_diverged(tmp_path):
    # probe: lr 1e6, tanh field, first evaluation at the end: was "completed" with val_mse ~1e12
    res = run_experiment(_cfg(trainer={"lr": 1e6}), tmp_path / "r")
    assert res["status"] == "diverged", res["message"]
    assert "x best" in res["message"] and "epoch 0" in res["message"]
    # the best checkpoint is the untrained model's (epoch 0): the reported score is its score
    best = torch.load(tmp_path / "r" / "best.pt", weights_only=False)
    assert best["epoch"] == 0 and res["metrics"]["val_mse"] == pytest.approx(best["best_value"], rel=1e-6)


def test_a_nan_at_epoch_one_restores_the_epoch_0_checkpoint_that_exists(tmp_path):
    # probe: ReLU, lr 1e6 -> NaN at epoch 1, said "restored the best checkpoint (epoch 0)" with no best.pt
    cfg = _cfg(trainer={"lr": 1e6, "eval_every": 1}, model={"activation": "relu", "hidden": [64, 64]},
               methods=[])
    outcome = train_experiment(cfg, tmp_path / "r")
    res = outcome.record
    assert res["status"] == "diverged" and "restored the best checkpoint (epoch 0)" in res["message"]
    best = torch.load(tmp_path / "r" / "best.pt", weights_only=False)
    assert best["epoch"] == 0
    untrained = build_experiment(cfg).model.state_dict()  # same seed -> the same initial weights
    restored = outcome.experiment.model.state_dict()
    assert all(torch.equal(untrained[k], restored[k]) for k in untrained)


def test_without_any_finite_evaluation_the_message_does_not_claim_a_restore(tmp_path):
    class Broken:
        monitor = "val"

        def train_batches(self, batch_size, generator):
            yield torch.ones(1)

        def loss(self, model, batch):
            return model(batch).sum()

        def evaluate(self, model):
            return {"val": float("nan")}

    from sparsedyn.methods.base import Compose
    from sparsedyn.train import Trainer, TrainSettings

    result = Trainer(torch.nn.Linear(1, 1), Compose([]), Broken(), TrainSettings(epochs=2, eval_every=1,
                                                                                 progress=False)).fit()
    assert result.status == "diverged" and result.best_epoch is None
    assert "restored" not in result.message and "no finite evaluation" in result.message


# -- run directories --------------------------------------------------------------------------

def test_another_config_into_a_finished_run_directory_is_refused_and_leaves_it_intact(tmp_path):
    run_experiment(_cfg(), tmp_path / "r")
    before = (tmp_path / "r" / "results.json").read_bytes()
    with pytest.raises(RunDirError, match="another config.*--overwrite"):
        run_experiment(_cfg(trainer={"lr": 2e-2}), tmp_path / "r")
    assert (tmp_path / "r" / "results.json").read_bytes() == before
    with pytest.raises(RunDirError, match="another config"):  # --resume with another config, too
        run_experiment(_cfg(trainer={"lr": 2e-2}), tmp_path / "r", resume=True)
    # a cosmetic change (name, progress bar) is the same experiment
    run_experiment(_cfg(name="renamed", trainer={"progress": False}), tmp_path / "r", resume=True)


def test_overwrite_replaces_and_an_interrupted_overwrite_leaves_no_old_results(tmp_path, stop_after):
    run_experiment(_cfg(), tmp_path / "r")
    stop_after(2)
    res = run_experiment(_cfg(trainer={"lr": 2e-2}), tmp_path / "r", overwrite=True)
    assert res["status"] == "interrupted"
    assert not (tmp_path / "r" / "results.json").exists()  # the old config's results are gone with it
    recorded = json.loads((tmp_path / "r" / "run.json").read_text())["fingerprint"]
    assert recorded == fingerprint(_cfg(trainer={"lr": 2e-2}).model_dump())


def test_a_second_writer_is_refused_while_the_first_holds_the_directory(tmp_path):
    fp = fingerprint(_cfg().model_dump())
    with RunDirectory(tmp_path / "r", fp), pytest.raises(RunDirError, match="another run .*pid"):
        run_experiment(_cfg(), tmp_path / "r")
    run_experiment(_cfg(), tmp_path / "r")  # released: the next run goes ahead


def test_two_concurrent_runs_into_one_directory_do_not_mix(tmp_path):
    errors, results = [], []

    def go():
        try:
            results.append(run_experiment(_cfg(trainer={"epochs": 30}), tmp_path / "r"))
        except RunDirError as e:
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1 and len(errors) == 1


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_an_unreadable_last_checkpoint_falls_back_to_best_with_a_message(tmp_path, capsys, stop_after, damage):
    from sparsedyn.train import clear_stop

    full = run_experiment(_cfg(trainer={"eval_every": 1}), tmp_path / "full")
    stop_after(4)
    run_experiment(_cfg(trainer={"eval_every": 1}), tmp_path / "r")
    clear_stop()
    last = tmp_path / "r" / "last.pt"
    last.write_bytes(last.read_bytes()[:100] if damage == "truncated" else b"")
    res = run_experiment(_cfg(trainer={"eval_every": 1}), tmp_path / "r", resume=True)
    out = capsys.readouterr()
    assert f"cannot resume from {last}" in out.out + out.err
    assert res["status"] == "completed" and res["epochs_run"] == 6
    best_epoch = torch.load(tmp_path / "r" / "best.pt", weights_only=False)["epoch"]
    if best_epoch == 4:  # best.pt was the last epoch before the stop: the resume is exact
        assert res["metrics"] == full["metrics"]


def test_unreadable_last_and_best_restart_from_scratch_to_the_same_numbers(tmp_path, capsys, stop_after):
    from sparsedyn.train import clear_stop

    full = run_experiment(_cfg(), tmp_path / "full")
    stop_after(3)
    run_experiment(_cfg(), tmp_path / "r")
    clear_stop()
    for name in ("last.pt", "best.pt"):
        (tmp_path / "r" / name).write_bytes(b"\x00garbage")
    res = run_experiment(_cfg(), tmp_path / "r", resume=True)
    assert "starting from scratch" in capsys.readouterr().out
    assert res["metrics"] == full["metrics"]


# -- reproducibility --------------------------------------------------------------------------

def test_threads_are_a_run_setting_so_run_and_sweep_give_the_same_numbers(tmp_path):
    # probe: adding_cpu gave 0.0225 with `sparsedyn run` (2 threads) and 0.0114 in a sweep worker (1)
    from sparsedyn.sweep import parse_sweep, run_sweep

    base = {"name": "thr", "task": {"name": "adding", "sequence_length": 20, "steps_per_epoch": 20, "n_val": 200,
                                    "n_test": 200},
            "model": {"kind": "rnn", "cell": "elman", "hidden": [256]},
            "trainer": {"epochs": 4, "lr": 3e-3, "batch_size": 64, "eval_every": 4, "progress": False}}
    previous = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's setting must not leak into the run
    try:
        direct = run_experiment(parse_config(base), tmp_path / "run")
        assert torch.get_num_threads() == 2  # restored afterwards
    finally:
        torch.set_num_threads(previous)
    spec = parse_sweep({"name": "thr", "base": base, "seeds": [0]})
    run_sweep(spec, tmp_path / "sweep", workers=1, progress=False)
    swept = json.loads((tmp_path / "sweep" / "default" / "seed0" / "results.json").read_text())
    assert swept["threads"] == direct["threads"] == 1
    assert swept["metrics"] == direct["metrics"]
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert recorded["threads"] == 1
