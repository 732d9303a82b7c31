import math
import re
import shutil
import subprocess

import pytest

from sparsedyn.report import aggregate, build_report, select
from sparsedyn.sweep import parse_sweep, run_sweep


def _rec(variant, lam, seed, val, test=1.0, status="completed", order=0, system="A"):
    labels = {"task": system} if lam is None else {"task": system, "methods.0.lam": str(lam)}
    return {"variant": variant, "labels": labels, "seed": seed, "status": status, "order": order,
            "metrics": {"val_mse": val, "test_mse": test} if status == "completed" else {}, "run_dir": "x"}


def test_aggregate_mean_sd_and_failures():
    groups = aggregate([_rec("v", None, 0, 1.0), _rec("v", None, 1, 3.0), _rec("v", None, 2, 0, status="failed")])
    (g,) = groups
    assert g.mean("val_mse") == 2.0 and g.sd("val_mse") == pytest.approx(math.sqrt(2.0))
    assert g.failures == 1 and len(g.runs) == 3
    assert g.cell("val_mse") == "2 ± 1.4"


def test_selection_rule_takes_the_strongest_point_within_tolerance_for_every_method():
    recs = [_rec("vanilla", None, s, 1.0, order=0) for s in (0, 1)]
    # l1: lam 0.1 within 10% of vanilla, lam 1.0 is not -> choose 0.1 (the strongest acceptable)
    recs += [_rec("l1", 0.01, s, 0.95, order=1) for s in (0, 1)]
    recs += [_rec("l1", 0.1, s, 1.08, order=2) for s in (0, 1)]
    recs += [_rec("l1", 1.0, s, 2.0, order=3) for s in (0, 1)]
    # l0: no point within tolerance -> the lowest validation error
    recs += [_rec("l0", 0.1, s, 1.5, order=4) for s in (0, 1)]
    recs += [_rec("l0", 1.0, s, 1.3, order=5) for s in (0, 1)]
    # a second system gets its own baseline
    recs += [_rec("vanilla", None, s, 10.0, order=6, system="B") for s in (0, 1)]
    recs += [_rec("l1", 1.0, s, 10.5, order=7, system="B") for s in (0, 1)]
    chosen = select(aggregate(recs), by="task", within=0.10)
    assert chosen["A"]["l1"].labels["methods.0.lam"] == "0.1"
    assert chosen["A"]["l0"].labels["methods.0.lam"] == "1.0"
    assert chosen["B"]["l1"].labels["methods.0.lam"] == "1.0"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("rep")
    spec = parse_sweep({
        "name": "rep", "seeds": [0, 1],
        "base": {"task": {"system_params": {"n": 3, "parents": 1}, "n_train": 4, "n_val": 2, "n_test": 2,
                          "t_end": 1.0, "n_points": 5},
                 "model": {"hidden": [4], "solver": "rk4", "step_size": 0.25},
                 "trainer": {"epochs": 3, "progress": False}},
        "grid": {"task": {"tanh": {"system": "sparse_tanh"}}},
        "variants": {"vanilla": {"set": {"methods": []}},
                     "pathreg": {"set": {"methods": [{"name": "pathreg"}]},
                                 "grid": {"methods.0.lambda_paths": [1e-3, 1e-2]}}},
    })
    run_sweep(spec, root / "runs", workers=2, progress=False)
    html = root / "report.html"
    build_report(root / "runs", root / "out", html, by="task", command="sparsedyn report runs", machine="test")
    return root, html


def test_report_writes_tables_csv_and_figures(report):
    root, _ = report
    md = (root / "out" / "report.md").read_text()
    assert "### tanh" in md and "| pathreg |" in md and "| vanilla |" in md and "Selection rule" in md
    assert re.search(r"\| vanilla \| — \| [0-9.e+-]+ ± [0-9.e+-]+ \|", md)
    assert "### Pareto comparison" in md and "| pathreg |" in md.split("### Pareto comparison")[1]
    for png in ("error_vs_weight_sparsity.png", "error_vs_feature_sparsity.png", "dependency_matrices.png",
                "pareto_fronts.png"):
        assert (root / "out" / png).stat().st_size > 2000
    assert (root / "out" / "points.csv").read_text().count("\n") == 1 + 3


