"""Tables and plots from a folder of runs: mean +- sd over seeds, failure rate, a selection rule.

Runs are read by :mod:`sparsedyn.run_records` (``collect``, ``aggregate``); ``select`` applies one
hyper-parameter rule to every method alike: per group (e.g. per system), the *last* point in
grid order (axes listed weakest to strongest) whose mean validation error is within
``within`` of the baseline's; if none is, the one with the lowest validation error.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .report_pareto import pareto_tables, plot_fronts
from .run_records import Group, ReportError, _read_json, aggregate, block_of, collect
from .stats import paired_comparison, wilson_interval

__all__ = ["Group", "ReportError", "aggregate", "collect", "select", "build_report"]

DEFAULT_COLUMNS = [
    ("test_mse", "test MSE"), ("test_r2", "test R²"), ("test_shift_mse", "shifted x0"),
    ("test_extrap_mse", "extrapolated"),
    ("test_intervention_mse", "intervention"), ("weight_sparsity", "weight sp."),
    ("feature_sparsity", "feature sp."), ("recovery_auroc", "AUROC"), ("recovery_auprc", "AUPRC"),
    ("recovery_jacobian_auroc", "AUROC (Jacobian)"),
    # without self-loops: where every variable decays, the diagonal says little about the graph
    ("recovery_auroc_offdiag", "AUROC off-diag."), ("recovery_jacobian_auroc_offdiag", "AUROC (Jacobian, off-diag.)"),
]
HEMATOPOIESIS_COLUMNS = [
    ("train_mse", "train (donor 12)"), ("test_11_mse", "donor 11"), ("test_21_mse", "donor 21"),
    ("test_24_mse", "donor 24"), ("test_36_mse", "donor 36"), ("test_mse", "test MSE (mean)"),
    ("weight_sparsity", "weight sp."), ("feature_sparsity", "feature sp."),
    ("spurious_feature_sparsity", "spurious feature sp."), ("tf_selectivity", "TF selectivity"),
    ("null_tf_selectivity", "null selectivity (low-variance genes cut)"),
]
MOCAP_COLUMNS = [
    ("val_mse", "val MSE"), ("test_mse", "test MSE"), ("test_jog_mse", "jog MSE (walk -> jog)"),
    ("weight_sparsity", "weight sp."), ("feature_sparsity", "feature sp."),
]
# Per task: (metric that identifies it, table columns, (error, sparsity) of the scatter plot).
# Columns no run reports are dropped (e.g. the OOD columns of a task without those splits).
COLUMN_SETS = [
    ("test_ppl", [("val_ppl", "val ppl"), ("test_ppl", "test ppl"), ("val_acc", "val acc"), ("test_acc", "test acc"),
                  ("recurrent_sparsity", "W_hh sparsity")], ("test_ppl", "recurrent_sparsity")),
    ("test_error_cm", [("val_error_cm", "val error (cm)"), ("test_error_cm", "test error (cm)"),
                       ("recurrent_sparsity", "W_hh sparsity")], ("test_error_cm", "recurrent_sparsity")),
    ("recurrent_sparsity", [("val_mse", "val MSE"), ("test_mse", "test MSE"),
                            ("recurrent_sparsity", "W_hh sparsity")], ("test_mse", "recurrent_sparsity")),
    ("spurious_feature_sparsity", HEMATOPOIESIS_COLUMNS, ("test_mse", "feature_sparsity")),
    ("test_jog_mse", MOCAP_COLUMNS, ("test_mse", "weight_sparsity")),
    ("test_mse", DEFAULT_COLUMNS, ("test_mse", "weight_sparsity")),
]


STATS_NOTE = ("Paired by seed (the seeds both runs finished): mean difference from the baseline with a 95% "
              "bootstrap interval and a two-sided sign-flip p-value (with n pairs the smallest possible p is "
              "2/2^n: 0.25 for 3 seeds, 0.0625 for 5); failure rates with 95% Wilson intervals.")
PARETO_NOTE = ("Each method over all its strengths (mean over seeds per strength): the highest sparsity and "
               "best AUROC among its points whose mean {metric} is within {within:.0%} of {baseline}'s, and the "
               "lowest mean {error} among its points at least as sparse as each level (AUROC of that point). "
               "'—': no point qualifies.")
PARETO_NOTE_NO_BASELINE = ("Each method over all its strengths (mean over seeds per strength): the lowest mean {error} "
                           "among its points at least as sparse as each level (no baseline variant, so no "
                           "matched-error reading). '—': no point qualifies.")


def columns_for(records: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], tuple[str, str]]:
    """The column set of the first task kind whose identifying metric the runs report."""
    present = {k for r in records for k in r["metrics"]}
    for key, cols, plot in COLUMN_SETS:
        if key in present:
            return [c for c in cols if c[0] in present], plot
    return DEFAULT_COLUMNS, ("test_mse", "weight_sparsity")


def check_options(records: list[dict[str, Any]], by: str | None, metric: str, within: float,
                  baseline: str | None) -> None:
    """Reject options that would silently select nothing (each error lists the valid choices)."""
    metrics = sorted({k for r in records for k in r["metrics"]})
    if metrics and metric not in metrics:
        raise ReportError(f"--metric {metric!r}: no run reports it; choose from {metrics}")
    axes = sorted({k for r in records for k in r["labels"]} | {"task"})
    if by is not None and by not in axes:
        raise ReportError(f"--by {by!r}: not an axis of these runs; choose from {axes} (or '' for none)")
    variants = sorted({r["variant"] for r in records})
    if baseline is not None and baseline not in variants:
        raise ReportError(f"--baseline {baseline!r}: no such variant; choose from {variants}")
    if not within >= 0:
        raise ReportError(f"--within must be >= 0, got {within}")


def select(groups: list[Group], by: str | None = "task", metric: str = "val_mse", within: float = 0.10,
           baseline: str | None = "vanilla") -> dict[str, dict[str, Group]]:
    """``{by-label: {variant: chosen group}}`` by the rule in the module docstring."""
    out: dict[str, dict[str, Group]] = {}
    blocks: dict[str, list[Group]] = {}
    for g in groups:
        blocks.setdefault(block_of(g.labels, by), []).append(g)
    for block, gs in blocks.items():
        base = [g.mean(metric) for g in gs if g.variant == baseline and not math.isnan(g.mean(metric))]
        limit = (1.0 + within) * min(base) if base else -math.inf  # no baseline: lowest metric
        chosen: dict[str, Group] = {}
        for variant in dict.fromkeys(g.variant for g in gs):
            cands = [g for g in gs if g.variant == variant]
            ok = [g for g in cands if g.mean(metric) <= limit]
            if ok:
                chosen[variant] = ok[-1]
            else:
                finite = [g for g in cands if not math.isnan(g.mean(metric))]
                chosen[variant] = min(finite, key=lambda g: g.mean(metric)) if finite else cands[-1]
        out[block] = chosen
    return out


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _fail_cell(g: Group, trivial: tuple[str, float] | None) -> str:
    bad = g.worse_than(*trivial) if trivial else g.failures
    return f"{bad}/{g.finished}"


def selected_tables(chosen: dict[str, dict[str, Group]], by: str | None,
                    columns: list[tuple[str, str]] = DEFAULT_COLUMNS, trivial: tuple[str, float] | None = None,
                    ) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Per block: a header and rows (one per variant, the chosen point) of ``mean ± sd`` cells."""
    tables = {}
    fail = f"failed (diverged or {trivial[0]} >= {trivial[1]:g})" if trivial else "failed"
    for block, variants in chosen.items():
        header = ["method", "chosen", *[c[1] for c in columns], fail]
        rows = []
        for variant, g in variants.items():
            params = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in g.labels.items() if k != by) or "—"
            rows.append([variant, params, *[g.cell(c[0]) for c in columns], _fail_cell(g, trivial)])
        tables[block] = (header, rows)
    return tables


