"""Issue 12 probes on inputs and messages: bad files, bad configs, bad arguments and the report."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sparsedyn.cli import app
from sparsedyn.config import ConfigError, load_config, parse_config
from sparsedyn.runner import run_experiment
from sparsedyn.sweep import parse_sweep
from sparsedyn.tasks.hematopoiesis import read_lineage

TINY = {
    "name": "tiny", "seed": 0,
    "task": {"system": "sparse_tanh", "system_params": {"n": 3, "parents": 1}, "n_train": 4, "n_val": 2,
             "n_test": 2, "t_end": 1.0, "n_points": 5},
    "model": {"hidden": [4], "solver": "rk4", "step_size": 0.25},
    "trainer": {"epochs": 2, "progress": False},
}


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


# -- files ------------------------------------------------------------------------------------

def _lineage_file(folder: Path, truncate: bool) -> Path:
    path = folder / "trajectories" / "mono_12_norm.csv.gz"
    path.parent.mkdir(parents=True)
    rows = "dpt_pseudotime\tG1\tG2\n" + "".join(f"{i / 500}\t{i % 7}\t{i % 3}\n" for i in range(500))
    blob = gzip.compress(rows.encode())
    path.write_bytes(blob[: len(blob) // 2] if truncate else blob)
    return path


def test_a_truncated_csv_gz_is_one_error_naming_the_file(tmp_path):
    # probe: a truncated .csv.gz printed only "Aborted." (gzip's EOFError names no file)
    path = _lineage_file(tmp_path, truncate=True)
    with pytest.raises(ValueError, match=f"{path}: cannot read the file.*truncated"):
        read_lineage(tmp_path, "mono", "12")


def test_an_intact_csv_gz_still_reads(tmp_path):
    _lineage_file(tmp_path, truncate=False)
    t, x, genes = read_lineage(tmp_path, "mono", "12")
    assert genes == ["G1", "G2"] and x.shape == (500, 2) and t[-1] == pytest.approx(499 / 500)


def test_the_cli_prints_one_line_for_a_runtime_error_and_the_traceback_with_debug(tmp_path):
    cfg = _write(tmp_path / "c.yaml", {**TINY, "task": {"name": "mocap", "data_dir": "missing"}})
    res = subprocess.run([sys.executable, "-m", "sparsedyn.cli", "run", str(cfg), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "missing") in lines[0] and "Traceback" not in res.stderr
    debug = subprocess.run([sys.executable, "-m", "sparsedyn.cli", "--debug", "run", str(cfg), "--out",
                            str(tmp_path / "r2")], capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_an_empty_checkpoint_via_the_cli_is_named_not_aborted(tmp_path):
    cfg = _write(tmp_path / "c.yaml", TINY)
    assert _invoke("run", cfg, "--out", tmp_path / "r").exit_code == 0
    (tmp_path / "r" / "last.pt").write_bytes(b"")
    res = _invoke("run", cfg, "--out", tmp_path / "r", "--resume")
    assert res.exit_code == 0, res.output
    assert f"cannot resume from {tmp_path / 'r' / 'last.pt'}" in res.output and "Aborted" not in res.output


# -- configs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "{}\n"])
def test_an_empty_yaml_is_rejected(tmp_path, text):
    # probe: an empty YAML trained the default experiment
    with pytest.raises(ConfigError, match="empty"):
        load_config(_write(tmp_path / "c.yaml", text))


def test_a_non_numeric_strength_names_its_own_field():
    # probe: `lambda_paths: abc` was reported as the made-up field `methods.0.could`
    with pytest.raises(ConfigError, match=r"methods\.0\.lambda_paths: .*number.*'abc'") as e:
        parse_config({**TINY, "methods": [{"name": "pathreg", "lambda_paths": "abc"}]})
    assert "could" not in str(e.value)


@pytest.mark.parametrize("axis,match", [
    ("methods.3.lam", r"grid: methods\.3\.lam: methods is a list of 1; '3' is not an index"),
    ("trainer.lr.value", r"grid: trainer\.lr\.value: trainer\.lr is 0\.01, not a mapping"),
])
def test_grid_axes_that_do_not_fit_the_config_are_config_errors(axis, match):
    # probe: both gave tracebacks
    base = {**TINY, "trainer": {**TINY["trainer"], "lr": 0.01}, "methods": [{"name": "l1"}]}
    with pytest.raises(ConfigError, match=match):
        parse_sweep({"base": base, "grid": {axis: [1, 2]}}).points("runs")


@pytest.mark.parametrize("args", [["--seed", "-1"], ["--threads", "0"]])
def test_negative_seed_and_zero_threads_are_refused(tmp_path, args):
    cfg = _write(tmp_path / "c.yaml", TINY)
    res = _invoke("run", cfg, *args, "--out", tmp_path / "r")
    assert res.exit_code == 2 and not (tmp_path / "r").exists()


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_zero_or_negative_workers_are_refused(tmp_path, workers):
    sweep = _write(tmp_path / "s.yaml", {"name": "s", "base": TINY})
    res = _invoke("sweep", sweep, "--workers", workers, "--out", tmp_path / "runs")
    assert res.exit_code == 2 and not (tmp_path / "runs").exists()


def test_relative_data_paths_resolve_against_the_config_file_and_are_recorded_absolute(tmp_path, monkeypatch):
    # probe: a sweep started elsewhere silently trained on another folder's data
    (tmp_path / "project" / "configs").mkdir(parents=True)
    cfg_path = _write(tmp_path / "project" / "configs" / "m.yaml",
                      {**TINY, "task": {"name": "mocap", "data_dir": "../data"}})
    monkeypatch.chdir(tmp_path)  # somewhere else
    cfg = load_config(cfg_path)
    assert cfg.task.data_dir == str((tmp_path / "project" / "data").resolve())
    sweep = _write(tmp_path / "project" / "configs" / "s.yaml",
                   {"name": "s", "base": {**TINY, "task": {"name": "mocap", "data_dir": "../data"}}})
    from sparsedyn.sweep import load_sweep

    (point,) = load_sweep(sweep).points(tmp_path / "runs")
    assert point.config["task"]["data_dir"] == str((tmp_path / "project" / "data").resolve())
    # a base_file's paths are relative to the base file's own folder
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    _write(sub / "s.yaml", {"name": "s", "base_file": "../project/configs/m.yaml"})
    (point,) = load_sweep(sub / "s.yaml").points(tmp_path / "runs2")
    assert point.config["task"]["data_dir"] == str((tmp_path / "project" / "data").resolve())


def test_a_run_directory_records_the_absolute_path_it_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = parse_config({**TINY, "task": {"name": "language", "corpus": "corpus"}})
    assert cfg.task.corpus == str(tmp_path / "corpus")
    assert parse_config({**TINY, "task": {"name": "language"}}).task.corpus == "ptb"  # a keyword, not a path


# -- report -----------------------------------------------------------------------------------

@pytest.fixture
def runs(tmp_path):
    """Two plain `sparsedyn run` directories (no point.json) and one failed sweep point."""
    root = tmp_path / "runs"
    run_experiment(parse_config({**TINY, "name": "vanilla"}), root / "vanilla")
    run_experiment(parse_config({**TINY, "name": "l1", "methods": [{"name": "l1"}]}), root / "l1")
    (root / "broken").mkdir()
    (root / "broken" / "point.json").write_text(json.dumps({"variant": "broken", "labels": {}, "seed": 0}))
    (root / "broken" / "error.json").write_text(json.dumps({"error": "ValueError: the data went missing\nmore"}))
    return root


def test_report_accepts_plain_run_directories_and_shows_failure_reasons(runs, tmp_path):
    res = _invoke("report", runs, "--by", "", "--html", tmp_path / "r.html")
    assert res.exit_code == 0, res.output
    md = (runs / "report" / "report.md").read_text()
    assert "| vanilla |" in md and "| l1 |" in md
    assert "ValueError: the data went missing" in md and "more" not in md.split("Failed runs")[1]
    assert "the data went missing" in (tmp_path / "r.html").read_text()


def test_report_names_a_corrupt_results_file(runs, capsys):
    bad = runs / "l1" / "results.json"
    bad.write_text('{"status": "compl')
    res = _invoke("report", runs, "--by", "")
    assert res.exit_code == 0
    assert str(bad) in res.output and str(bad) in (runs / "report" / "report.md").read_text()


@pytest.mark.parametrize("args,match", [
    (["--metric", "val_mze"], "--metric 'val_mze'"), (["--by", "colour"], "--by 'colour'"),
    (["--baseline", "dense"], "--baseline 'dense'"), (["--within", "-0.1"], "--within must be >= 0"),
])
def test_report_refuses_unknown_options(runs, args, match):
    res = _invoke("report", runs, *args)
    assert res.exit_code == 2 and match in res.output


def test_report_on_a_missing_directory_creates_nothing(tmp_path):
    res = _invoke("report", tmp_path / "nope")
    assert res.exit_code == 2 and "not found" in res.output
    assert not (tmp_path / "nope").exists()

