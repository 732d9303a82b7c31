"""SparseGraph's figure (the graph with edge confidence, forecasts) and the ``sparsedyn graph`` command."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sparsedyn.cli import app
from sparsedyn.graph import GraphWarning, SparseGraph
from sparsedyn.graph_benchmark import edge_metrics
from sparsedyn.graph_figure import CONFIDENT, graph_figure
from sparsedyn.tasks.user_data import DataError, from_arrays
from test_graph_recovery import _linear_data

FAST = {"n_subsamples": 4, "n_stages": 6, "steps": 100}


@pytest.fixture(scope="module")
def fitted():
    A, t, X = _linear_data(n_traj=8)
    return A, t, X, SparseGraph(**FAST).fit(X, t=t)


def test_the_heat_map_is_graph_and_the_marks_are_the_confident_edges(fitted):
    A, t, X, g = fitted
    fig = graph_figure(g, from_arrays(X[:2], t), truth=A != 0)
    heat, forecasts = fig.axes[0], fig.axes[1]  # axes[2] is the colour bar
    shown = np.array(heat.images[0].get_array())
    expected = g.graph_.copy()
    np.fill_diagonal(expected, np.nan)
    np.testing.assert_array_equal(np.isnan(shown), np.eye(5, dtype=bool))
    np.testing.assert_allclose(shown[~np.eye(5, dtype=bool)], expected[~np.eye(5, dtype=bool)])
    filled, _, true = (np.asarray(c.get_offsets()) for c in heat.collections)
    off = ~np.eye(5, dtype=bool)
    assert {(int(j), int(i)) for j, i in filled} == {(j, i) for i, j in zip(*np.nonzero(off & (g.edge_probability_
                                                                                                  >= CONFIDENT)))}
    assert {(int(j), int(i)) for j, i in true} == {(j, i) for i, j in zip(*np.nonzero(off & (A != 0)))}
    signs = {(int(round(x)), int(round(y))): s.get_text() for s in heat.texts for x, y in [s.get_position()]}
    assert len(signs) == int((off & (g.edge_probability_ >= CONFIDENT)).sum())
    for (j, i), text in signs.items():
        assert text == ("+" if g.sign_[i, j] > 0 else "-")
    # the forecast lines are the estimator's own forecasts from each trajectory's first observation
    line = forecasts.lines[0]
    fine = np.linspace(t[0], t[-1], 200)
    np.testing.assert_allclose(line.get_ydata(), g.simulate(X[0, 0], fine)[:, int(line.get_label()[1:])])
    with pytest.raises(DataError, match=r"truth must be \(5, 5\)"):
        graph_figure(g, truth=np.ones((4, 4), dtype=bool))
    norm = heat.images[0].norm
    assert (norm.vmin, norm.vmax) == (0, np.nanmax(expected)) and "no edge" not in heat.get_title()


def test_runs_from_different_clock_times_are_drawn_from_their_own_starts(fitted):
    """Two runs observed from t = 0 and t = 100: each forecast drawn over the time since its first observation
    (on one clock axis each would be a sliver 100 apart), still the estimator's own forecast."""
    A, t, X, g = fitted
    forecasts = graph_figure(g, from_arrays(X[:2], np.stack([t, t + 100.0]))).axes[1]
    assert forecasts.get_xlabel() == "time since each trajectory's first observation"
    lines = [line for line in forecasts.lines if line.get_linestyle() != "None"]
    fine = np.linspace(t[0], t[-1], 200)
    for line in lines:
        np.testing.assert_allclose(line.get_xdata(), fine - t[0])
    second = [line for line in lines if line.get_linestyle() == "--"]  # the second run's, same features in order
    feature = int(lines[0].get_label()[1:])  # the first line of each run is the same feature, labelled "x<j>"
    np.testing.assert_allclose(second[0].get_ydata(), g.simulate(X[1, 0], fine + 100.0)[:, feature])
    assert graph_figure(g, from_arrays(X[:2], t)).axes[1].get_xlabel() == "time"  # one clock: as before


def test_plot_writes_a_png_and_refuses_other_feature_counts(fitted, tmp_path):
    A, t, X, g = fitted
    path = g.plot(tmp_path / "sub" / "graph.png", X[:3], t)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(DataError, match="5 features|features"):
        g.plot(tmp_path / "bad.png", X[:2, :, :3], t)
    assert not (tmp_path / "bad.png").exists()
    with pytest.raises(DataError, match="is a folder; plot needs a file name"):  # was IsADirectoryError on a temp name
        g.plot(tmp_path, X[:3], t)


