"""Tables and plots from a folder of runs: mean +- sd over seeds, failure rate, a selection rule.

``collect`` reads every run directory (``point.json`` + ``results.json`` or ``error.json``);
``aggregate`` groups runs that differ only in their seed; ``select`` applies one
hyper-parameter rule to every method alike: per group (e.g. per system), the *last* point in
grid order (axes listed weakest to strongest) whose mean validation error is within
``within`` of the baseline's; if none is, the one with the lowest validation error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_COLUMNS = [
    ("test_mse", "test MSE"), ("test_shift_mse", "shifted x0"), ("test_extrap_mse", "extrapolated"),
    ("test_intervention_mse", "intervention"), ("weight_sparsity", "weight sp."),
    ("feature_sparsity", "feature sp."), ("recovery_auroc", "AUROC"), ("recovery_auprc", "AUPRC"),
]
HEMATOPOIESIS_COLUMNS = [
    ("train_mse", "train (donor 12)"), ("test_11_mse", "donor 11"), ("test_21_mse", "donor 21"),
    ("test_24_mse", "donor 24"), ("test_36_mse", "donor 36"), ("test_mse", "test MSE (mean)"),
    ("weight_sparsity", "weight sp."), ("feature_sparsity", "feature sp."),
    ("spurious_feature_sparsity", "spurious feature sp."),
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


def columns_for(records: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], tuple[str, str]]:
    """The column set of the first task kind whose identifying metric the runs report."""
    present = {k for r in records for k in r["metrics"]}
    for key, cols, plot in COLUMN_SETS:
        if key in present:
            return [c for c in cols if c[0] in present], plot
    return DEFAULT_COLUMNS, ("test_mse", "weight_sparsity")


@dataclass
class Group:
    """The runs of one sweep point (all its seeds)."""

    variant: str
    labels: dict[str, str]
    order: int
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["status"] == "completed"]

    @property
    def failures(self) -> int:
        """Runs that raised or diverged (runs not started yet are not failures)."""
        return sum(r["status"] in ("failed", "diverged") for r in self.runs)

    def worse_than(self, metric: str, value: float) -> int:
        """Failures plus completed runs whose ``metric`` is no better than a trivial baseline's ``value``."""
        return self.failures + int(np.sum(self.values(metric) >= value))

    @property
    def finished(self) -> int:
        return sum(r["status"] != "missing" for r in self.runs)

    def values(self, metric: str) -> np.ndarray:
        return np.array([r["metrics"][metric] for r in self.ok if metric in r["metrics"]], dtype=float)

    def mean(self, metric: str) -> float:
        v = self.values(metric)
        return float(np.mean(v)) if v.size else math.nan

    def sd(self, metric: str) -> float:
        v = self.values(metric)
        return float(np.std(v, ddof=1)) if v.size > 1 else math.nan

    def cell(self, metric: str) -> str:
        m, s = self.mean(metric), self.sd(metric)
        if math.isnan(m):
            return "—"
        return f"{m:.3g} ± {s:.2g}" if not math.isnan(s) else f"{m:.3g}"

    def label(self, skip: tuple[str, ...] = ()) -> str:
        extra = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in self.labels.items() if k not in skip)
        return f"{self.variant} ({extra})" if extra else self.variant


class ReportError(ValueError):
    """A report cannot be made as asked (no runs there, an unknown metric or variant, ...)."""


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(content, None)``, or ``(None, reason)`` for an unreadable or corrupt file."""
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as e:
        return None, f"corrupt {path.name} ({type(e).__name__}: {e})"


def collect(runs_dir: str | Path) -> list[dict[str, Any]]:
    """One record per run directory below ``runs_dir`` (completed, diverged, failed or missing).

    Sweep points are found by their ``point.json``; directories of plain ``sparsedyn run``
    calls (a ``results.json``, no ``point.json``) are runs too, their variant being the
    config's name. A corrupt ``results.json`` makes its run a failure whose reason names the file.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ReportError(f"runs directory not found: {runs_dir}")
    manifest = runs_dir / "sweep.json"
    order = (_read_json(manifest)[0] or {}).get("points", []) if manifest.exists() else []
    rank = {p: i for i, p in enumerate(order)}
    dirs = {f.parent for f in runs_dir.rglob("point.json")} | {f.parent for f in runs_dir.rglob("results.json")}
    records = []
    for d in sorted(dirs):
        point, _ = _read_json(d / "point.json") if (d / "point.json").exists() else (None, None)
        rel = str(d.relative_to(runs_dir))
        rec = {"variant": None, "labels": {}, "seed": None, **(point or {}), "run_dir": str(d),
               "order": rank.get(rel, len(rank) + len(records))}
        if (d / "results.json").exists():
            res, problem = _read_json(d / "results.json")
            if res is None:
                print(f"sparsedyn report: {d / 'results.json'}: {problem}; counted as failed")
                rec.update(status="failed", metrics={}, error=f"{d / 'results.json'}: {problem}")
            else:
                rec.update(status=res["status"], metrics=res["metrics"], seconds=res.get("seconds"))
                rec["variant"] = rec["variant"] or res.get("name", d.name)
                rec["seed"] = rec["seed"] if rec["seed"] is not None else res.get("seed")
        elif (d / "error.json").exists():
            err, problem = _read_json(d / "error.json")
            rec.update(status="failed", metrics={}, error=(err or {}).get("error", problem))
        else:
            rec.update(status="missing", metrics={})
        rec["variant"] = rec["variant"] or rel
        records.append(rec)
    if not records:
        raise ReportError(f"no runs under {runs_dir} (no point.json or results.json files)")
    return records


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


