"""Users' own data: CSV, NPZ and h5ad read back exactly, run through the CLI's trajectories task, and
every bad input refused with a message naming the problem."""

import gzip
import json

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from sparsedyn.cli import app
from sparsedyn.tasks.systems import make_system
from sparsedyn.tasks.trajectories_task import TrajectoriesTask
from sparsedyn.tasks.user_data import (
    DataError,
    Series,
    check_series,
    forecast_times,
    from_arrays,
    interpolate_gaps,
    load_series,
)

NAMES = ["prey", "predator", "x2", "x3"]


def simulated(n_traj=6, n_points=12):
    """Lotka-Volterra trajectories written with numpy, as a user would make them."""
    system = make_system("lotka_volterra", n=4, density=0.3, seed=0)
    rng = np.random.default_rng(1)
    t = np.linspace(0.0, 2.0, n_points)
    return t, system.simulate(system.sample_x0(rng, n_traj), t)


def write_csv(path, t, X, shuffle_groups=False):
    rows = ["time,traj," + ",".join(NAMES)]
    for b in range(X.shape[0]):
        rows += [f"{float(t[k])!r},run{b}," + ",".join(repr(float(v)) for v in X[b, k]) for k in range(len(t))]
    path.write_text("\n".join(rows) + "\n")
    return path


def run_cli(tmp_path, task):
    cfg = {"name": "own", "task": task, "model": {"hidden": [8], "solver": "rk4", "step_size": None},
           "trainer": {"epochs": 4, "eval_every": 2, "batch_size": 4, "progress": False}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(tmp_path / "c.yaml"), "--out", str(out)])
    return res, out


def test_a_csv_reads_back_exactly_and_runs_through_the_cli(tmp_path):
    t, X = simulated()
    path = write_csv(tmp_path / "data.csv", t, X)
    series = load_series(path, time="time", group="traj")
    assert series.features == NAMES and series.names == [f"run{b}" for b in range(6)]
    for b in range(6):
        np.testing.assert_array_equal(series.values[b], X[b])
        np.testing.assert_array_equal(series.times[b], t)
    res, out = run_cli(tmp_path, {"name": "trajectories", "path": "data.csv", "time": "time", "group": "traj"})
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert {"val_mse", "test_mse"} <= set(results["metrics"]) and "initial_state" in results["baselines"]
    assert json.loads((out / "features.json").read_text()) == NAMES
    assert torch.load(out / "dependency.pt").shape == (4, 4)
    scaling = json.loads((out / "scaling.json").read_text())  # the training runs' mean, spread and span
    train = [int(name[3:]) for name in TrajectoriesTask.from_series(series, val_fraction=0.2, test_fraction=0.2)
             .splits["train"].meta["names"]]
    np.testing.assert_allclose(scaling["mean"], X[train].reshape(-1, 4).mean(axis=0))
    np.testing.assert_allclose(scaling["scale"], X[train].reshape(-1, 4).std(axis=0))
    assert scaling["t_scale"] == pytest.approx(t[-1] - t[0])


def test_the_task_sees_the_same_data_whatever_their_units():
    """A feature x 1000 and time in minutes instead of hours: the same scaled trajectories in every split;
    with standardize=False the task keeps the raw values."""
    t, X = simulated()
    units = np.array([1.0, 1000.0, 1.0, 1.0])
    a = TrajectoriesTask.from_series(from_arrays(X, t), val_fraction=0.2, test_fraction=0.2)
    b = TrajectoriesTask.from_series(from_arrays(X * units, t * 60), val_fraction=0.2, test_fraction=0.2)
    for split in ("train", "val", "test"):
        np.testing.assert_allclose(b.splits[split].y, a.splits[split].y, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b.splits[split].t, a.splits[split].t, rtol=1e-6)
    np.testing.assert_allclose(b.scaling.scale / a.scaling.scale, units)
    raw = TrajectoriesTask.from_series(from_arrays(X, t), val_fraction=0.2, test_fraction=0.2, standardize=False)
    assert raw.scaling is None
    np.testing.assert_allclose(raw.splits["train"].y.numpy(), X[[int(n) for n in raw.splits["train"].meta["names"]]],
                               rtol=1e-6)