def test_html_is_self_contained(report):
    _, html = report
    text = html.read_text()
    # selected points, the trivial predictors beside them, the paired comparisons with the baseline, the
    # Pareto comparison, all points; figures: error vs weight and feature sparsity, dependency matrices, Pareto
    # fronts
    assert text.count("<table>") == 5 and text.count("data:image/png;base64,") == 4
    assert "Pareto comparison: tanh" in text
    assert "<td>initial_state</td>" in text and "<td>train_mean</td>" in text
    assert "http://" not in text and "https://" not in text


def _chromium() -> str:
    """Debian's headless Chromium, which the README's test command installs; without it the test
    is skipped with the reason printed (no package is installed from inside a test)."""
    path = shutil.which("chromium")
    if path is None:
        msg = "Debian's chromium is not on PATH (the README's test command installs it with apt-get)"
        print(msg)
        pytest.skip(msg)
    return path


CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_html_report_renders_tables_and_images_in_headless_chromium(report, tmp_path):
    _, html = report
    chrome = _chromium()
    dom = subprocess.run([chrome, *CHROME_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=5000", "--dump-dom", html.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<table>") == 5 and "<td>pathreg</td>" in dom
    widths = [int(w) for w in re.findall(r'data-decoded-width="(\d+)"', dom)]
    assert len(widths) == 4 and all(w > 100 for w in widths)  # every image decoded by the browser
    shot = tmp_path / "shot.png"
    subprocess.run([chrome, *CHROME_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1200,2400",
                    f"--screenshot={shot}", html.as_uri()], capture_output=True, timeout=120)
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.shape[0] >= 2000 and pixels[..., :3].std() > 0.05  # not a blank page


def test_runs_no_better_than_a_trivial_predictor_count_as_failures():
    recs = [_rec("v", None, 0, 0.01, test=0.01), _rec("v", None, 1, 0.2, test=0.2),
            _rec("v", None, 2, 0, status="diverged"), {**_rec("v", None, 3, 0), "status": "missing"}]
    (g,) = aggregate(recs)
    assert g.failures == 1 and g.finished == 3
    assert g.worse_than("test_mse", 0.1667) == 2  # the diverged run and the one at 0.2


def test_a_method_no_better_than_a_trivial_predictor_is_flagged(tmp_path):
    import json

    baselines = {"initial_state": {"test_mse": 0.5, "val_mse": 0.6}, "train_mean": {"test_mse": 0.9}}
    for name, test_mse in (("good", 0.1), ("useless", 0.7)):
        d = tmp_path / "runs" / name
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps({"name": name, "seed": 0, "status": "completed", "baselines":
                                                    baselines, "metrics": {"val_mse": 1.0, "test_mse": test_mse}}))
    md = (build_report(tmp_path / "runs", by=None)["out"] / "report.md").read_text()
    rows = {}
    for line in md.splitlines():  # the first table is the selected points'
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line)
    assert rows["good"].rstrip(" |").endswith("yes")
    assert "**no** (initial_state 0.5)" in rows["useless"]
    assert "| initial_state | 0.5 |" in md and "| train_mean | 0.9 |" in md  # shown beside them


def _point(variant, lam, val, test, weight, feature, auroc, seeds=(0, 1)):
    """Two seeds of one point, spread +-0.01 around the given means."""
    labels = {"task": "A"} if lam is None else {"task": "A", "methods.0.lam": str(lam)}
    return [{"variant": variant, "labels": labels, "seed": s, "status": "completed", "order": 0, "run_dir": "x",
             "metrics": {"val_mse": val + d, "test_mse": test + d, "weight_sparsity": weight + d,
                         "feature_sparsity": feature, "recovery_auroc": auroc}}
            for s, d in zip(seeds, (-0.01, 0.01))]


