"""Exit codes and messages that agree across commands (issue 24): diverged runs and sweeps, finished runs
re-run, rescore on bad input."""

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from sparsedyn.cli import app

BASE = {
    "task": {"system": "sparse_tanh", "system_params": {"n": 3, "parents": 1}, "n_train": 4, "n_val": 2,
             "n_test": 2, "t_end": 1.0, "n_points": 5},
    "model": {"hidden": [4], "solver": "rk4", "step_size": 0.25},
    "trainer": {"epochs": 3, "progress": False},
}
EXPLODES = {**BASE, "trainer": {"epochs": 6, "eval_every": 6, "lr": 1e6, "progress": False}}


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_diverged_run_and_a_sweep_with_a_diverged_point_both_exit_1(tmp_path):
    run = _invoke("run", _write(tmp_path / "c.yaml", {"name": "x", **EXPLODES}), "--out", tmp_path / "r")
    assert run.exit_code == 1 and "diverged" in run.output
    sweep = _write(tmp_path / "s.yaml", {"name": "s", "base": EXPLODES, "seeds": [0]})
    res = _invoke("sweep", sweep, "--out", tmp_path / "runs", "--workers", "1")
    assert res.exit_code == 1 and "1 of 1 points diverged" in res.output, res.output


def test_re_running_a_finished_run_says_it_is_complete_instead_of_retraining(tmp_path):
    cfg = _write(tmp_path / "c.yaml", {"name": "x", **BASE})
    assert _invoke("run", cfg, "--out", tmp_path / "r").exit_code == 0
    stamp = (tmp_path / "r" / "results.json").stat().st_mtime_ns
    again = _invoke("run", cfg, "--out", tmp_path / "r")
    assert again.exit_code == 0 and "complete" in again.output and "--overwrite" in again.output
    assert (tmp_path / "r" / "results.json").stat().st_mtime_ns == stamp
    redo = _invoke("run", cfg, "--out", tmp_path / "r", "--overwrite")
    assert redo.exit_code == 0 and (tmp_path / "r" / "results.json").stat().st_mtime_ns != stamp


def test_rescore_names_a_corrupt_results_file_and_refuses_an_empty_folder(tmp_path):
    cfg = _write(tmp_path / "c.yaml", {"name": "x", **BASE})
    assert _invoke("run", cfg, "--out", tmp_path / "runs" / "good").exit_code == 0
    bad = tmp_path / "runs" / "bad"
    bad.mkdir()
    (bad / "results.json").write_text("{not json")
    res = _invoke("rescore", tmp_path / "runs")
    assert res.exit_code == 0 and str(bad / "results.json") in res.output and "1 skipped" in res.output
    (tmp_path / "empty").mkdir()
    empty = _invoke("rescore", tmp_path / "empty")
    assert empty.exit_code == 2 and "no finished runs" in empty.output
    assert json.loads((tmp_path / "runs" / "good" / "results.json").read_text())["status"] == "completed"


def test_a_report_on_runs_of_two_tasks_gives_each_its_own_table_and_trivial_predictors(tmp_path):
    from sparsedyn.config import parse_config
    from sparsedyn.report import build_report
    from sparsedyn.run_records import collect
    from sparsedyn.runner import run_experiment

    other = {**BASE, "task": {**BASE["task"], "system": "lotka_volterra", "system_params": {}}}
    run_experiment(parse_config({"name": "a", **BASE}), tmp_path / "runs" / "tanh")
    run_experiment(parse_config({"name": "b", **other}), tmp_path / "runs" / "lv")
    records = {Path(r["run_dir"]).name: r for r in collect(tmp_path / "runs")}
    assert records["tanh"]["labels"]["task"] == "systems/sparse_tanh"
    assert records["lv"]["labels"]["task"] == "systems/lotka_volterra"
    md = (build_report(tmp_path / "runs")["out"] / "report.md").read_text()
    assert "systems/sparse_tanh" in md and "systems/lotka_volterra" in md
    for name in ("tanh", "lv"):  # each table's trivial rows are its own task's
        mean = records[name]["baselines"]["train_mean"]["test_mse"]
        assert f"{mean:.3g}" in md


def test_set_overrides_a_config_field_on_run_path_and_sweep_and_is_validated_like_the_file(tmp_path):
    cfg = _write(tmp_path / "c.yaml", {"name": "x", **BASE, "methods": [{"name": "l1", "lam": 0.01}]})
    res = _invoke("run", cfg, "--out", tmp_path / "r", "--set", "trainer.epochs=2", "--set", "methods.0.lam=0.5")
    assert res.exit_code == 0, res.output
    written = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert written["trainer"]["epochs"] == 2 and written["methods"][0]["lam"] == 0.5
    bad = _invoke("run", cfg, "--out", tmp_path / "q", "--set", "trainer.epochs=0")
    assert bad.exit_code == 2 and "trainer.epochs" in bad.output
    assert _invoke("run", cfg, "--set", "trainer.epochs").exit_code == 2  # not KEY=VALUE
    path = _invoke("path", cfg, "--out", tmp_path / "p", "--values", "0,0.1", "--set", "trainer.epochs=2")
    assert path.exit_code == 0, path.output
    assert yaml.safe_load((tmp_path / "p" / "lam=0.1" / "config.yaml").read_text())["trainer"]["epochs"] == 2
    sweep = _write(tmp_path / "s.yaml", {"name": "s", "base": BASE, "seeds": [0]})
    res = _invoke("sweep", sweep, "--out", tmp_path / "runs", "--workers", "1", "--set", "trainer.epochs=2")
    assert res.exit_code == 0, res.output
    assert yaml.safe_load((tmp_path / "runs" / "default" / "seed0" / "config.yaml").read_text())["trainer"][
        "epochs"] == 2