def test_an_npz_reads_back_exactly_with_its_mask_and_runs_through_the_cli(tmp_path):
    t, X = simulated()
    mask = np.ones(X.shape[:2], dtype=bool)
    mask[2, 5] = False  # one missing point
    np.savez(tmp_path / "data.npz", x=X, t=t, mask=mask, features=np.array(NAMES))
    series = load_series(tmp_path / "data.npz")
    assert np.isnan(series.values[2][5]).all() and not np.isnan(series.values[2][4]).any()
    np.testing.assert_array_equal(series.values[0], X[0])
    task = TrajectoriesTask.from_series(series, val_fraction=0.2, test_fraction=0.2)
    where = [i for i, s in enumerate(("train", "val", "test")) if "2" in task.splits[s].meta["names"]]
    split = task.splits[("train", "val", "test")[where[0]]]
    row = split.meta["names"].index("2")
    assert not bool(split.mask[row, 5]) and int(split.mask.sum()) == split.mask.numel() - 1
    res, out = run_cli(tmp_path, {"name": "trajectories", "path": "data.npz"})
    assert res.exit_code == 0, res.output
    assert json.loads((out / "features.json").read_text()) == NAMES


def test_an_h5ad_sorts_cells_by_time_within_each_lineage_and_runs_through_the_cli(tmp_path):
    anndata = pytest.importorskip("anndata", reason="the singlecell extra (anndata) is not installed")
    import pandas as pd

    t, X = simulated(n_traj=5)
    cells = [(b, k) for b in range(5) for k in range(len(t))]
    order = np.random.default_rng(0).permutation(len(cells))  # cells arrive in no particular order
    obs = pd.DataFrame({"pseudotime": [t[cells[i][1]] for i in order],
                        "lineage": [f"L{cells[i][0]}" for i in order]}, index=[f"c{i}" for i in order])
    adata = anndata.AnnData(np.array([X[cells[i]] for i in order]), obs=obs, var=pd.DataFrame(index=NAMES))
    adata.write_h5ad(tmp_path / "cells.h5ad")
    series = load_series(tmp_path / "cells.h5ad", time="pseudotime", group="lineage")
    assert series.features == NAMES and sorted(series.names) == [f"L{b}" for b in range(5)]
    for name, values, times in zip(series.names, series.values, series.times):
        b = int(name[1:])
        np.testing.assert_allclose(values, X[b], rtol=1e-6)
        np.testing.assert_array_equal(times, t)
    res, out = run_cli(tmp_path, {"name": "trajectories", "path": "cells.h5ad", "time": "pseudotime",
                                  "group": "lineage", "features": ["prey", "predator"]})
    assert res.exit_code == 0, res.output
    assert json.loads((out / "features.json").read_text()) == ["prey", "predator"]
    # a time course: two cells of one lineage at one time point; the error says what to do about it
    days = pd.DataFrame({"day": [0.0, 2.0, 2.0], "lineage": ["L"] * 3}, index=["a", "b", "c"])
    twice = anndata.AnnData(np.ones((3, 2)), obs=days, var=pd.DataFrame(index=NAMES[:2]))
    twice.write_h5ad(tmp_path / "days.h5ad")
    with pytest.raises(DataError, match="duplicate time 2 .*average them per time point"):
        load_series(tmp_path / "days.h5ad", time="day", group="lineage")


def test_window_cuts_one_long_series_into_pieces_that_start_at_time_zero():
    t = np.linspace(0, 9.9, 100)
    X = np.stack([np.sin(t), np.cos(t)], axis=1)
    task = TrajectoriesTask.from_series(from_arrays(X, t), window=10, val_fraction=0.2, test_fraction=0.2)
    sizes = {s: len(task.splits[s]) for s in ("train", "val", "test")}
    assert sizes == {"train": 6, "val": 2, "test": 2}
    assert task.splits["train"].t[0] == 0 and len(task.splits["train"].t) == 10


