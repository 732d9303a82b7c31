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


@app.command("list")
def list_() -> None:
    """List the available methods, tasks and systems."""
    from .methods.registry import METHODS
    from .tasks.systems import SYSTEMS

    typer.echo("methods: " + ", ".join(sorted(METHODS)))
    typer.echo("tasks:   systems")
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
