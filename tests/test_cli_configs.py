import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sparsedyn.cli import app
from sparsedyn.config import load_config, parse_config
from sparsedyn.runner import run_experiment

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_builds_and_trains(path):
    raw = load_config(path).model_dump()
    raw["trainer"].update(epochs=2, progress=False, eval_every=1)
    if raw["task"]["name"] == "systems":
        raw["task"].update(n_train=4, n_val=2, n_test=2)
    elif raw["task"]["name"] == "language":  # a few thousand tokens, a small model
        raw["task"].update(max_train_tokens=3000, max_eval_tokens=1000)
        raw["model"].update(hidden=[32], embedding_size=16)
    else:  # shrink RNN tasks (nav_paper has 4096 units) to a few small steps
        raw["task"].update(steps_per_epoch=2, n_val=20, n_test=20, sequence_length=5)
        raw["model"]["hidden"] = [32]
        if raw["task"]["name"] == "navigation":
            raw["task"]["n_place_cells"] = 16
    pruning = [m for m in raw["methods"] if m["name"] == "magnitude"]
    for m in pruning:
        m.update(start=1, end=2)
    res = run_experiment(parse_config(raw))
    assert res["status"] == "completed"
    assert all(math.isfinite(v) for k, v in res["metrics"].items() if "auroc" not in k and "auprc" not in k)
    if pruning:
        key = "recurrent_sparsity" if pruning[0].get("include") == "recurrent" else "weight_sparsity"
        assert res["metrics"][key] == pytest.approx(pruning[0]["sparsity"], abs=0.01)


def test_cli_list_names_every_method_and_system():
    out = CliRunner().invoke(app, ["list"]).output
    for name in ("pathreg", "cnode", "group_lasso", "lassonet", "magnitude", "l0", "l1", "moduli", "navigation",
                 "lorenz96", "lotka_volterra", "sparse_tanh", "sparse_linear", "oscillators"):
        assert name in out


def test_cli_run_writes_results_and_rejects_bad_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "name: cli\ntask: {system: sparse_tanh, system_params: {n: 3, parents: 1}, n_train: 4, n_val: 2,"
        " n_test: 2, t_end: 1.0, n_points: 5}\nmodel: {hidden: [4]}\n"
        "methods: [{name: pathreg, lambda_paths: 0.001}]\ntrainer: {epochs: 2, progress: false}\n"
    )
    res = CliRunner().invoke(app, ["run", str(cfg), "--seed", "3", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["seed"] == 3 and "feature_sparsity" in results["metrics"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [{name: pathreg, lambda_paths: -1}]\n")
    res = CliRunner().invoke(app, ["run", str(bad)])
    assert res.exit_code == 2 and "methods.0.lambda_paths" in res.output