def _csv(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, kwargs, message", [
    ("t,a,b\n0,1,x\n1,2,3\n", {}, "column 'b' is not numeric \\(row 2: 'x'\\)"),
    ("t,a,b\n0,1,2\n1,,3\n", {}, "time 1 has NaN in \\['a'\\] but not in every feature"),
    ("t,g,a\n0,u,1\n2,u,2\n1,u,3\n", {"group": "g"}, "trajectory 'u': times are not sorted \\(2 then 1 at point 2\\)"),
    ("t,a\n0,1\n2,2\n1,3\n", {}, "goes back in time at row 4 \\(2 then 1\\) and no group column is named"),
    ("t,a\n0,1\n1,2\n1,3\n", {}, "duplicate time 1 \\(points 1 and 2\\)"),
    ("t,g,a\n0,u,1\n1,u,2\n0,v,3\n", {"group": "g"}, "trajectory 'v': a single time point"),
    ("t,a\n0,\n1,2\n", {}, "the first time point is missing"),
    ("t,a\n0,1\n1,inf\n", {}, "inf in feature 'a'"),
    ("time,a\n0,1\n1,2\n", {}, "time column 't' not found \\(columns: time, a\\)"),
    ("t,a\n0,1\n1,2\n", {"features": ["b"]}, "feature column 'b' not found"),
    # ragged rows: 1,234 in a comma file shifts b's value into a fourth field; a truncated last row
    ("t,a,b\n0,1,2\n1,1,234,3\n", {}, "row 3 has 4 fields, the header 3 \\(a value holding the separator"),
    ("t,a,b\n0,1,2\n1,2\n", {}, "row 3 has 2 fields, the header 3 \\(a truncated row"),
    ("t,,b\n0,1,2\n1,2,3\n", {}, "column 2 has no name in the header line"),
    # a wide table: the first names and the count, not hundreds of names; the near misses offered
    ("t," + ",".join(f"gene{k}" for k in range(300)) + "\n" + "0" + ",1" * 300 + "\n",
     {"features": ["GENE7"]}, "'GENE7' not found \\(columns: t, gene0, .*gene6, \\.\\.\\. \\(301 in all\\)\\); "
     "did you mean 'gene7'\\?$"),
    ("t,prey,predator\n0,1,2\n1,2,3\n", {"features": ["preditor"]}, "did you mean 'predator'\\?"),
])
def test_bad_csv_input_is_refused_with_the_problem_named(tmp_path, text, kwargs, message):
    with pytest.raises(DataError, match=message):
        load_series(_csv(tmp_path, text), **kwargs)


def test_spreadsheet_exports_read_as_the_same_data(tmp_path):
    """What spreadsheet programs write: a byte-order mark before the header (Excel's "CSV UTF-8"), semicolons
    with decimal commas (locales whose decimal mark is a comma), tabs (.tsv), CRLF line ends, gzip. Each reads
    as the plain comma file does: same columns, trajectories, times and values."""
    plain = "t,run,a,b\n0,r1,1.5,-2\n0.5,r1,2.25,1e-3\n0,r2,3,4\n1,r2,5.5,6\n"
    expected = load_series(_csv(tmp_path, plain), group="run")
    variants = {
        "bom.csv": ("\ufeff" + plain).encode("utf-8"),
        "semicolon.csv": plain.replace(",", ";").replace("1.5", "1,5").replace("2.25", "2,25")
                              .replace("0.5", "0,5").replace("5.5", "5,5").replace("1e-3", "1,0e-3").encode(),
        "tabs.tsv": plain.replace(",", "\t").encode(),
        "crlf.csv": plain.replace("\n", "\r\n").encode(),
        "trailing.csv": plain.replace("\n", ",\n").encode(),  # a separator that ends every line
        "trailing_rows.csv": plain.replace("\n", ",\n").replace(",\n", "\n", 1).encode(),  # ...but the header's
        "zipped.tsv.gz": gzip.compress(("\ufeff" + plain.replace(",", "\t")).encode("utf-8")),
    }
    for name, data in variants.items():
        (tmp_path / name).write_bytes(data)
        got = load_series(tmp_path / name, group="run")
        assert got.features == expected.features == ["a", "b"] and got.names == expected.names, name
        for a, b in zip(got.times + got.values, expected.times + expected.values):
            np.testing.assert_array_equal(a, b, err_msg=name)
    with pytest.raises(DataError, match="column 'a' is not numeric \\(row 2: '1,5'\\)"):  # commas separate here
        load_series(_csv(tmp_path, 't,a\n0,"1,5"\n1,2\n', "quoted.csv"))


