"""Regularisation paths: warm starts, resumable points, the Pareto front, and the CLI."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sparsedyn.cli import app
from sparsedyn.config import ConfigError, parse_config
from sparsedyn.path import default_param, geometric, pareto_front, run_path
from sparsedyn.runner import build_experiment

CONFIG = {
    "name": "p", "seed": 0,
    "task": {"system": "sparse_tanh", "system_params": {"n": 4, "parents": 1, "seed": 0}, "n_train": 8, "n_val": 4,
             "n_test": 4, "t_end": 1.0, "n_points": 6},
    "model": {"hidden": [8], "solver": "rk4", "step_size": 0.25},
    "methods": [{"name": "group_lasso", "hidden": [4]}],
    "trainer": {"epochs": 20, "lr": 1e-2, "batch_size": 4, "eval_every": 10, "progress": False},
}


def test_pareto_front_by_hand():
    errors = np.array([1.0, 0.5, 0.6, 0.4, 2.0])
    sparsity = np.array([0.0, 0.2, 0.5, 0.1, 0.9])
    # (0.5, 0.2) beats (1.0, 0.0); (0.4, 0.1), (0.5, 0.2), (0.6, 0.5), (2.0, 0.9) trade off
    assert pareto_front(errors, sparsity).tolist() == [False, True, True, True, True]


def test_strength_parameters_and_grids():
    assert [default_param({"name": n}) for n in ("l1", "pathreg", "magnitude")] == ["lam", "lambda_paths", "sparsity"]
    assert geometric(1e-3, 1e-1, 3) == pytest.approx([0.0, 1e-3, 1e-2, 1e-1])
    with pytest.raises(ConfigError, match="start < stop"):
        geometric(1e-1, 1e-3, 3)


def test_each_point_starts_from_the_previous_points_sparsified_weights_and_sparsity_grows(tmp_path):
    rows = run_path(CONFIG, tmp_path, [0.0, 1e-2, 1e-1], progress=False)
    assert [r["lam"] for r in rows] == [0.0, 1e-2, 1e-1]
    assert rows[0]["feature_sparsity"] == 0.0 < rows[-1]["feature_sparsity"]
    cfg = parse_config({**CONFIG, "methods": [{"name": "group_lasso", "hidden": [4], "lam": 1e-2}],
                        "warm_start": str(tmp_path / "lam=0.0" / "sparsified.pt")})
    start = build_experiment(cfg).model.state_dict()
    source = torch.load(tmp_path / "lam=0.0" / "sparsified.pt", weights_only=False)["model"]
    assert all(torch.equal(start[k], source[k]) for k in source)  # the warm start is the previous point
    assert (tmp_path / "path.csv").read_text().count("\n") == 1 + 3


def test_a_rerun_keeps_finished_points(tmp_path):
    run_path(CONFIG, tmp_path, [0.0, 1e-2], progress=False)
    stamp = (tmp_path / "lam=0.01" / "results.json").stat().st_mtime_ns
    run_path(CONFIG, tmp_path, [0.0, 1e-2], progress=False)
    assert (tmp_path / "lam=0.01" / "results.json").stat().st_mtime_ns == stamp


def test_the_cli_writes_the_path_and_refuses_bad_grids(tmp_path):
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    res = CliRunner().invoke(app, ["path", str(cfg), "--values", "0,0.01", "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "p" / "path.png").stat().st_size > 10_000
    bad = CliRunner().invoke(app, ["path", str(cfg), "--values", "0.1,0.01", "--out", str(tmp_path / "q")])
    assert bad.exit_code == 2 and "increasing" in bad.output
    assert CliRunner().invoke(app, ["path", str(cfg), "--method", "3"]).exit_code == 2


def test_values_without_zero_still_start_dense_unless_told_not_to(tmp_path):
    """--dense (the default) promises the dense reference point; --values only replaces the nonzero grid."""
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    for flags, expected in (([], ["0.0", "0.01"]), (["--no-dense"], ["0.01"])):
        out = tmp_path / ("dense" if not flags else "no-dense")
        res = CliRunner().invoke(app, ["path", str(cfg), "--values", "0.01", "--out", str(out), *flags])
        assert res.exit_code == 0, res.output
        assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [f"lam={v}" for v in expected]


def test_a_relative_output_folder_works_from_anywhere(tmp_path, monkeypatch):
    """The bug: warm starts named the previous point relative to the current directory, and the config
    resolved them against the config file's folder."""
    import yaml

    (tmp_path / "configs").mkdir()
    cfg = tmp_path / "configs" / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["path", "configs/c.yaml", "--values", "0,0.01", "--out", "runs/p"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "runs" / "p" / "lam=0.01" / "results.json").exists()


def test_a_sweep_path_variant_runs_the_same_warm_started_chain_as_run_path(tmp_path):
    """Two seeds' paths run side by side (two workers, one phase per step) and give each seed exactly the
    numbers of the sequential ``run_path``: same warm starts, same order."""
    from sparsedyn.sweep import parse_sweep, run_sweep

    base = {k: v for k, v in CONFIG.items() if k not in ("name", "seed")}
    spec = parse_sweep({"name": "s", "base": base, "seeds": [0, 1],
                        "variants": {"gl": {"grid": {"methods.0.lam": [0.0, 1e-2, 1e-1]}, "path": "methods.0.lam"}}})
    counts = run_sweep(spec, tmp_path / "sweep", workers=2, progress=False, stack=1)  # exact: each seed alone
    assert counts["completed"] == 6
    for seed in (0, 1):
        rows = run_path({**CONFIG, "seed": seed}, tmp_path / f"path{seed}", [0.0, 1e-2, 1e-1], progress=False)
        for row, label in zip(rows, ("0.0", "0.01", "0.1")):
            res = json.loads((tmp_path / "sweep" / "gl" / f"methods.0.lam={label}" / f"seed{seed}"
                              / "results.json").read_text())
            assert res["metrics"]["test_mse"] == row["test_mse"], (seed, label)
    point = json.loads((tmp_path / "sweep" / "gl" / "methods.0.lam=0.01" / "seed1" / "point.json").read_text())
    assert point["path"] == "methods.0.lam"


@pytest.mark.parametrize("variant, message", [
    ({"grid": {"methods.0.lam": [0.1, 0.01]}, "path": "methods.0.lam"}, "increasing"),
    ({"grid": {"methods.0.lam": [0.0, "a"]}, "path": "methods.0.lam"}, "increasing"),
    ({"grid": {"methods.0.lam": [0.0, 0.1]}, "path": "methods.0.hidden"}, "not an axis"),
])
def test_a_bad_sweep_path_is_a_config_error_naming_it(variant, message):
    from sparsedyn.sweep import parse_sweep

    with pytest.raises(ConfigError, match=f"variants.gl.path: .*{message}"):
        parse_sweep({"name": "s", "base": CONFIG, "variants": {"gl": variant}})


@pytest.mark.parametrize("args", [["--start", "0.1", "--stop", "0.01"], ["--num", "1"], ["--start", "-1"]])
def test_a_bad_grid_names_the_options_not_values(tmp_path, args):
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    res = CliRunner().invoke(app, ["path", str(cfg), "--out", str(tmp_path / "p"), *args])
    assert res.exit_code == 2
    assert "--start" in res.output and "--num" in res.output and "--values" not in res.output, res.output
