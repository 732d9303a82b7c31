"""The ``sparsedyn`` command: run, list, demo."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Sparse recurrent and continuous-depth neural networks.")


@app.command()
def run(
    config: Path = typer.Argument(..., help="YAML experiment file."),
    seed: int | None = typer.Option(None, help="Override the config's seed."),
    out: Path | None = typer.Option(None, help="Run directory (default: runs/<name>/seed<seed>)."),
    resume: bool = typer.Option(False, help="Continue from the run directory's last checkpoint."),
) -> None:
    """Train and evaluate one experiment; write config, metrics, checkpoints and results."""
    from .config import ConfigError, load_config
    from .runner import run_experiment

    try:
        cfg = load_config(config)
        if seed is not None:
            cfg = cfg.model_copy(update={"seed": seed})
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    out = out or Path("runs") / cfg.name / f"seed{cfg.seed}"
    res = run_experiment(cfg, out, resume=resume)
    typer.echo(f"{res['status']}: {res['message']} ({res['seconds']:.1f} s) -> {out}")
    for k, v in res["metrics"].items():
        if not k.startswith("recovery_") or k in ("recovery_auroc", "recovery_auprc"):
            typer.echo(f"  {k:24s} {v:.4g}")
    thanks = getattr(res["_experiment"].task, "acknowledgement", None) if "_experiment" in res else None
    if thanks:
        typer.echo(thanks)


@app.command()
def sweep(
    sweep_file: Path = typer.Argument(..., help="YAML sweep file (base config x grid x variants x seeds)."),
    out: Path | None = typer.Option(None, help="Runs directory (default: runs/<sweep name>)."),
    backend: str = typer.Option("local", help="'local' (process pool) or 'ray'."),
    workers: int | None = typer.Option(None, help="Parallel runs (default: CPU count)."),
    address: str | None = typer.Option(None, help="Ray cluster address (default: start a local Ray)."),
) -> None:
    """Run every point of a sweep; complete points are skipped, interrupted ones resumed."""
    from .config import ConfigError
    from .runner import run_sweep
    from .sweep import load_sweep

    try:
        spec = load_sweep(sweep_file)
        counts = run_sweep(spec, out or Path("runs") / spec.name, backend, workers, address)
    except (ConfigError, ValueError, ImportError) as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    typer.echo(", ".join(f"{k}: {v}" for k, v in counts.items()))


@app.command()
def report(
    runs_dir: Path = typer.Argument(..., help="A folder of runs (e.g. a sweep's output)."),
    out: Path | None = typer.Option(None, help="Output folder (default: RUNS_DIR/report)."),
    html: Path | None = typer.Option(None, help="Also write one self-contained HTML page here."),
    by: str = typer.Option("task", help="Axis whose values get one table each ('' for none)."),
    metric: str = typer.Option("val_mse", help="Metric of the selection rule."),
    within: float = typer.Option(0.10, help="Tolerance of the selection rule, relative to the baseline."),
    baseline: str = typer.Option("vanilla", help="Variant the selection rule compares with."),
    trivial: str | None = typer.Option(None, help="METRIC=VALUE of a trivial predictor; runs no better count "
                                       "as failures (e.g. test_mse=0.1667)."),
) -> None:
    """Aggregate runs (mean ± sd over seeds, failures) into Markdown, CSV, PNG (and HTML)."""
    import platform
    import sys

    from .report import build_report

    machine = f"{platform.machine()}, {__import__('os').cpu_count()} cores, {platform.system()}"
    trivial_pair = None
    if trivial:
        name, _, value = trivial.partition("=")
        try:
            trivial_pair = (name, float(value))
        except ValueError:
            typer.echo(f"--trivial must be METRIC=VALUE, got {trivial!r}", err=True)
            raise typer.Exit(2) from None
    try:
        res = build_report(runs_dir, out, html, by or None, metric, within, baseline,
                           command="sparsedyn " + " ".join(sys.argv[1:]), machine=machine, trivial=trivial_pair)
    except FileNotFoundError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {res['out'] / 'report.md'}" + (f" and {html}" if html else ""))


@app.command("list")
def list_() -> None:
    """List the available methods, tasks and systems."""
    from .methods.registry import METHODS
    from .tasks.systems import SYSTEMS

    typer.echo("methods: " + ", ".join(sorted(METHODS)))
    typer.echo("tasks:   systems, navigation, adding, language")
    typer.echo("systems: " + ", ".join(sorted(SYSTEMS)))


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), help="Folder for the figure and run files."),
    epochs: int = typer.Option(1000, help="Training epochs per model."),
) -> None:
    """Vanilla NODE vs PathReg NODE on a sparse system with a known graph (about 1 minute)."""
    from .demo import run_demo

    run_demo(out, epochs=epochs)


if __name__ == "__main__":
    app()
