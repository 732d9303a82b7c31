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
from .nn.sequence_models import PathIntegrationRNN, RNNLanguageModel, SequenceRegressor
from .rundir import RunDirectory, fingerprint
from .tasks.adding import AddingTask
from .tasks.hematopoiesis_task import HematopoiesisTask
from .tasks.language import LanguageTask, load_corpus_dir, load_ptb
from .tasks.mocap_task import MocapTask
from .tasks.navigation import NavigationTask
from .tasks.system_task import SystemTask
from .tasks.systems import make_system
from .train import Trainer, TrainResult, seed_everything


@dataclass
class Experiment:
    task: Any
    model: nn.Module
    method: Compose


def build_task(cfg: ExperimentConfig):
    """The task named by ``cfg.task.name`` (systems, navigation, adding, language, mocap, hematopoiesis,
    krumsiek)."""
    t = cfg.task
    if t.name == "mocap":
        return MocapTask(t.data_dir, t.source, t.window, t.windows_per_epoch, t.noise, t.irregular, t.horizon,
                         t.dt, t.data_seed)
    if t.name == "krumsiek":
        from .tasks.krumsiek import KrumsiekTask  # needs the optional scanpy

        return KrumsiekTask(t.n_realizations, t.window, t.stride, t.dt, t.data_seed)
    if t.name == "hematopoiesis":
        return HematopoiesisTask(t.data_dir, tuple(t.test_donors), t.steps_per_epoch, t.grid_points)
    if t.name == "navigation":
        return NavigationTask(t.n_place_cells, t.sequence_length, t.steps_per_epoch, t.n_val, t.n_test,
                              t.place_cell_sigma, t.surround_scale, t.box, t.data_seed, t.place_cell_dog)
    if t.name == "adding":
        return AddingTask(t.sequence_length, t.steps_per_epoch, t.n_val, t.n_test, t.data_seed)
    if t.name == "language":
        corpus = load_ptb() if t.corpus == "ptb" else load_corpus_dir(t.corpus)
        return LanguageTask(corpus, t.bptt, t.eval_batch_size, t.max_train_tokens, t.max_eval_tokens)
    return SystemTask(
        make_system(t.system, **t.system_params), n_train=t.n_train, n_val=t.n_val, n_test=t.n_test,
        t_end=t.t_end, n_points=t.n_points, noise=t.noise, irregular=t.irregular, shift=t.shift,
        extrapolate=t.extrapolate, intervention=t.intervention, seed=t.data_seed,
    )


def build_model(cfg: ExperimentConfig, task) -> nn.Module:
    """The model for ``cfg.model.kind`` on ``task``; an impossible pairing is a clear error."""
    m, name = cfg.model, cfg.task.name
    if (m.kind == "rnn") != (name in ("navigation", "adding", "language")):
        raise ValueError(f"model.kind: {m.kind!r} does not fit task {name!r} (navigation, adding and language "
                         "take 'rnn'; systems take 'node', 'sonode' or 'sindy')")
    if m.kind == "rnn":
        if name == "language":
            return RNNLanguageModel(task.vocab_size, m.embedding_size or m.hidden[0], m.hidden, m.cell,
                                    m.nonlinearity, m.tie_weights)
        if name == "navigation":
            return PathIntegrationRNN(task.n_place_cells, m.hidden, m.cell, m.nonlinearity, m.rnn_bias)
        return SequenceRegressor(2, m.hidden, m.cell, m.nonlinearity, m.rnn_bias)
    n = task.n_observed
    solver = dict(solver=m.solver, rtol=m.rtol, atol=m.atol, step_size=m.step_size, adjoint=m.adjoint)
    if m.kind == "node":
        return NeuralODE(MLP(n, n, m.hidden, m.activation), **solver)
    if m.kind == "sindy":
        raise ValueError("model.kind: sindy is a baseline without a torch model; use run_experiment")
    if not getattr(task, "supports_sonode", False):
        raise ValueError(f"model.kind: sonode needs second-order data observed in positions only; task {name!r}"
                         + (f" with system {cfg.task.system!r}" if name == "systems" else "") + " is not")
    # a task that gives the initial velocity from its data (mocap: the first frames) needs no network for it
    velocity = None if getattr(task, "velocity_from_data", False) else MLP(n, n, m.velocity_hidden, m.activation)
    return SecondOrderODE(MLP(2 * n, n, m.hidden, m.activation), velocity, **solver)


