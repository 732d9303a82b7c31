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
    t = cfg.task
    system = make_system(t.system, **t.system_params)
    if cfg.model.kind == "sonode" and not (system.second_order and len(system.observed) * 2 == system.n):
        raise ValueError(f"model.kind: sonode needs a second-order system observed in positions only; "
                         f"{t.system!r} is not")
    task = SystemTask(
        system, n_train=t.n_train, n_val=t.n_val, n_test=t.n_test, t_end=t.t_end, n_points=t.n_points,
        noise=t.noise, irregular=t.irregular, shift=t.shift, extrapolate=t.extrapolate,
        intervention=t.intervention, seed=t.data_seed,
    )
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