def test_iso_date_times_are_read_as_seconds_since_the_earliest(tmp_path):
    """Timestamps as a user's logger writes them: each run's times in seconds since the file's earliest stamp
    (differences are what an autonomous field sees), fractions of a second kept; text that is neither a
    number nor a date-time names both accepted formats, and an empty stamp its row."""
    text = ("time,run,a\n2024-01-01 00:00,r1,1\n2024-01-01 01:00,r1,2\n2024-01-01T01:30:00.5,r1,3\n"
            "2024-01-02 00:00,r2,4\n2024-01-02 00:10,r2,5\n")
    series = load_series(_csv(tmp_path, text), time="time", group="run")
    np.testing.assert_array_equal(series.times[0], [0.0, 3600.0, 5400.5])
    np.testing.assert_array_equal(series.times[1], [86400.0, 87000.0])
    with pytest.raises(DataError, match="column 'time' is not numeric .*ISO 8601 date-times"):
        load_series(_csv(tmp_path, "time,a\n2024-01-01,1\nsoon,2\n", "b.csv"), time="time")
    with pytest.raises(DataError, match="ISO 8601"):  # numbers and dates mixed: numpy alone reads 7 as year 7
        load_series(_csv(tmp_path, "time,a\n2024-01-01,1\n7,2\n", "d.csv"), time="time")
    with pytest.raises(DataError, match="empty time at row 3"):
        load_series(_csv(tmp_path, "time,a\n2024-01-01,1\n,2\n", "c.csv"), time="time")


def test_forecast_times_by_hand():
    np.testing.assert_array_equal(forecast_times([0, 1.5, 2]), [0.0, 1.5, 2.0])
    np.testing.assert_array_equal(forecast_times((3, 1)), [3.0, 1.0])  # backwards
    for times, message in [([0, 1, 1], "1 then 1 at point 2"), ([3, 2, 2.5], "2 then 2.5 at point 2"),
                           ([0, np.inf], "NaN or inf"), ([0], "got shape \\(1,\\)"), (5.0, "got shape \\(\\)"),
                           (["a", "b"], "must be numbers")]:
        with pytest.raises(DataError, match=message):
            forecast_times(times)


