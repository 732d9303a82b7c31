"""Rows in another order and rows sharing a time (pseudotime tables, replicates): sorted and averaged when
asked, refused with the option named otherwise, and a shuffled, duplicated file fits exactly as the plain one."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sparsedyn.cli import app
from sparsedyn.graph import SparseGraph
from sparsedyn.tasks.time_order import average_duplicate_times, sort_by_time
from sparsedyn.tasks.user_data import DataError, Series, from_arrays, load_series, order_times
from test_graph_recovery import _linear_data

nan = np.nan


def test_points_at_one_time_become_their_mean_feature_by_feature():
    t = np.array([0.0, 1.0, 1.0, 1.0, 2.0, 3.0, 3.0])
    x = np.array([[0, 0], [1, 10], [2, nan], [6, 13], [7, 7], [nan, nan], [8, nan]], dtype=float)
    times, values, merged = average_duplicate_times(t, x)
    # time 1: a = (1 + 2 + 6) / 3 = 3, b = (10 + 13) / 2 = 11.5 (NaN left out); time 3: a = 8, b never seen
    np.testing.assert_array_equal(times, [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(values, [[0, 0], [3, 11.5], [7, 7], [8, nan]])
    assert merged == 3 and np.isnan(x[2, 1])  # two merged at time 1, one at time 3; caller's array kept
    series = order_times(Series([t, t[:2]], [x, x[:2]], ["a", "b"], ["0", "1"]), False, "average")
    assert series.averaged == 3  # counted over trajectories; one without shared times is kept as it is
    np.testing.assert_array_equal(series.values[1], x[:2])


def test_sorting_is_stable_and_averaging_merges_only_consecutive_times():
    t = np.array([2.0, 0.0, 1.0, 0.0])
    x = np.arange(8.0).reshape(4, 2)
    times, values = sort_by_time(t, x)
    np.testing.assert_array_equal(times, [0.0, 0.0, 1.0, 2.0])
    np.testing.assert_array_equal(values, x[[1, 3, 2, 0]])  # the two zeros in file order
    assert average_duplicate_times(t, x)[2] == 0  # 0 recurs after 1 and 2: left for the checks, not merged
    with pytest.raises(DataError, match="times are not sorted .*sort=True, sparsedyn graph --sort"):
        from_arrays(x, t)
    merged = from_arrays(x, t, sort=True, duplicates="average")
    np.testing.assert_array_equal(merged.values[0], [[4.0, 5.0], x[2], x[0]])
    with pytest.raises(ValueError, match="duplicates must be one of"):
        order_times(Series([t], [x], ["a", "b"], ["0"]), False, "mean")


def test_a_csv_in_any_row_order_reads_as_the_sorted_file(tmp_path):
    rows = [("u", 2.0, 5.0), ("v", 0.5, 1.0), ("u", 1.0, 4.0), ("u", 0.0, 3.0), ("v", 0.0, 2.0), ("u", 1.0, 6.0)]
    path = tmp_path / "cells.csv"
    path.write_text("g,t,a\n" + "".join(f"{g},{t},{a}\n" for g, t, a in rows))
    with pytest.raises(DataError, match="trajectory 'u': times are not sorted"):
        load_series(path, group="g")
    with pytest.raises(DataError, match="duplicate time 1 .*duplicates='average'"):
        load_series(path, group="g", sort=True)
    s = load_series(path, group="g", sort=True, duplicates="average")
    assert s.names == ["u", "v"] and s.averaged == 1
    np.testing.assert_array_equal(s.times[0], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(s.values[0][:, 0], [3.0, 5.0, 5.0])  # (4 + 6) / 2 at time 1
    np.testing.assert_array_equal(s.values[1][:, 0], [2.0, 1.0])
    one = tmp_path / "one.csv"  # one trajectory, no group column: sort=True says the order is not a concatenation
    one.write_text("t,a\n2,5\n0,3\n1,4\n")
    with pytest.raises(DataError, match="goes back in time at row 3 .*sparsedyn graph --sort"):
        load_series(one)
    np.testing.assert_array_equal(load_series(one, sort=True).values[0][:, 0], [3.0, 4.0, 5.0])


def test_the_graph_command_fits_a_shuffled_file_with_repeated_rows_as_the_plain_one(tmp_path):
    """Every row written twice (a repeated state averages to itself) and all rows shuffled: with --sort and
    --duplicates average the fit sees exactly the plain data, so its edges and scores are the plain fit's."""
    A, t, X = _linear_data(n_traj=8)
    rows = [[f"r{b}", t[k], *X[b, k]] for b in range(len(X)) for k in range(len(t))] * 2
    order = np.random.default_rng(0).permutation(len(rows))
    data = tmp_path / "shuffled.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "time", *[f"g{i}" for i in range(5)]])
        w.writerows(rows[i] for i in order)
    base = ["graph", str(data), "--group", "run", "--time", "time", "--seed", "3"]
    refused = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "no")])
    assert refused.exit_code == 2 and "--sort" in refused.output and not (tmp_path / "no").exists()
    bad = CliRunner().invoke(app, [*base, "--sort", "--duplicates", "mean"])
    assert bad.exit_code == 2 and bad.output.startswith("sparsedyn: --duplicates must be error or average")
    res = CliRunner().invoke(app, [*base, "--sort", "--duplicates", "average", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert f"--duplicates average: {len(rows) // 2} rows averaged" in res.output
    read = load_series(data, "time", "run", sort=True, duplicates="average")
    runs = [int(name[1:]) for name in read.names]  # trajectories in order of first appearance in the file
    assert sorted(runs) == list(range(len(X)))
    np.testing.assert_array_equal(np.stack(read.values), X[runs])  # (x + x) / 2 == x exactly
    plain = SparseGraph(seed=3).fit(X[runs], t=t, feature_names=[f"g{i}" for i in range(5)])
    with open(tmp_path / "out" / "edges.csv") as f:
        edges = list(csv.DictReader(f))
    assert [(e["source"], e["target"]) for e in edges] == [(e["source"], e["target"]) for e in plain.edges_]
    np.testing.assert_allclose([float(e["score"]) for e in edges], [e["score"] for e in plain.edges_], rtol=1e-12)
    chosen = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert (chosen["sorted"], chosen["duplicates"], chosen["rows_averaged"]) == (True, "average", len(rows) // 2)


def test_an_h5ad_time_course_averages_the_cells_of_each_time_point(tmp_path):
    anndata = pytest.importorskip("anndata", reason="the singlecell extra (anndata) is not installed")
    import pandas as pd

    obs = pd.DataFrame({"day": [2.0, 0.0, 2.0, 1.0], "lineage": ["L"] * 4}, index=list("abcd"))
    cells = anndata.AnnData(np.array([[1.0, 2.0], [0.0, 0.0], [3.0, 6.0], [5.0, 5.0]]), obs=obs,
                            var=pd.DataFrame(index=["g1", "g2"]))
    cells.write_h5ad(tmp_path / "days.h5ad")
    s = load_series(tmp_path / "days.h5ad", time="day", group="lineage", duplicates="average")
    np.testing.assert_array_equal(s.times[0], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(s.values[0], [[0.0, 0.0], [5.0, 5.0], [2.0, 4.0]])
    assert s.averaged == 1
    with pytest.raises(DataError, match="1 gene\\(s\\) not in var_names, e.g. 'G2' \\(genes: g1, g2\\); did you "
                                        "mean 'g2'"):
        load_series(tmp_path / "days.h5ad", time="day", group="lineage", features=["g1", "G2"])
    with pytest.raises(DataError, match="obs has no time column 'Day' \\(obs columns: day, lineage\\); did you mean"):
        load_series(tmp_path / "days.h5ad", time="Day")


def test_the_trajectories_task_takes_sort_and_duplicates_from_its_config(tmp_path):
    from sparsedyn.tasks.trajectories_task import TrajectoriesTask

    A, t, X = _linear_data(n_traj=6, points=8)
    rows = [f"r{b},{float(t[k])!r}," + ",".join(repr(float(v)) for v in X[b, k]) for b in range(6) for k in range(8)]
    plain, shuffled = tmp_path / "plain.csv", tmp_path / "shuffled.csv"
    header = "run,time," + ",".join(f"g{i}" for i in range(5)) + "\n"
    plain.write_text(header + "\n".join(rows) + "\n")
    shuffled.write_text(header + "\n".join(rows[i] for i in np.random.default_rng(1).permutation(48)) + "\n"
                        + "\n".join(rows[:8]) + "\n")  # r0 again at the end: each of its points twice
    fields = {"time": "time", "group": "run", "val_fraction": 0.0, "test_fraction": 0.0, "standardize": False}
    with pytest.raises(DataError, match="times are not sorted"):
        TrajectoriesTask(path=str(shuffled), **fields)
    got = TrajectoriesTask(path=str(shuffled), sort=True, duplicates="average", **fields).series
    expected = TrajectoriesTask(path=str(plain), **fields).series
    order = [expected.names.index(name) for name in got.names]
    for a, b in zip(got.values + got.times, [expected.values[i] for i in order] + [expected.times[i] for i in order]):
        np.testing.assert_array_equal(a, b)
