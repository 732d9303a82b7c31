"""The ``sparsedyn`` command: run, sweep, report, list, demo.

Errors are one line naming the problem (and the file, where there is one) on stderr: exit
code 2 for a bad config or argument, 1 for a failure while running, 130 for an interrupted
sweep. ``sparsedyn --debug ...`` shows the full traceback instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Sparse recurrent and continuous-depth neural networks.")
_DEBUG = {"on": False}


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"sparsedyn {__version__}")
        raise typer.Exit()


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
         version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """Sparse recurrent and continuous-depth neural networks."""
    _DEBUG["on"] = debug


def _machine() -> str:
    """The machine, as figure footers name it."""
    import os
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"


def _fail(message: str, code: int) -> None:
    typer.echo(f"sparsedyn: {message}", err=True)
    raise typer.Exit(code)


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or "(no message)"
    plain = (ValueError, FileNotFoundError, typer.BadParameter)  # their messages name the problem themselves
    return text if isinstance(e, plain) else f"{type(e).__name__}: {text}"


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """A warning as one line on stderr, ``sparsedyn: GraphWarning: ...``: Python's own format adds the file,
    line number and the source line that called the library, which mean nothing to a command's user."""
    typer.echo(f"sparsedyn: {category.__name__}: {message}", err=True)


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn any exception of ``command`` into one clear line and an exit code, and each warning into one
    line (traceback and Python's warning format with --debug)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        import warnings

        from .backends import SweepInterrupted
        from .config import ConfigError
        from .report import ReportError
        from .rundir import RunDirError
        from .tasks.user_data import DataError

        try:
            with warnings.catch_warnings():  # restores Python's showwarning afterwards
                if not _DEBUG["on"]:
                    warnings.showwarning = _show_warning
                return command(*args, **kwargs)
        except typer.Exit:
            raise
        except SweepInterrupted as e:
            counts = getattr(e, "counts", {})
            done = ", ".join(f"{k}: {v}" for k, v in counts.items() if v)
            how = "stopped at once (running points keep their last checkpoint)" if e.hard else \
                "stopped; running points checkpointed"
            _fail(f"sweep interrupted: {how}. {done}. Run the same command again to resume.", 130)
        except Exception as e:  # noqa: BLE001 - the CLI's last line of defence: one line, not 100
            if _DEBUG["on"]:
                raise
            code = 2 if isinstance(e, (ConfigError, RunDirError, ReportError, DataError, typer.BadParameter)) else 1
            _fail(_one_line(e) + ("" if code == 2 else "  (sparsedyn --debug ... shows the traceback)"), code)
        except KeyboardInterrupt:  # click would print only "Aborted."
            if _DEBUG["on"]:
                raise
            _fail("interrupted", 130)

    return wrapper


def _output_folder(out: Path) -> Path:
    """``out``, created if missing, checked before any work: a long fit must not end in an error about where
    its results go."""
    import os

    from .tasks.user_data import DataError

    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise DataError(f"--out {out}: the folder is not writable")
    return out


SET_HELP = "Override a config field, e.g. --set trainer.epochs=20 or --set methods.0.lam=0.01 (repeatable)."


def _apply_sets(raw: dict[str, Any], sets: list[str] | None, where: str = "") -> dict[str, Any]:
    """``raw`` with every ``--set key=value`` applied (value read as YAML, key a dotted path); the result is
    validated like the file itself by whoever parses it."""
    import yaml

    from .config import ConfigError
    from .sweep import set_path

    for item in sets or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set must be KEY=VALUE (e.g. trainer.epochs=20), got {item!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({e})") from None
        target = raw.setdefault("base", {}) if where == "base" else raw
        set_path(target, key.strip(), value)
    return raw


@app.command()
@friendly_errors
def run(
    config: Path = typer.Argument(..., help="YAML experiment file."),
    seed: int | None = typer.Option(None, min=0, help="Override the config's seed."),
    out: Path | None = typer.Option(None, help="Run directory (default: runs/<name>/seed<seed>)."),
    resume: bool = typer.Option(False, help="Continue from the run directory's last checkpoint."),
    overwrite: bool = typer.Option(False, help="Replace a run of another config in the run directory."),
    threads: int | None = typer.Option(None, min=1, help="Override trainer.threads (torch threads)."),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Train and evaluate one experiment; write config, metrics, checkpoints and results.

    A directory that already holds this config's finished run is left as it is (say --overwrite to
    retrain). Exits 1 if the run diverged (its best checkpoint is kept and reported)."""
    from .config import parse_config, read_config_data
    from .runner import run_experiment

    cfg = parse_config(_apply_sets(read_config_data(config), set_), root=config.resolve().parent)
    if seed is not None:
        cfg = cfg.model_copy(update={"seed": seed})
    if threads is not None:
        cfg = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"threads": threads})})
    out = out or Path("runs") / cfg.name / f"seed{cfg.seed}"
    if not (resume or overwrite) and _complete(out, cfg):
        typer.echo(f"complete: {out} already holds this config's finished run (--overwrite retrains it)")
        return
    res = run_experiment(cfg, out, resume=resume, overwrite=overwrite)
    typer.echo(f"{res['status']}: {res['message']} ({res['seconds']:.1f} s) -> {out}")
    for k, v in res["metrics"].items():
        if not k.startswith("recovery_") or k in ("recovery_auroc", "recovery_auprc"):
            typer.echo(f"  {k:24s} {v:.4g}")
    if res.get("acknowledgement"):
        typer.echo(res["acknowledgement"])
    if res["status"] == "diverged":
        raise typer.Exit(1)


def _complete(out: Path, cfg: Any) -> bool:
    """Whether ``out`` holds a finished run of this very config (as a sweep decides for its points)."""
    from .sweep import Point

    return Point(cfg.name, {}, cfg.seed, cfg.model_dump(), out).status() == "complete"


@app.command()
@friendly_errors
def sweep(
    sweep_file: Path = typer.Argument(..., help="YAML sweep file (base config x grid x variants x seeds)."),
    out: Path | None = typer.Option(None, help="Runs directory (default: runs/<sweep name>)."),
    backend: str = typer.Option("local", help="'local' (process pool) or 'ray'."),
    workers: int | None = typer.Option(None, min=1, help="Parallel runs (default: CPU count)."),
    address: str | None = typer.Option(None, help="Ray cluster address (default: start a local Ray)."),
    stack: int = typer.Option(32, min=1, help="Most points trained as one stacked job (points differing only "
                              "in seed and method strengths); 1 trains every point on its own."),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP + " Applies to the sweep's base config."),
) -> None:
    """Run every point of a sweep; complete points are skipped, interrupted ones resumed.

    Exits 1 if any point failed (its error.json says why) or diverged (as ``run`` does for a diverged run;
    its best checkpoint is kept and reported), 130 if interrupted (run it again to resume).
    """
    from .config import ConfigError, read_yaml
    from .sweep import load_sweep, parse_sweep, run_sweep

    spec = load_sweep(sweep_file) if not set_ else \
        parse_sweep(_apply_sets(read_yaml(sweep_file, "sweep"), set_, "base"), root=sweep_file.parent)
    try:
        counts = run_sweep(spec, out or Path("runs") / spec.name, backend, workers, address, stack=stack)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    typer.echo(", ".join(f"{k}: {v}" for k, v in counts.items()))
    total = sum(counts[k] for k in ("complete_before", "completed", "diverged", "failed"))
    if counts["failed"] or counts["diverged"]:
        parts = [f"{counts['failed']} of {total} points failed (see their error.json)"] if counts["failed"] else []
        parts += [f"{counts['diverged']} of {total} points diverged (best checkpoints kept)"] \
            if counts["diverged"] else []
        _fail("; ".join(parts), 1)


@app.command()
@friendly_errors
def path(
    config: Path = typer.Argument(..., help="YAML experiment file with the method whose strength to raise."),
    out: Path | None = typer.Option(None, help="Folder of the path's runs (default: runs/<name>-path)."),
    method: int = typer.Option(0, min=0, help="Index of the method in the config's methods list."),
    param: str | None = typer.Option(None, help="Strength parameter (default: lam, lambda_paths or sparsity)."),
    values: str | None = typer.Option(None, help="Comma-separated strengths, increasing (overrides start/stop/num; "
                                      "--dense still puts 0 first)."),
    start: float = typer.Option(1e-4, help="Smallest nonzero strength."),
    stop: float = typer.Option(1e-1, help="Largest strength."),
    num: int = typer.Option(7, help="Nonzero strengths, spaced geometrically."),
    dense: bool = typer.Option(True, help="Start the path with strength 0 (the dense model)."),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """A regularisation path: strengths raised step by step, each point warm-started from the previous
    one's sparsified weights, fine-tuned and scored; writes path.csv and path.png (Pareto front)."""
    import sys

    from .config import ConfigError, parse_config, read_config_data
    from .path import geometric, plot_path, run_path

    raw = _apply_sets(read_config_data(config), set_)
    parse_config(raw, root=config.resolve().parent)  # a bad --set fails here, before any point runs
    if values:
        try:
            grid = [float(v) for v in values.split(",")]
        except ValueError:
            raise ConfigError(f"--values must be comma-separated numbers, got {values!r}") from None
        if dense and grid and grid[0] != 0:  # the dense point the default promises: the path's reference
            grid = [0.0, *grid]
    else:
        try:
            grid = geometric(start, stop, num, dense)
        except ConfigError as e:
            raise ConfigError(f"--start {start:g} --stop {stop:g} --num {num}: {e}") from None
    out = out or Path("runs") / f"{raw.get('name', 'experiment')}-path"
    rows = run_path(raw, out, grid, method, param, root=config.resolve().parent)
    key = next(k for k in rows[0] if k not in ("status",))
    footer = f"sparsedyn {' '.join(sys.argv[1:])} · {_machine()}"
    plot_path(rows, key, out / "path.png", footer)
    for r in rows:
        shown = {k: r[k] for k in ("test_mse", "val_mse", "weight_sparsity", "feature_sparsity") if k in r}
        typer.echo(f"{key}={r[key]:<10.3g} {r['status']:9s} " + "  ".join(f"{k} {v:.4g}" for k, v in shown.items()))
    typer.echo(f"wrote {out / 'path.csv'} and {out / 'path.png'}")


@app.command()
@friendly_errors
def report(
    runs_dir: Path = typer.Argument(..., help="A folder of runs (e.g. a sweep's output)."),
    out: Path | None = typer.Option(None, help="Output folder (default: RUNS_DIR/report)."),
    html: Path | None = typer.Option(None, help="Also write one self-contained HTML page here."),
    by: str = typer.Option("task", help="Axis whose values get one table each ('' for none)."),
    metric: str = typer.Option("val_mse", help="Metric of the selection rule."),
    within: float = typer.Option(0.10, help="Tolerance of the selection rule, relative to the baseline."),
    baseline: str | None = typer.Option(None, help="Variant the selection rule compares with (default: "
                                        "'vanilla' where there is one; none: the lowest metric)."),
    trivial: str | None = typer.Option(None, help="METRIC=VALUE of a trivial predictor; runs no better count "
                                       "as failures (e.g. test_mse=0.1667)."),
) -> None:
    """Aggregate runs (mean ± sd over seeds, failures) into Markdown, CSV, PNG (and HTML)."""
    import sys

    from .report import build_report

    machine = _machine()
    trivial_pair = None
    if trivial:
        name, _, value = trivial.partition("=")
        try:
            trivial_pair = (name, float(value))
        except ValueError:
            _fail(f"--trivial must be METRIC=VALUE, got {trivial!r}", 2)
    res = build_report(runs_dir, out, html, by or None, metric, within, baseline,
                       command="sparsedyn " + " ".join(sys.argv[1:]), machine=machine, trivial=trivial_pair)
    typer.echo(f"wrote {res['out'] / 'report.md'}" + (f" and {html}" if html else ""))


@app.command()
@friendly_errors
def rescore(
    runs_dir: Path = typer.Argument(..., help="A folder of finished runs (e.g. a sweep's output)."),
) -> None:
    """Recompute finished runs' sparsity and graph-recovery metrics from their saved models (no training):
    runs made before a metric existed get it; forecast errors stay as recorded."""
    from .rescore import rescore_runs

    res = rescore_runs(runs_dir)
    typer.echo(f"{res['rescored']} runs updated, {res['up_to_date']} already up to date, {res['skipped']} skipped "
               f"(not completed, SINDy, or no model.pt)" + (f"; metrics: {', '.join(res['metrics'])}"
                                                              if res["metrics"] else ""))


@app.command()
def reference(out: Path = typer.Option(Path("docs/reference.md"), help="Markdown file to write.")) -> None:
    """Write the API and configuration reference, rendered from the docstrings and the pydantic configs."""
    from . import io
    from .reference import render_reference

    io.write_text(out, render_reference(app))
    typer.echo(f"wrote {out}")


@app.command("list")
def list_() -> None:
    """List the available methods, tasks (with the model kinds each takes) and systems."""
    from .methods.registry import METHODS
    from .tasks import SYSTEMS, TASKS

    typer.echo("methods: " + ", ".join(sorted(METHODS)))
    typer.echo("tasks:   " + ", ".join(f"{n} ({'/'.join(TASKS[n].model_kinds)})" for n in sorted(TASKS)))
    typer.echo("systems: " + ", ".join(sorted(SYSTEMS)))


def _names(listing: str) -> list[str]:
    """Names from ``a,b,c`` or from ``@file`` (one per line or comma-separated; blank lines and ``#`` comments
    skipped): a gene panel of hundreds of names does not fit on a command line."""
    if listing.startswith("@"):
        path = Path(listing[1:])
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as e:
            raise typer.BadParameter(f"--features {listing}: cannot read the list of names ({e.strerror})") from None
        listing = ",".join(line.split("#", 1)[0] for line in text.splitlines())
    return [name.strip() for name in listing.split(",") if name.strip()]


@app.command()
@friendly_errors
def graph(
    data: Path = typer.Argument(..., help="Trajectories: .csv / .tsv, gzipped or not (one row per observation; "
                                                         "comma, semicolon or tab), .npz or .h5ad."),
    out: Path = typer.Option(Path("graph_out"), help="Folder for edges.csv, graph.png and fit.json."),
    time: str = typer.Option("t", help="The time column (CSV), array (.npz) or obs column (.h5ad)."),
    group: str | None = typer.Option(None, help="The column that names each row's trajectory (CSV, .h5ad)."),
    features: str = typer.Option("", help="Comma-separated feature columns (genes of an .h5ad) to fit, in this "
                                          "order, or @FILE: a text file of names (one per line, or comma-"
                                          "separated); default: every column but time and group."),
    seed: int = typer.Option(0, help="Every random choice of the fit (folds, subsamples)."),
    poly: str = typer.Option("auto", help="Degree-2 library terms: auto, true or false."),
    top: int = typer.Option(15, min=0, help="Edges to print, best first."),
    missing: str = typer.Option("error", help="Time points where only some features are missing: error, or "
                                              "interpolate (each feature's interior gaps filled linearly in time, "
                                              "points with a gap at a trajectory's start or end dropped)."),
    periodic: str = typer.Option("", help="Comma-separated features that are angles in radians (phases): "
                                          "unwrapped, and entered as their cosine and sine."),
    sort: bool = typer.Option(False, "--sort", help="Sort each trajectory's rows by time (a pseudotime table, an "
                                                    "export sorted by another column); without it such rows are "
                                                    "an error."),
    duplicates: str = typer.Option("error", help="Rows of one trajectory that share a time: error, or average "
                                                 "(one state per time, each feature's mean over the rows)."),
) -> None:
    """The dependency graph of your system from its trajectories (SparseGraph with its defaults): writes
    edges.csv (every edge, best first, with its probability and sign), graph.png (the graph with edge
    confidence and forecasts of three trajectories) and fit.json (what the fit chose, and its held-out
    derivative error: 1 is what predicting the training mean scores)."""
    import sys

    from .graph import SparseGraph
    from .io import write_csv, write_json
    from .tasks.time_order import DUPLICATES
    from .tasks.user_data import load_series

    choices: dict[str, bool | str] = {"auto": "auto", "true": True, "false": False}
    if poly.lower() not in choices:
        raise typer.BadParameter(f"--poly must be auto, true or false, got {poly!r}")
    if missing not in ("error", "interpolate"):
        raise typer.BadParameter(f"--missing must be error or interpolate, got {missing!r}")
    if duplicates not in DUPLICATES:
        raise typer.BadParameter(f"--duplicates must be error or average, got {duplicates!r}")
    chosen = _names(features) or None
    series = load_series(data, time, group, chosen, missing=missing, sort=sort, duplicates=duplicates)
    _output_folder(out)
    if series.averaged:
        rows = "1 row" if series.averaged == 1 else f"{series.averaged} rows"
        typer.echo(f"--duplicates average: {rows} averaged into others at the same time")
    if series.interpolated or series.dropped:
        typer.echo(f"--missing interpolate: {series.interpolated} values interpolated, {series.dropped} time "
                   "points dropped (a gap at a trajectory's start or end)")
    phases = [name.strip() for name in periodic.split(",") if name.strip()]
    est = SparseGraph(poly=choices[poly.lower()], seed=seed, progress=True, periodic=phases).fit(
        series.values, t=series.times, feature_names=series.features)
    write_csv(out / "edges.csv", est.edges_)
    write_json(out / "fit.json", {
        "command": "sparsedyn " + " ".join(sys.argv[1:]), "machine": _machine(), "data": str(data),
        "trajectories": len(series.values), "features": list(series.features), "design": est.design_,
        "forecast_library": "degree 2" if est.poly_ else "linear", "strength": est.strength_,
        "library_errors": est.library_errors_, "forecast_errors": est.forecast_errors_,
        "trajectory_matching_kept": est.refined_, "trajectory_matching_errors": est.refine_errors_,
        "fit_cpu_seconds": est.fit_seconds_, "seed": seed, "missing": missing,
        "values_interpolated": series.interpolated, "points_dropped": series.dropped, "periodic": phases,
        "sorted": sort, "duplicates": duplicates, "rows_averaged": series.averaged,
        "held_out_derivative_error": est.cv_mse_,  # standardised units: 1 is what the training mean scores
        "cross_validated_over": "trajectories" if len(series.values) > 1 else "blocks of time (one trajectory)"})
    est.plot(out / "graph.png", series)
    scored = [e for e in est.edges_[:top] if e["score"] > 0]  # edges_ is best first
    if top and not scored:
        typer.echo("no edge scores above 0: the fit supports no dependency between these variables (see the "
                   "warnings above); edges.csv lists every edge with score 0")
    else:
        typer.echo(f"{'source':>14} -> {'target':<14} {'score':>6} {'probability':>11} sign")
    for e in scored:
        typer.echo(f"{e['source']:>14} -> {e['target']:<14} {e['score']:6.3f} {e['probability']:11.2f} "
                   f"{'+' if e['sign'] > 0 else '-' if e['sign'] < 0 else '0'}")
    typer.echo(f"wrote {out / 'edges.csv'}, {out / 'graph.png'} and {out / 'fit.json'} "
               f"(fit {est.fit_seconds_:.1f} s CPU)")


@app.command()
@friendly_errors
def demo(
    out: Path = typer.Option(Path("demo_out"), help="Folder for the figure and run files."),
    epochs: int = typer.Option(1000, help="Training epochs per model."),
) -> None:
    """Vanilla NODE vs PathReg NODE on a sparse system with a known graph (1 to 5 minutes on 2 cores)."""
    from .demo import run_demo

    run_demo(_output_folder(out), epochs=epochs)


if __name__ == "__main__":
    app()