def build_experiment(cfg: ExperimentConfig) -> Experiment:
    """Task, model (seeded with ``cfg.seed``) and the composed, prepared methods.

    With ``cfg.lottery`` the model is re-initialised (original: same seed; fresh: another
    seed) and takes the final masks of the run ``lottery.from_run``.
    """
    task = build_task(cfg)
    fresh = cfg.lottery is not None and cfg.lottery.reinit == "fresh"
    seed_everything(cfg.seed + (1_000_003 if fresh else 0))
    method = Compose(build_method(spec) for spec in cfg.methods)
    model = method.prepare(build_model(cfg, task))
    if cfg.lottery is not None:
        _load_masks(model, Path(cfg.lottery.from_run.format(seed=cfg.seed)))
        seed_everything(cfg.seed)  # training draws the same random numbers as the source run
    return Experiment(task, model, method)


def _load_masks(model: nn.Module, run_dir: Path) -> None:
    source = run_dir / "results.json"
    if not source.exists():
        raise FileNotFoundError(f"lottery.from_run: no finished run at {run_dir} (results.json missing)")
    state = torch.load(run_dir / "last.pt", weights_only=False)["model"]
    masks = {k: v for k, v in state.items() if k.endswith(".mask")}
    own = {k for k in model.state_dict() if k.endswith(".mask")}
    if not masks or set(masks) != own:
        raise ValueError(f"lottery.from_run: masks of {run_dir} do not match this model's masks "
                         "(use the same model and pruning method)")
    model.load_state_dict(masks, strict=False)


def analyse(model: nn.Module, task) -> dict[str, float]:
    """Sparsity (global and of the recurrent matrices) and, where the truth is known, graph recovery."""
    ws = analysis.weight_sparsity(model)
    out = {"weight_sparsity": ws["global"]}
    recurrent = [v for k, v in ws.items() if k.endswith("weight_hh")]
    if recurrent:
        sizes = [p.numel() for n, p in analysis.effective_weights(model).items() if n.endswith("weight_hh")]
        out["recurrent_sparsity"] = sum(s * n for s, n in zip(recurrent, sizes)) / sum(sizes)
    if not hasattr(task, "truth"):  # recurrent tasks: no vector field
        return out
    out["feature_sparsity"] = analysis.feature_sparsity(analysis.dependency_matrix(model, "structural"))
    if hasattr(task, "analyse"):
        out.update(task.analyse(model))
    scores = analysis.path_scores(model)
    # no truth for real data; a first-order NODE on a second-order system has none of its shape
    if task.truth is not None and tuple(scores.shape) == task.truth.shape:
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


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path | None = None, resume: bool = False,
                   overwrite: bool = False) -> dict[str, Any]:
    """Train and evaluate one experiment; with ``out_dir``, write config, metrics, checkpoints, results.

    The run uses ``cfg.trainer.threads`` torch threads (restored afterwards), so ``sparsedyn run``
    and a sweep worker give the same numbers. A run directory holding another config's run is
    refused unless ``overwrite`` (see :mod:`sparsedyn.rundir`); a run stopped by
    :func:`~sparsedyn.train.request_stop` returns status ``interrupted`` and writes no results.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.trainer.threads)
    try:
        if out_dir is None:
            return _run(cfg, None, resume)
        info = {"threads": cfg.trainer.threads, "torch": torch.__version__}
        with RunDirectory(out_dir, fingerprint(cfg.model_dump()), resume, overwrite, info):
            return _run(cfg, Path(out_dir), resume)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: ExperimentConfig, out: Path | None, resume: bool) -> dict[str, Any]:
    start = time.perf_counter()
    if cfg.model.kind == "sindy":
        return _run_sindy(cfg, out, start)
    exp = build_experiment(cfg)
    if out is not None:
        io.write_text(out / "config.yaml", yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    trainer = Trainer(exp.model, exp.method, exp.task, cfg.trainer, out, seed=cfg.seed)
    result: TrainResult = trainer.fit(resume=resume)
    results = {
        "name": cfg.name, "seed": cfg.seed, "status": result.status, "message": result.message,
        "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "threads": cfg.trainer.threads,
        "seconds": time.perf_counter() - start, "metrics": {},
    }
    if result.status == "interrupted":  # no results.json: the run is resumed, not reported
        results["_experiment"] = exp
        return results
    results["metrics"] = {**exp.task.evaluate(exp.model), **analyse(exp.model, exp.task)}
    if out is not None:
        if hasattr(exp.task, "truth"):
            torch.save(analysis.dependency_matrix(exp.model), out / "dependency.pt")
        io.write_json(out / "results.json", results)  # last: its presence means "complete"
    results["_experiment"] = exp
    return results


def _run_sindy(cfg: ExperimentConfig, out_dir: Path | None, start: float) -> dict[str, Any]:
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
        torch.save(torch.as_tensor((scores > 0).astype("float32")), out / "dependency.pt")
        io.write_json(out / "results.json", results)
    return results
