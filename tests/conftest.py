import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run (a test run must not pass or fail by chance);
# HYPOTHESIS_PROFILE=explore draws fresh ones to look for new counterexamples (then pin what it finds).
settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

# Under pytest-xdist (the README's command runs two workers on a 2-core machine) each worker keeps to one
# torch thread: two workers with two threads each spin on each other's cores (a 20 s test took 116 s).
# Runs set their own thread count from their config (trainer.threads), as everywhere.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

SHARED_DATA = Path(__file__).parents[2] / "shared" / "data"

# A PathReg NODE on a 3-variable sparse tanh system: a whole run takes well under a second.
TINY_RUN = {
    "name": "tiny", "seed": 1,
    "task": {"system": "sparse_tanh", "system_params": {"n": 3, "parents": 1}, "n_train": 8, "n_val": 4, "n_test": 4,
             "t_end": 1.0, "n_points": 6},
    "model": {"hidden": [8], "solver": "rk4", "step_size": 0.25},
    "methods": [{"name": "pathreg", "lambda_paths": 1e-3}],
    "trainer": {"epochs": 6, "lr": 1e-2, "batch_size": 4, "eval_every": 1, "finetune_epochs": 0, "progress": False},
}


def assert_same_bits_alone_and_stacked(tmp_path: Path, trainer: dict | None = None,
                                       methods: list | None = None) -> None:
    """TINY_RUN (with ``trainer`` overrides, and ``methods`` instead of its PathReg where given) at seeds 0 and 1,
    each trained alone and the two in one lockstep: equal metrics and saved weights, bit for bit."""
    import json

    from sparsedyn.config import parse_config
    from sparsedyn.runner import run_experiment, run_stacked

    cfgs = []
    for seed in (0, 1):
        raw = json.loads(json.dumps(TINY_RUN))
        raw["seed"] = seed
        raw["trainer"].update(trainer or {})
        if methods is not None:
            raw["methods"] = methods
        cfgs.append(parse_config(raw))
    alone = [run_experiment(c, tmp_path / f"alone{k}") for k, c in enumerate(cfgs)]
    stacked = run_stacked(cfgs, [tmp_path / f"stacked{k}" for k in range(2)])
    for k, (a, s) in enumerate(zip(alone, stacked)):
        assert a["metrics"] == s["metrics"]
        wa = torch.load(tmp_path / f"alone{k}" / "model.pt", weights_only=False)["model"]
        ws = torch.load(tmp_path / f"stacked{k}" / "model.pt", weights_only=False)["model"]
        assert wa.keys() == ws.keys() and all(torch.equal(wa[n], ws[n]) for n in wa)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def require_shared(subdir: str) -> Path:
    """The real data set ``../shared/data/<subdir>`` beside the checkout, or a skip with the reason printed."""
    path = SHARED_DATA / subdir
    if not path.exists():
        msg = f"the real data are not beside the checkout ({path})"
        print(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def stop_after(monkeypatch):
    """``stop_after(n)``: the next training run in this process stops (checkpointed) after epoch ``n``,
    as a sweep worker does on the first Ctrl-C."""
    from sparsedyn import train

    original = train.Trainer._checkpoint

    def arm(n: int) -> None:
        def checkpoint(self, epoch, improved, last=True):
            original(self, epoch, improved, last)
            if epoch == n:
                train.request_stop()
                monkeypatch.setattr(train.Trainer, "_checkpoint", original)  # once

        monkeypatch.setattr(train.Trainer, "_checkpoint", checkpoint)

    yield arm
    train.clear_stop()