def test_the_graph_command_writes_the_fits_edges_figure_and_choices(tmp_path):
    A, t, X = _linear_data(n_traj=8)
    data = tmp_path / "runs.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "time", *[f"g{i}" for i in range(5)]])
        for b in range(len(X)):
            w.writerows([f"r{b}", t[k], *X[b, k]] for k in range(len(t)))
    res = CliRunner().invoke(app, ["graph", str(data), "--group", "run", "--time", "time", "--out",
                                   str(tmp_path / "out"), "--seed", "3", "--top", "5"])
    assert res.exit_code == 0, res.output
    direct = SparseGraph(seed=3).fit(X, t=t, feature_names=[f"g{i}" for i in range(5)])
    with open(tmp_path / "out" / "edges.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["source"], r["target"]) for r in rows] == [(e["source"], e["target"]) for e in direct.edges_]
    np.testing.assert_allclose([float(r["score"]) for r in rows], [e["score"] for e in direct.edges_], rtol=1e-12)
    assert (tmp_path / "out" / "graph.png").read_bytes()[:4] == b"\x89PNG"
    chosen = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert chosen["design"] == direct.design_ and chosen["strength"] == direct.strength_
    assert chosen["forecast_library"] == ("degree 2" if direct.poly_ else "linear")
    assert chosen["trajectory_matching_kept"] == direct.refined_
    assert chosen["held_out_derivative_error"] == direct.cv_mse_ < 1.0  # a linear system: far better than the mean
    assert chosen["cross_validated_over"] == "trajectories"
    best = direct.edges_[0]
    assert f"{best['source']:>14} -> {best['target']:<14}" in res.output
    missing = CliRunner().invoke(app, ["graph", str(tmp_path / "nope.csv")])
    assert missing.exit_code != 0 and "data file not found" in missing.output
    bad = CliRunner().invoke(app, ["graph", str(data), "--group", "run", "--time", "time", "--poly", "cubic"])
    assert bad.exit_code == 2 and bad.output.startswith("sparsedyn: --poly must be auto, true or false")
    (tmp_path / "a_file").write_text("kept")
    for command in (["graph", str(data), "--group", "run", "--time", "time"], ["demo"]):  # refused before any fit
        taken = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "a_file")])
        assert taken.exit_code == 2 and "a_file: is a file, not a folder" in taken.output, taken.output
        assert "SparseGraph" not in taken.output and (tmp_path / "a_file").read_text() == "kept"


def test_gaps_in_some_features_are_interpolated_when_asked_and_the_graph_survives(tmp_path):
    A, t, X = _linear_data(n_traj=8)
    gappy = X.copy()
    rng = np.random.default_rng(5)
    holes = rng.random(X.shape) < 0.08
    holes[:, 0] = False  # every trajectory's first state observed
    holes[:, -1, 1:] = False
    holes[:, -1, 0] = True  # a gap at each trajectory's end: nothing brackets it, so the point goes
    gappy[holes] = np.nan
    with pytest.raises(DataError, match="missing='interpolate'"):
        SparseGraph(**FAST).fit(gappy, t=t)
    g = SparseGraph(missing="interpolate", **FAST).fit(gappy, t=t)
    assert (g.n_interpolated_, g.n_dropped_points_) == (int(holes[:, :-1].sum()), len(X))
    assert edge_metrics(g.graph_, A != 0)["auroc"] == 1.0  # the true edges still rank first
    with pytest.raises(ValueError, match="bad missing='drop'"):
        SparseGraph(missing="drop").fit(X, t=t)
    with pytest.raises(ValueError, match="bad smooth='kalman'"):  # named before any work, not by the smoother
        SparseGraph(smooth="kalman").fit(X, t=t)
    data = tmp_path / "gappy.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "time", *[f"g{i}" for i in range(5)]])
        for b in range(len(X)):
            w.writerows([f"r{b}", t[k], *["" if np.isnan(v) else v for v in gappy[b, k]]] for k in range(len(t)))
    res = CliRunner().invoke(app, ["graph", str(data), "--group", "run", "--time", "time", "--out",
                                   str(tmp_path / "out"), "--missing", "interpolate"])
    assert res.exit_code == 0, res.output
    chosen = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert (chosen["values_interpolated"], chosen["points_dropped"]) == (g.n_interpolated_, len(X))
    refused = CliRunner().invoke(app, ["graph", str(data), "--group", "run", "--time", "time"])
    assert refused.exit_code != 0 and "--missing interpolate" in refused.output