def aggregate(records: list[dict[str, Any]]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for r in records:
        key = (r["variant"], tuple(sorted(r["labels"].items())))
        g = groups.setdefault(key, Group(r["variant"], dict(r["labels"]), r["order"]))
        g.order = min(g.order, r["order"])
        g.runs.append(r)
    return sorted(groups.values(), key=lambda g: g.order)


def select(groups: list[Group], by: str | None = "task", metric: str = "val_mse", within: float = 0.10,
           baseline: str | None = "vanilla") -> dict[str, dict[str, Group]]:
    """``{by-label: {variant: chosen group}}`` by the rule in the module docstring."""
    out: dict[str, dict[str, Group]] = {}
    blocks: dict[str, list[Group]] = {}
    for g in groups:
        blocks.setdefault(g.labels.get(by, "all") if by else "all", []).append(g)
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
    from .report_plots import dependency_grid, error_vs_sparsity, mocap_forecasts, per_method

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
    thanks = _acknowledgements(records)
    if thanks:  # motion capture: forecasts are better looked at than read
        fig = mocap_forecasts(chosen, out / "forecasts.png", footer=footer)
        if fig is not None:
            figures["forecasts of the first test sequence (first seed)"] = fig
    metrics = list(dict.fromkeys([metric, *[c[0] for c in columns]]))
    write_csv_rows(out / "points.csv", groups, metrics)
    n_failed = sum(g.failures for g in groups)
    n_runs = sum(g.finished for g in groups)
    n_missing = sum(len(g.runs) - g.finished for g in groups)
    rule = (f"Selection rule (same for every method): per {by or 'run set'}, the strongest point in grid order whose "
            f"mean {metric} is within {within:.0%} of {baseline}'s; otherwise the point with the lowest {metric}.")
    missing = f"; {n_missing} not run yet" if n_missing else ""
    md = [f"Runs: {n_runs} finished ({n_failed} failed or diverged){missing}, from `{runs_dir}`.", "", rule, ""]
    for block, (header, rows) in tables.items():
        md += [f"### {block}", "", markdown_table(header, rows), ""]
    all_header, all_rows = all_points_table(groups, columns, trivial, metric)
    md += ["### All points", "", markdown_table(all_header, all_rows), ""]
    fail_header, fail_rows = failures_table(records)
    if fail_rows:
        md += ["### Failed runs", "", markdown_table(fail_header, fail_rows), ""]
    md += [f"![{name}]({p.name})" for name, p in figures.items()]
    md += ["", *thanks] if thanks else []
    io.write_text(out / "report.md", "\n".join(md) + "\n")
    if html_path is not None:
        sections = [(f"Selected points: {b}", table_html(h, r)) for b, (h, r) in tables.items()]
        sections += [("All points", table_html(all_header, all_rows))]
        if fail_rows:
            sections += [("Failed runs", table_html(fail_header, fail_rows))]
        sections += [(name, image_html(p, name)) for name, p in figures.items()]
        io.write_text(Path(html_path), page(f"sparsedyn report: {runs_dir.name}",
                                            " ".join([rule, footer, *thanks]), sections))
    return {"groups": groups, "chosen": chosen, "tables": tables, "out": out}


def _task_config(record: dict[str, Any]) -> dict[str, Any] | None:
    """The ``task`` section of a run's ``config.yaml`` (None if the run wrote none)."""
    import yaml

    cfg_path = Path(record["run_dir"]) / "config.yaml"
    return yaml.safe_load(cfg_path.read_text())["task"] if cfg_path.exists() else None


def _acknowledgements(records: list[dict[str, Any]]) -> list[str]:
    """Acknowledgements the data's terms ask for wherever results on them are shown (CMU mocap)."""
    from .tasks.mocap import ACKNOWLEDGEMENT

    for r in records:
        task = _task_config(r)
        if task is not None and task.get("name") == "mocap":
            return [ACKNOWLEDGEMENT]
    return []


def _truths(records: list[dict[str, Any]], by: str | None) -> dict[str, np.ndarray]:
    """The true adjacency per block, rebuilt from each block's first run config."""
    from .tasks.systems import make_system

    out: dict[str, np.ndarray] = {}
    for r in records:
        block = r["labels"].get(by, "all") if by else "all"
        task = None if block in out else _task_config(r)
        if task is None:
            continue
        if task.get("name", "systems") == "systems":
            out[block] = make_system(task["system"], **task.get("system_params", {})).adjacency.astype(float)
        elif task["name"] == "krumsiek":
            from .tasks.krumsiek import model_file, parse_couplings

            out[block] = parse_couplings(model_file().read_text())[1].astype(float)
    return out
