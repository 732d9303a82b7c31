"""Run one experiment from a config: build task, model and methods, train, analyse, write results."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from . import analysis, io
from .config import ExperimentConfig
from .methods.base import Compose
from .methods.registry import build_method
from .nn.fields import MLP
from .nn.ode import NeuralODE, SecondOrderODE
from .tasks.system_task import SystemTask
from .tasks.systems import make_system
from .train import Trainer, TrainResult, TrainSettings, seed_everything


@dataclass
class Experiment:
    task: SystemTask
    model: nn.Module
    method: Compose


def build_model(cfg: ExperimentConfig, n: int) -> nn.Module:
    m = cfg.model
    solver = dict(solver=m.solver, rtol=m.rtol, atol=m.atol, step_size=m.step_size, adjoint=m.adjoint)
    if m.kind == "node":
        return NeuralODE(MLP(n, n, m.hidden, m.activation), **solver)
    return SecondOrderODE(MLP(2 * n, n, m.hidden, m.activation),
                          MLP(n, n, m.velocity_hidden, m.activation), **solver)


def build_experiment(cfg: ExperimentConfig) -> Experiment:
    """Task, model (seeded with ``cfg.seed``) and the composed, prepared methods."""
    task = build_task(cfg)
    system = task.system
    if cfg.model.kind == "sonode" and not (system.second_order and len(system.observed) * 2 == system.n):
        raise ValueError(f"model.kind: sonode needs a second-order system observed in positions only; "
                         f"{cfg.task.system!r} is not")
    if cfg.model.kind == "sindy":
        raise ValueError("model.kind: sindy is a baseline without a torch model; use run_experiment")
    seed_everything(cfg.seed)
    method = Compose(build_method(spec) for spec in cfg.methods)
    model = method.prepare(build_model(cfg, task.n_observed))
    return Experiment(task, model, method)


def analyse(model: nn.Module, task: SystemTask) -> dict[str, float]:
    """Sparsity and graph recovery of a trained model (deterministic gates)."""
    ws = analysis.weight_sparsity(model)
    D = analysis.dependency_matrix(model, "structural")
    out = {"weight_sparsity": ws["global"], "feature_sparsity": analysis.feature_sparsity(D)}
    scores = analysis.path_scores(model)
    if tuple(scores.shape) == task.truth.shape:  # e.g. a first-order NODE on a 2nd-order system has no truth
        rec = analysis.recovery_metrics(scores, task.truth)
        out.update({f"recovery_{k}": v for k, v in rec.items()})
    return out


def load_run(run_dir: str | Path, checkpoint: str = "last.pt") -> Experiment:
    """Rebuild a finished run's experiment from its ``config.yaml`` and load its weights."""
    from .config import load_config

    run_dir = Path(run_dir)
    exp = build_experiment(load_config(run_dir / "config.yaml"))
    state = torch.load(run_dir / checkpoint, weights_only=False)["model"]
    exp.model.load_state_dict(state)
    return exp


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path | None = None,
                   resume: bool = False) -> dict[str, Any]:
    """Train and evaluate one experiment; with ``out_dir``, write config, metrics, checkpoints, results."""
    start = time.perf_counter()
    if cfg.model.kind == "sindy":
        return _run_sindy(cfg, out_dir, start)
    exp = build_experiment(cfg)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        io.write_text(out / "config.yaml", yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    settings = TrainSettings(**cfg.trainer.model_dump())
    trainer = Trainer(exp.model, exp.method, exp.task, settings, out, seed=cfg.seed)
    result: TrainResult = trainer.fit(resume=resume)
    metrics = {**exp.task.evaluate(exp.model), **analyse(exp.model, exp.task)}
    results = {
        "name": cfg.name, "seed": cfg.seed, "status": result.status, "message": result.message,
        "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
        "seconds": time.perf_counter() - start, "metrics": metrics,
    }
    if out is not None:
        io.write_json(out / "results.json", results)
        torch.save(analysis.dependency_matrix(exp.model), out / "dependency.pt")
    results["_experiment"] = exp
    return results


def build_task(cfg: ExperimentConfig) -> SystemTask:
    t = cfg.task
    return SystemTask(
        make_system(t.system, **t.system_params), n_train=t.n_train, n_val=t.n_val, n_test=t.n_test,
        t_end=t.t_end, n_points=t.n_points, noise=t.noise, irregular=t.irregular, shift=t.shift,
        extrapolate=t.extrapolate, intervention=t.intervention, seed=t.data_seed,
    )


def _run_sindy(cfg: ExperimentConfig, out_dir: str | Path | None, start: float) -> dict[str, Any]:
    """The pysindy baseline: fit, forecast on every split, score the coefficient-support graph."""
    from .baselines.sindy import SindyModel, fit_sindy

    if cfg.methods:
        raise ValueError("methods: the sindy baseline takes no sparsity methods (its own threshold sparsifies)")
    task = build_task(cfg)
    model = SindyModel(fit_sindy(task.splits["train"], cfg.model.sindy_degree, cfg.model.sindy_threshold))
    scores = model.scores()
    metrics = {**task.evaluate(model), "feature_sparsity": analysis.feature_sparsity(scores),
               "weight_sparsity": float((model.sindy.coefficients() == 0).mean()),
               **{f"recovery_{k}": v for k, v in analysis.recovery_metrics(scores, task.truth).items()}}
    results = {"name": cfg.name, "seed": cfg.seed, "status": "completed", "message": "sindy fit",
               "epochs_run": 0, "best_epoch": 0, "seconds": time.perf_counter() - start, "metrics": metrics}
    if out_dir is not None:
        out = Path(out_dir)
        io.write_text(out / "config.yaml", yaml.safe_dump(cfg.model_dump(), sort_keys=False))
        io.write_json(out / "results.json", results)
        torch.save(torch.as_tensor((scores > 0).astype("float32")), out / "dependency.pt")
    return results


def run_sweep(spec, runs_dir: str | Path, backend: str = "local", workers: int | None = None,
              address: str | None = None, progress: bool = True) -> dict[str, int]:
    """Run every incomplete point of a :class:`~sparsedyn.sweep.SweepSpec`; return status counts.

    Complete points are skipped, interrupted ones resumed, failed ones retried; a point that
    raises is recorded in its ``error.json`` and the others go on.
    """
    from tqdm.auto import tqdm

    from .backends import run_local, run_ray

    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    runs_dir = Path(runs_dir)
    points = spec.points(runs_dir)
    for p in points:
        io.write_json(p.run_dir / "point.json", {"sweep": spec.name, "variant": p.variant, "labels": p.labels,
                                                 "seed": p.seed})
    io.write_json(runs_dir / "sweep.json", {"name": spec.name, "select": spec.select,
                                            "points": [str(p.run_dir.relative_to(runs_dir)) for p in points]})
    todo = [p for p in points if p.status() != "complete"]
    counts = {"complete_before": len(points) - len(todo), "completed": 0, "diverged": 0, "failed": 0}
    bar = tqdm(total=len(points), initial=counts["complete_before"], desc=f"sweep {spec.name}",
               disable=not progress)

    def done(summary):
        key = {"completed": "completed", "diverged": "diverged"}.get(summary["status"], "failed")
        counts[key] += 1
        bar.update(1)
        if summary["status"] == "failed":
            tqdm.write(f"failed: {summary['run_dir']}: {summary['error']}")

    jobs = [(p.config, str(p.run_dir)) for p in todo]
    if backend == "local":
        run_local(jobs, workers, done)
    else:
        run_ray(jobs, address, workers, done)
    bar.close()
    return counts
