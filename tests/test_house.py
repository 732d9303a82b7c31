"""The house: one version, a licence, files with the usual permissions, loaders that scale."""

import os
import re
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

import sparsedyn
from sparsedyn import io
from sparsedyn.cli import app
from sparsedyn.tasks.user_data import read_csv

ROOT = Path(__file__).parents[1]


def test_the_version_has_one_source_and_the_cli_prints_it():
    declared = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert sparsedyn.__version__ == declared
    assert declared not in (ROOT / "src" / "sparsedyn" / "__init__.py").read_text()  # not written twice
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"sparsedyn {declared}"
    assert "MIT License" in (ROOT / "LICENSE").read_text() and (ROOT / "CHANGELOG.md").exists()


def test_result_files_follow_the_umask_like_any_other_file(tmp_path):
    old = os.umask(0o022)
    try:
        io.write_json(tmp_path / "r.json", {"a": 1})
        io.save_numpy(tmp_path / "a.npy", np.zeros(2))
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    plain = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert plain == 0o644
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == plain
    assert (tmp_path / "a.npy").stat().st_mode & 0o777 == plain


def test_the_csv_loader_groups_rows_in_one_pass_and_keeps_each_trajectory_in_order(tmp_path):
    rng = np.random.default_rng(0)
    groups, points = 2000, 5  # 10k rows in 2000 trajectories, interleaved: quadratic grouping took seconds
    lines = ["t,g,a,b"]
    for k in range(points):
        for g in range(groups):
            lines.append(f"{k * 0.1},{g},{g + k},{rng.normal()}")
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    series = read_csv(path, time="t", group="g")
    assert len(series) == groups and series.names[:3] == ["0", "1", "2"]
    np.testing.assert_allclose(series.values[7][:, 0], 7 + np.arange(points))
    np.testing.assert_allclose(series.times[7], 0.1 * np.arange(points))


def test_the_demo_progress_line_counts_finished_epochs_from_each_run(tmp_path):
    from sparsedyn.demo import progress_line

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.csv").write_text("epoch,train_loss\n1,0.5\n2,0.4\n3,0.3\n")
    line = progress_line({"vanilla": tmp_path / "a", "pathreg": tmp_path / "b"}, 1250, 12.4)
    assert line == "vanilla 3/1250 epochs · pathreg 0/1250 epochs · 12 s"