def test_pareto_readings_by_hand():
    """Vanilla val 1.0, so 'within 10%' means val <= 1.1. a: its (0.5 weight sp., val 1.05) point qualifies,
    its 0.95 one (val 2) does not; b never gets within 10%. Error at weight sp. >= 0.9: a's 0.95 point
    (test 3.0), b's 0.92 point (test 1.5); nobody reaches feature sparsity 0.5 but b."""
    from sparsedyn.report_pareto import front, pareto_tables

    recs = _point("vanilla", None, 1.0, 1.0, 0.0, 0.0, 0.6)
    recs += _point("a", 0.0, 1.0, 1.0, 0.0, 0.0, 0.6) + _point("a", 0.1, 1.05, 1.1, 0.5, 0.2, 0.8)
    recs += _point("a", 1.0, 2.0, 3.0, 0.95, 0.4, 0.9)
    recs += _point("b", 0.1, 1.3, 1.2, 0.3, 0.1, 0.7) + _point("b", 1.0, 1.4, 1.5, 0.92, 0.6, 0.95)
    groups = aggregate(recs)
    (header, rows), = pareto_tables(groups, "task", "val_mse", 0.10, "vanilla").values()
    row = {r[0]: dict(zip(header, r)) for r in rows}
    wk = (f"max {k} sp. (val_mse within 10% of vanilla)" for k in ("weight", "feature"))
    assert row["a"][next(wk)] == "0.5" and row["a"][next(wk)] == "0.2"
    assert row["a"]["best AUROC (within 10%)"] == "0.8"
    assert row["b"]["best AUROC (within 10%)"] == "—"
    assert row["a"]["test_mse at weight sp. >= 0.9 (AUROC)"] == "3 (0.9)"
    assert row["b"]["test_mse at weight sp. >= 0.9 (AUROC)"] == "1.5 (0.95)"
    assert row["a"]["test_mse at feature sp. >= 0.5 (AUROC)"] == "—"
    a = [g for g in groups if g.variant == "a"]
    assert [g.labels["methods.0.lam"] for g in front(a, "test_mse", "weight_sparsity")] == ["0.0", "0.1", "1.0"]
    b_and_worse = a + [g for g in groups if g.variant == "b"]
    assert [g.labels.get("methods.0.lam") for g in front(b_and_worse, "test_mse", "weight_sparsity")
            if g.variant == "b"] == ["1.0"]  # b's 0.3 point is beaten by a's 0.5 point


def test_test_r2_is_the_share_of_the_mean_predictors_error_a_model_removes():
    from sparsedyn.run_records import with_r2

    base = {"train_mean": {"test_mse": 2.0}, "initial_state": {"test_mse": 3.0}}
    assert with_r2({"test_mse": 0.5}, base)["test_r2"] == 0.75
    assert with_r2({"test_mse": 4.0}, base)["test_r2"] == -1.0  # worse than the mean
    assert "test_r2" not in with_r2({"val_mse": 0.5}, base) and "test_r2" not in with_r2({"test_mse": 1.0}, {})