def test_bad_files_and_splits_are_refused_with_the_problem_named(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_series(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="unknown file type"):
        load_series(_csv(tmp_path, "x", "d.txt"))
    np.savez(tmp_path / "d.npz", y=np.zeros((3, 2)))
    with pytest.raises(DataError, match="no array 'x'"):
        load_series(tmp_path / "d.npz")
    with pytest.raises(DataError, match="too few trajectories for the split: 2"):
        TrajectoriesTask.from_series(from_arrays(np.random.rand(2, 5, 3)))
    with pytest.raises(DataError, match="X: non-numeric values"):
        from_arrays(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(DataError, match="must be \\(T, n\\), \\(B, T, n\\)"):
        from_arrays(np.zeros(5))


def test_a_data_error_is_one_line_and_exit_code_2_in_the_cli(tmp_path):
    _csv(tmp_path, "t,a\n0,1\n2,2\n1,3\n")
    res, _ = run_cli(tmp_path, {"name": "trajectories", "path": "d.csv"})
    assert res.exit_code == 2 and "goes back in time" in res.output and "Traceback" not in res.output


def test_interpolate_gaps_fills_each_feature_linearly_in_time_from_its_own_observations():
    nan = np.nan
    t = np.array([0.0, 1.0, 3.0, 4.0, 6.0])  # irregular: the fill follows time, not the row index
    x = np.array([[0.0, 10.0], [nan, 11.0], [3.0, nan], [nan, nan], [6.0, 16.0]])
    series = interpolate_gaps(Series([t], [x], ["a", "b"], ["0"]))
    # a at t=1 between (0, 0) and (3, 3): 1; b at t=3 between (1, 11) and (6, 16): 13; the row missing
    # every feature stays missing (a masked point, as without interpolation)
    np.testing.assert_array_equal(series.values[0][:3], [[0.0, 10.0], [1.0, 11.0], [3.0, 13.0]])
    assert np.isnan(series.values[0][3]).all()
    assert (series.interpolated, series.dropped) == (2, 0)
    assert x[1, 0] != x[1, 0]  # the caller's array is not written


def test_interpolate_gaps_drops_points_outside_a_features_observed_span():
    nan = np.nan
    t = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    x = np.array([[nan, 1.0], [1.0, 2.0], [nan, 3.0], [3.0, 4.0], [4.0, nan]])
    series = check_series(Series([t], [x], ["a", "b"], ["0"]), "X", missing="interpolate")
    # nothing brackets a at t=0 or b at t=4: those points go; a at t=2 lies between its observations
    np.testing.assert_array_equal(series.times[0], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(series.values[0], [[1.0, 2.0], [2.0, 3.0], [3.0, 4.0]])
    assert (series.interpolated, series.dropped) == (1, 2)


def test_partly_missing_points_are_refused_unless_interpolation_is_asked_for(tmp_path):
    x = np.array([[0.0, 1.0], [np.nan, 2.0], [2.0, 3.0]])
    with pytest.raises(DataError, match="time 1 has NaN in \\['x0'\\].*missing='interpolate'"):
        from_arrays(x)
    np.testing.assert_array_equal(from_arrays(x, missing="interpolate").values[0][1], [1.0, 2.0])
    never = np.array([[0.0, np.nan], [1.0, np.nan], [2.0, np.nan]])
    with pytest.raises(DataError, match="X: trajectory '0': feature 'x1' is never observed"):
        from_arrays(never, missing="interpolate")
    with pytest.raises(ValueError, match="missing must be one of"):
        from_arrays(x, missing="zero")
    path_series = load_series(_csv(tmp_path, "t,x0,x1\n0,0,1\n1,,2\n2,2,3\n"), missing="interpolate")
    np.testing.assert_array_equal(path_series.values[0], [[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]])


def test_the_trajectories_task_reads_gaps_as_its_config_says(tmp_path):
    t, X = simulated()
    gappy = X.copy()
    gappy[2, 4, 1] = np.nan
    path = write_csv(tmp_path / "data.csv", t, gappy)
    task = {"name": "trajectories", "path": "data.csv", "time": "time", "group": "traj"}
    res, _ = run_cli(tmp_path, task)
    assert res.exit_code != 0 and "missing='interpolate'" in res.output
    (tmp_path / "again").mkdir()
    write_csv(tmp_path / "again" / "data.csv", t, gappy)
    res, _ = run_cli(tmp_path / "again", {**task, "missing": "interpolate"})
    assert res.exit_code == 0, res.output
    series = load_series(path, time="time", group="traj", missing="interpolate")
    expected = gappy[2, 3, 1] + (gappy[2, 5, 1] - gappy[2, 3, 1]) * (t[4] - t[3]) / (t[5] - t[3])
    assert series.values[2][4, 1] == pytest.approx(expected, rel=1e-12)
