"""An interrupted run, stacked sweep job or path resumes to the numbers of the uninterrupted one, for every
registered method (parametrized over the registry: a new method without an entry here fails).

The bug this guards (issue 24): the trainer looked up a parameter's optimizer group through a reference
taken when the optimizer was built; ``Optimizer.load_state_dict`` replaces the group dicts, so after a
resume the proximal step sizes (GroupLasso, LassoNet) used the learning rate of epoch 0 instead of the
cosine-decayed one. Every run here therefore uses a cosine schedule and fine-tuning, and is interrupted
once in the sparsification phase and once while fine-tuning, as a Ctrl-C does (after a checkpoint).
"""

import copy

import pytest

from sparsedyn import train
from sparsedyn.config import parse_config
from sparsedyn.methods.registry import METHODS
from sparsedyn.path import run_path
from sparsedyn.runner import run_experiment, run_stacked

_TRAINER = {"epochs": 6, "finetune_epochs": 3, "lr": 2e-2, "lr_schedule": "cosine", "batch_size": 4,
            "eval_every": 2, "progress": False}
_NODE = {"task": {"system": "sparse_tanh", "system_params": {"n": 3, "parents": 1}, "n_train": 8, "n_val": 4,
                  "n_test": 4, "t_end": 1.0, "n_points": 6},
         "model": {"hidden": [8], "solver": "rk4", "step_size": 0.25}}
_RNN = {"task": {"name": "adding", "sequence_length": 5, "steps_per_epoch": 4, "n_val": 16, "n_test": 16},
        "model": {"kind": "rnn", "hidden": [16]}}

# every registered method: (its model and task, its spec at a strength that acts within 6 epochs)
CASES = {
    "l1": (_NODE, {"name": "l1", "lam": 1e-2}),
    "l0": (_NODE, {"name": "l0", "lam": 1e-2}),
    "pathreg": (_NODE, {"name": "pathreg", "lambda_paths": 1e-2}),
    "cnode": (_NODE, {"name": "cnode", "lam": 1e-2}),
    "group_lasso": (_NODE, {"name": "group_lasso", "lam": 0.3, "hidden": [4]}),
    "lassonet": (_NODE, {"name": "lassonet", "lam": 0.3}),
    "magnitude": (_NODE, {"name": "magnitude", "sparsity": 0.5, "schedule": "linear", "start": 1, "end": 5}),
    "moduli": (_RNN, {"name": "moduli", "manifold": "torus", "lam": 0.05}),
}


def test_every_registered_method_has_a_resume_case():
    assert set(CASES) == set(METHODS), "add the new method to CASES: its resume must be tested"


def _raw(name: str, seed: int = 1) -> dict:
    base, spec = CASES[name]
    return {"name": f"resume_{name}", "seed": seed, **copy.deepcopy(base), "methods": [dict(spec)],
            "trainer": dict(_TRAINER)}


@pytest.fixture
def ctrl_c_after(monkeypatch):
    """``ctrl_c_after(n)``: the next checkpoint of epoch ``n`` in this process is followed by a
    KeyboardInterrupt, as a Ctrl-C arriving during epoch ``n + 1`` of a plain ``run`` (once)."""
    original = train.Trainer._checkpoint

    def arm(n: int) -> None:
        def checkpoint(self, epoch, improved, last=True):
            original(self, epoch, improved, last)
            if epoch == n and last:
                monkeypatch.setattr(train.Trainer, "_checkpoint", original)
                raise KeyboardInterrupt

        monkeypatch.setattr(train.Trainer, "_checkpoint", checkpoint)

    return arm


def _metrics(res: dict) -> dict:
    return {k: v for k, v in res["metrics"].items() if "seconds" not in k}


@pytest.mark.parametrize("stop", [3, 7], ids=["sparsifying", "fine-tuning"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_run_resumes_to_the_uninterrupted_numbers(tmp_path, ctrl_c_after, name, stop):
    full = run_experiment(parse_config(_raw(name)), tmp_path / "full")
    ctrl_c_after(stop)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(parse_config(_raw(name)), tmp_path / "part")
    resumed = run_experiment(parse_config(_raw(name)), tmp_path / "part", resume=True)
    assert _metrics(resumed) == _metrics(full)


@pytest.mark.parametrize("name", sorted(CASES))
def test_stacked_job_resumes_to_the_uninterrupted_numbers(tmp_path, ctrl_c_after, name):
    cfgs = [parse_config(_raw(name, seed)) for seed in (1, 2)]
    full = run_stacked(cfgs, [tmp_path / "full1", tmp_path / "full2"])
    ctrl_c_after(4)  # the first member has checkpointed epoch 4, the second only epoch 3
    parts = [tmp_path / "part1", tmp_path / "part2"]
    with pytest.raises(KeyboardInterrupt):
        run_stacked(cfgs, parts)
    resumed = run_stacked(cfgs, parts, resume=True)
    assert [_metrics(r) for r in resumed] == [_metrics(r) for r in full]


@pytest.mark.parametrize("name", sorted(CASES))
def test_path_resumes_to_the_uninterrupted_numbers(tmp_path, ctrl_c_after, name):
    raw = _raw(name)
    param = next(p for p in ("lam", "lambda_paths", "sparsity") if p in raw["methods"][0])
    strength = raw["methods"][0][param]
    values = [0.0, strength]
    full = run_path(copy.deepcopy(raw), tmp_path / "full", values, progress=False)
    calls = {"n": 0}
    original = train.Trainer.fit

    def fit(self, resume=False):  # interrupt the second point (the first warm-started one) after epoch 3
        calls["n"] += 1
        if calls["n"] == 2:
            ctrl_c_after(3)
        return original(self, resume)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train.Trainer, "fit", fit)
        with pytest.raises(KeyboardInterrupt):
            run_path(copy.deepcopy(raw), tmp_path / "part", values, progress=False)
    resumed = run_path(copy.deepcopy(raw), tmp_path / "part", values, progress=False)
    strip = [{k: v for k, v in r.items() if "seconds" not in k} for r in resumed]
    assert strip == [{k: v for k, v in r.items() if "seconds" not in k} for r in full]