def test_recurrent_runs_are_compared_on_w_hh_sparsity_and_flagged_against_their_own_trivial_error():
    """RNN runs prune only W_hh: the Pareto readings use recurrent sparsity (their weight sparsity counts
    unpruned input and read-out weights), and 'beats trivial' compares the task's own error metric."""
    from sparsedyn.report import flag_trivial
    from sparsedyn.report_pareto import pareto_tables, sparsity_kinds

    def rnn(variant, sp, err, seed):
        return {"variant": variant, "labels": {"methods.1.sparsity": str(sp)}, "seed": seed, "status": "completed",
                "order": 0, "run_dir": "x", "metrics": {"val_error_cm": err, "test_error_cm": err,
                                                          "weight_sparsity": 0.3 * sp, "recurrent_sparsity": sp}}

    recs = [rnn("dense", 0.0, 6.0, s) for s in (0, 1)]
    recs += [rnn("a", 0.899994, 6.1, s) for s in (0, 1)]  # 90% of 65,536 weights, rounded
    recs += [rnn("a", 0.98, 9.0, s) for s in (0, 1)]
    groups = aggregate(recs)
    assert sparsity_kinds(groups) == ["recurrent_sparsity"]
    (header, rows), = pareto_tables(groups, None, "val_error_cm", 0.05, "dense", "test_error_cm").values()
    row = {r[0]: dict(zip(header, r)) for r in rows}
    assert row["a"]["max recurrent sp. (val_error_cm within 5% of dense)"] == "0.9"
    assert row["a"]["test_error_cm at recurrent sp. >= 0.9"] == "6.1"
    assert row["a"]["test_error_cm at recurrent sp. >= 0.98"] == "9"
    (header, _), = pareto_tables(groups, None, "val_error_cm", 0.05, None, "test_error_cm").values()
    assert not any("within" in h for h in header)  # no baseline: no matched-error reading
    tables = {"all": (["method"], [["a"]])}
    chosen = {"all": {"a": next(g for g in groups if g.variant == "a")}}
    flag_trivial(tables, chosen, {"all": {"stay": {"test_error_cm": 8.0}, "centre": {"test_error_cm": 80.0}}},
                 "test_error_cm")
    assert tables["all"][0][-1] == "beats trivial (test_error_cm)" and tables["all"][1][0][-1] == "yes"


def test_comparison_table_pairs_seeds_against_the_baseline_by_hand():
    from sparsedyn.report import comparison_tables

    recs = [_rec("vanilla", None, s, 1.0, test=t) for s, t in zip(range(5), (1.0, 1.2, 0.9, 1.1, 1.0))]
    recs += [_rec("l1", 0.1, s, 1.0, test=t, order=1) for s, t in zip(range(5), (0.8, 1.0, 0.8, 0.9, 0.7))]
    recs += [_rec("l1", 0.1, 5, 0, status="diverged", order=1)]  # a failure with no pair
    chosen = select(aggregate(recs), by="task", within=0.10)
    header, rows = comparison_tables(chosen, "vanilla", ["test_mse"])["A"]
    assert header == ["method", "test_mse − vanilla [95% CI], p", "failed / finished [95% CI]"]
    by = {r[0]: r for r in rows}
    assert by["vanilla"][1] == "(baseline)" and by["vanilla"][2].startswith("0/5 [0.00, 0.43]")
    # differences -0.2, -0.2, -0.1, -0.2, -0.3: mean -0.2, all negative -> exact p = 2/32
    assert by["l1"][1].startswith("-0.2 [") and "p = 0.062 (n = 5)" in by["l1"][1]
    assert by["l1"][2].startswith("1/6 [0.03, 0.56]")


def test_across_blocks_figure_plots_each_methods_seed_means_and_the_best_trivial_predictor(tmp_path, monkeypatch):
    from sparsedyn import report_plots

    recs = [_rec("vanilla", None, s, 1.0, test=t, system="A") for s, t in ((0, 1.0), (1, 3.0))]
    recs += [_rec("l1", 0.1, s, 1.0, test=t, system="A", order=1) for s, t in ((0, 0.5), (1, 1.5))]
    recs += [_rec("vanilla", None, s, 1.0, test=t, system="B") for s, t in ((0, 4.0), (1, 6.0))]
    chosen = select(aggregate(recs), by="task")  # B has no l1 row: its point is missing, not zero
    trivial = {"B": {"train_mean": {"test_mse": 2.0}, "initial_state": {"test_mse": 7.0}}}
    figures = []
    monkeypatch.setattr(report_plots, "_save", lambda fig, path, footer: figures.append(fig) or path)
    report_plots.across_blocks(chosen, ["test_mse"], tmp_path / "x.png", trivial)
    lines = {line.get_label(): line.get_ydata() for line in figures[0].axes[0].get_lines()}
    assert list(lines["vanilla"]) == [2.0, 5.0]
    assert lines["l1"][0] == 1.0 and math.isnan(lines["l1"][1])
    assert math.isnan(lines["best trivial predictor"][0]) and lines["best trivial predictor"][1] == 2.0