def comparison_tables(chosen: dict[str, dict[str, Group]], baseline: str | None, metrics: list[str]
                      ) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Per block: each chosen variant against the baseline variant, paired by seed, for every metric in
    ``metrics``: mean difference, 95% bootstrap interval and sign-flip p-value (:mod:`sparsedyn.stats`);
    and every variant's failure rate with its 95% Wilson interval."""
    tables = {}
    for block, variants in chosen.items():
        base = variants.get(baseline) if baseline else None
        compared = [f"{m} − {baseline} [95% CI], p" for m in metrics] if base is not None else []
        header = ["method", *compared, "failed / finished [95% CI]"]
        rows = []
        for variant, g in variants.items():
            lo, hi = wilson_interval(g.failures, g.finished)
            fail = f"{g.failures}/{g.finished} [{lo:.2f}, {hi:.2f}]" if g.finished else "—"
            cells = []
            if base is not None:
                cells = ["(baseline)" if g is base else paired_comparison(g.by_seed(m), base.by_seed(m)).cell()
                         for m in metrics]
            rows.append([variant, *cells, fail])
        tables[block] = (header, rows)
    return tables


def baselines_by_block(records: list[dict[str, Any]], by: str | None) -> dict[str, dict[str, dict[str, float]]]:
    """Per block: ``{predictor: {metric: value}}`` of the trivial predictors, as its first run recorded them."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    for r in records:
        block = block_of(r["labels"], by)
        if block not in found and r.get("baselines"):
            found[block] = r["baselines"]
    return found


def baseline_tables(baselines: dict[str, dict[str, dict[str, float]]], columns: list[tuple[str, str]]
                    ) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Per block: what the trivial predictors (learning nothing) score."""
    tables = {}
    for block, scores in baselines.items():
        cols = [c for c in columns if any(c[0] in v for v in scores.values())]
        rows = [[name, *[f"{v[c[0]]:.3g}" if c[0] in v else "—" for c in cols]] for name, v in scores.items()]
        tables[block] = (["trivial predictor", *[c[1] for c in cols]], rows)
    return tables


