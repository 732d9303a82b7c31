"""`sparsedyn rescore`: a finished run's analysis metrics recomputed from its saved model equal what
the run computed when it finished; a run made before a metric existed gets it; nothing else moves."""

import json

import pytest
from typer.testing import CliRunner

from sparsedyn.cli import app
from sparsedyn.config import parse_config
from sparsedyn.rescore import rescore_runs
from sparsedyn.runner import run_experiment

CONFIG = {"name": "r", "seed": 0,
          "task": {"system": "sparse_tanh", "system_params": {"n": 3, "parents": 1}, "n_train": 4, "n_val": 2,
                   "n_test": 2, "t_end": 1.0, "n_points": 5},
          "model": {"hidden": [6]}, "methods": [{"name": "l0", "lam": 0.01}],
          "trainer": {"epochs": 4, "finetune_epochs": 2, "progress": False}}


def test_rescore_restores_what_the_run_computed_and_adds_missing_metrics(tmp_path):
    runs = tmp_path / "runs"
    run_experiment(parse_config(CONFIG), runs / "a")  # finishes in phase 2: masks, not gates, on reload
    path = runs / "a" / "results.json"
    original = json.loads(path.read_text())
    old = json.loads(path.read_text())
    del old["metrics"]["recovery_jacobian_auroc"]  # as if made before the metric existed
    old["metrics"]["recovery_auroc"] = -1.0  # and stale
    path.write_text(json.dumps(old))
    res = rescore_runs(runs, progress=False)
    assert res["rescored"] == 1 and res["metrics"] == ["recovery_auroc", "recovery_jacobian_auroc"]
    now = json.loads(path.read_text())
    assert now["metrics"] == pytest.approx(original["metrics"])  # every metric as the run computed it
    assert {k: v for k, v in now.items() if k != "metrics"} == {k: v for k, v in original.items() if k != "metrics"}
    assert rescore_runs(runs, progress=False)["up_to_date"] == 1  # nothing left to change


def test_rescore_skips_unfinished_runs_and_names_a_missing_folder(tmp_path):
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "results.json").write_text(json.dumps({"status": "diverged", "metrics": {}}))
    assert rescore_runs(tmp_path / "runs", progress=False)["skipped"] == 1
    res = CliRunner().invoke(app, ["rescore", str(tmp_path / "nowhere")])
    assert res.exit_code != 0 and "nowhere" in res.output