def test_the_graph_command_says_so_when_no_edge_scores_above_zero(tmp_path):
    """Pure noise, linear library: on this draw the best stage cuts every edge (on some draws a stage with an
    edge or two predicts held-out noise a little better). Printing the first 15 of the all-zero edges
    (alphabetical ties) would read as a ranking; the command says there is none instead."""
    X = np.random.default_rng(2).normal(size=(8, 15, 4))
    data = tmp_path / "noise.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "t", "a", "b", "c", "d"])
        w.writerows([f"r{b}", k / 14, *X[b, k]] for b in range(len(X)) for k in range(15))
    res = CliRunner().invoke(app, ["graph", str(data), "--group", "run", "--poly", "false", "--out",
                                   str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "no edge scores above 0" in res.output and " -> " not in res.output
    # the warning as one line, without Python's file, line number and the calling source line
    assert "sparsedyn: GraphWarning: SparseGraph: no edge between variables at all" in res.output
    assert "est = SparseGraph(" not in res.output and "cli.py:" not in res.output
    with open(tmp_path / "out" / "edges.csv") as f:
        assert {float(r["score"]) for r in csv.DictReader(f)} == {0.0}
    # the figure: an all-zero graph is white (score 0 at the bottom of the scale), and its title says so; a graph
    # with edges keeps its scale from 0 to its top score
    with pytest.warns(GraphWarning) as caught:  # the same fit as the command's, with its warnings
        g = SparseGraph(poly=False, seed=0).fit(list(X), t=np.linspace(0, 1, 15))
    assert any("no edge between variables at all" in str(w.message) for w in caught)
    heat = graph_figure(g).axes[0]
    assert heat.images[0].norm.vmin == 0 and tuple(heat.images[0].to_rgba(0.0)) == (1.0, 1.0, 1.0, 1.0)
    assert heat.get_title().endswith("; no edge scores above 0)")


def test_the_graph_command_fits_the_named_features_only(tmp_path):
    """Two extra columns in the file; --features names the five to fit (out of file order): the fit is the
    direct fit on those five columns, in that order. An unknown name is refused before any fit."""
    A, t, X = _linear_data(n_traj=8)
    extra = np.random.default_rng(5).normal(size=X.shape[:2] + (2,))
    data = tmp_path / "wide.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "time", "noise0", *[f"g{i}" for i in range(5)], "noise1"])
        w.writerows([f"r{b}", t[k], extra[b, k, 0], *X[b, k], extra[b, k, 1]] for b in range(len(X))
                    for k in range(len(t)))
    order = [4, 0, 1, 2, 3]
    names = [f"g{i}" for i in order]
    res = CliRunner().invoke(app, ["graph", str(data), "--group", "run", "--time", "time", "--features",
                                   ",".join(names), "--seed", "3", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    direct = SparseGraph(seed=3).fit(X[..., order], t=t, feature_names=names)
    with open(tmp_path / "out" / "edges.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["source"], r["target"]) for r in rows] == [(e["source"], e["target"]) for e in direct.edges_]
    np.testing.assert_allclose([float(r["score"]) for r in rows], [e["score"] for e in direct.edges_], rtol=1e-12)
    assert json.loads((tmp_path / "out" / "fit.json").read_text())["features"] == names
    # the same names from a file: one per line, a comment, a blank line, a comma-separated line
    listing = tmp_path / "genes.txt"
    listing.write_text(f"# the panel\n{names[0]}\n\n{names[1]}, {names[2]}\n{names[3]}  # a note\n{names[4]}\n")
    from_file = CliRunner().invoke(app, ["graph", str(data), "--group", "run", "--time", "time", "--features",
                                         f"@{listing}", "--seed", "3", "--out", str(tmp_path / "out2")])
    assert from_file.exit_code == 0, from_file.output
    assert (tmp_path / "out2" / "edges.csv").read_text() == (tmp_path / "out" / "edges.csv").read_text()
    absent = CliRunner().invoke(app, ["graph", str(data), "--features", f"@{tmp_path / 'none.txt'}"])
    assert absent.exit_code == 2 and "cannot read the list of names" in absent.output
    unknown = CliRunner().invoke(app, ["graph", str(data), "--group", "run", "--time", "time", "--features",
                                       "g0,g9", "--out", str(tmp_path / "no")])
    assert unknown.exit_code == 2 and "feature column 'g9' not found" in unknown.output
    assert not (tmp_path / "no").exists()