def flag_trivial(tables: dict[str, tuple[list[str], list[list[str]]]], chosen: dict[str, dict[str, Group]],
                 baselines: dict[str, dict[str, dict[str, float]]], metric: str = "test_mse") -> None:
    """Add a column to each selected table: does the method beat every trivial predictor on ``metric``?"""
    for block, (header, rows) in tables.items():
        scores = [(n, v[metric]) for n, v in baselines.get(block, {}).items() if metric in v]
        if not scores:
            continue
        name, value = min(scores, key=lambda s: s[1])
        header.append(f"beats trivial ({metric})")
        for row, g in zip(rows, chosen[block].values()):
            m = g.mean(metric)
            row.append("—" if math.isnan(m) else "yes" if m < value else f"**no** ({name} {value:.3g})")


def all_points_table(groups: list[Group], columns: list[tuple[str, str]] = DEFAULT_COLUMNS,
                     trivial: tuple[str, float] | None = None, metric: str = "val_mse"):
    cols = columns if any(c[0] == metric for c in columns) else [(metric, metric), *columns]
    header = ["point", *[c[1] for c in cols], "failed"]
    rows = [[g.label(), *[g.cell(c[0]) for c in cols], _fail_cell(g, trivial)] for g in groups]
    return header, rows


def failures_table(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """One row per failed or diverged run: where it is and the one-line reason."""
    rows = []
    for r in records:
        if r["status"] == "failed":
            rows.append([r["run_dir"], "failed", str(r.get("error", "")).splitlines()[0] if r.get("error") else "—"])
        elif r["status"] == "diverged":
            res, _ = _read_json(Path(r["run_dir"]) / "results.json")
            rows.append([r["run_dir"], "diverged", (res or {}).get("message", "—")])
    return ["run", "status", "reason"], rows


def write_csv_rows(path: Path, groups: list[Group], metrics: list[str]) -> None:
    from . import io

    rows = []
    for g in groups:
        row: dict[str, Any] = {"variant": g.variant, **g.labels, "runs": len(g.runs), "failed": g.failures}
        for m in metrics:
            row[f"{m}_mean"], row[f"{m}_sd"] = g.mean(m), g.sd(m)
        rows.append(row)
    io.write_csv(path, rows)


def build_report(runs_dir: str | Path, out_dir: str | Path | None = None, html_path: str | Path | None = None,
                 by: str | None = "task", metric: str = "val_mse", within: float = 0.10,
                 baseline: str | None = None,
                 command: str = "", machine: str = "", trivial: tuple[str, float] | None = None) -> dict[str, Any]:
    """Write ``report.md``, ``points.csv`` and PNGs to ``out_dir`` (and the HTML page if asked)."""
    from . import io
    from .report_html import image_html, page, table_html
    from .report_plots import across_blocks, dependency_grid, error_vs_sparsity, forecast_figure, per_method

    runs_dir = Path(runs_dir)
    records = collect(runs_dir)  # first: a missing runs directory must not be created
    check_options(records, by, metric, within, baseline)
    if baseline is None:  # the default: "vanilla" where the runs have it, else no baseline
        baseline = "vanilla" if any(r["variant"] == "vanilla" for r in records) else None
    out = Path(out_dir) if out_dir is not None else runs_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    groups = aggregate(records)
    chosen = select(groups, by, metric, within, baseline)
    columns, (error, sparsity) = columns_for(records)
    tables = selected_tables(chosen, by, columns, trivial)
    trivial_scores = baselines_by_block(records, by)
    baselines = baseline_tables(trivial_scores, columns)
    flag_trivial(tables, chosen, trivial_scores, error)
    footer = " · ".join(x for x in (command, machine) if x)
    if any(c[0] == "recovery_auroc" for c in columns):  # systems with a known graph
        figures = {f"error vs {sparsity.replace('_', ' ')}": error_vs_sparsity(
            groups, by, sparsity, out / f"error_vs_{sparsity}.png", error=error, footer=footer)}
        figures["error vs feature sparsity"] = error_vs_sparsity(groups, by, "feature_sparsity",
                                                                 out / "error_vs_feature_sparsity.png", footer=footer)
        figures["dependency matrices, true vs learned"] = dependency_grid(
            chosen, _truths(records, by), out / "dependency_matrices.png", footer=footer)
    else:  # RNN tasks: every pruned row sits at the same sparsity, so compare methods directly
        figures = {f"{error.replace('_', ' ')} per method": per_method(
            groups, error, out / f"{error}_per_method.png", trivial, footer=footer)}
    pareto = {}
    if any("weight_sparsity" in r["metrics"] for r in records):
        pareto = pareto_tables(groups, by, metric, within, baseline, error)
        trivial_errors = {b: {n: v[error] for n, v in s.items() if error in v} for b, s in trivial_scores.items()}
        fronts = plot_fronts(groups, by, out / "pareto_fronts.png", error, baseline, trivial=trivial_errors,
                             footer=footer)
        if fronts is not None:
            figures["Pareto fronts (error vs sparsity, each method's strengths)"] = fronts
    if by and len(chosen) >= 2:  # how each selected method moves across the blocks (e.g. data regimes)
        shown = [m for m in dict.fromkeys((error, "test_shift_mse", "test_intervention_mse",
                                           "recovery_jacobian_auroc_offdiag"))
                 if any(m in r["metrics"] for r in records)]
        figures[f"selected points across {by}"] = across_blocks(chosen, shown, out / f"across_{by}.png",
                                                               trivial_scores, footer=footer)
    thanks = _acknowledgements(records)
    fig = forecast_figure(chosen, out / "forecasts.png", footer=footer)  # where runs wrote forecasts
    if fig is not None:
        figures["forecasts of the first test sequence (first seed)"] = fig
    metrics = list(dict.fromkeys([metric, *[c[0] for c in columns]]))
    write_csv_rows(out / "points.csv", groups, metrics)
    n_failed = sum(g.failures for g in groups)
    n_runs = sum(g.finished for g in groups)
    n_missing = sum(len(g.runs) - g.finished for g in groups)
    rule = (f"Selection rule (same for every method): per {by or 'run set'}, the strongest point in grid order whose "
            f"mean {metric} is within {within:.0%} of {baseline}'s; otherwise the point with the lowest {metric}."
            if baseline else f"Selection rule (same for every method): per {by or 'run set'}, the point with the "
            f"lowest mean {metric} (no baseline variant among these runs).")
    missing = f"; {n_missing} not run yet" if n_missing else ""
    md = [f"Runs: {n_runs} finished ({n_failed} failed or diverged){missing}, from `{runs_dir}`.", "", rule, ""]
    compared = [m for m in dict.fromkeys((error, "test_shift_mse", "test_intervention_mse", "recovery_auroc",
                                          "recovery_jacobian_auroc", "recovery_jacobian_auroc_offdiag"))
                if any(m in r["metrics"] for r in records)]
    stats = comparison_tables(chosen, baseline, compared)
    for block, (header, rows) in tables.items():
        md += [f"### {block}", "", markdown_table(header, rows), ""]
        if block in baselines:
            md += [markdown_table(*baselines[block]), ""]
        md += [STATS_NOTE, "", markdown_table(*stats[block]), ""]
    if pareto:
        note = (PARETO_NOTE.format(metric=metric, within=within, baseline=baseline, error=error) if baseline
                else PARETO_NOTE_NO_BASELINE.format(error=error))
        md += ["### Pareto comparison", "", note, ""]
        for block, (header, rows) in pareto.items():
            md += [f"#### {block}", "", markdown_table(header, rows), ""]
    all_header, all_rows = all_points_table(groups, columns, trivial, metric)
    md += ["### All points", "", markdown_table(all_header, all_rows), ""]
    fail_header, fail_rows = failures_table(records)
    if fail_rows:
        md += ["### Failed runs", "", markdown_table(fail_header, fail_rows), ""]
    md += [f"![{name}]({p.name})" for name, p in figures.items()]
    md += ["", *thanks] if thanks else []
    io.write_text(out / "report.md", "\n".join(md) + "\n")
    if html_path is not None:
        sections = [(f"Selected points: {b}", table_html(h, r) + (table_html(*baselines[b]) if b in baselines else "")
                     + table_html(*stats[b])) for b, (h, r) in tables.items()]
        sections += [(f"Pareto comparison: {b}", table_html(h, r)) for b, (h, r) in pareto.items()]
        sections += [("All points", table_html(all_header, all_rows))]
        if fail_rows:
            sections += [("Failed runs", table_html(fail_header, fail_rows))]
        sections += [(name, image_html(p, name)) for name, p in figures.items()]
        io.write_text(Path(html_path), page(f"sparsedyn report: {runs_dir.name}",
                                            " ".join([rule, footer, *thanks]), sections))
    return {"groups": groups, "chosen": chosen, "tables": tables, "out": out}


def _acknowledgements(records: list[dict[str, Any]]) -> list[str]:
    """Acknowledgements the data's terms ask for wherever results on them are shown (e.g. CMU mocap),
    as the runs recorded them."""
    return list(dict.fromkeys(r["acknowledgement"] for r in records if r.get("acknowledgement")))


def _truths(records: list[dict[str, Any]], by: str | None) -> dict[str, np.ndarray]:
    """The true adjacency per block, from the ``truth.npy`` its runs wrote."""
    out: dict[str, np.ndarray] = {}
    for r in records:
        block = block_of(r["labels"], by)
        path = Path(r["run_dir"]) / "truth.npy"
        if block not in out and path.exists():
            out[block] = np.load(path)
    return out
