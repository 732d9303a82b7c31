"""Run one experiment from a config: build task, model and methods, train, analyse, write results."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from . import analysis, io
from .config import ExperimentConfig
from .methods.base import Compose
from .methods.magnitude import MagnitudePruning
from .methods.registry import METHODS, build_method, parameters_of
from .methods.strength import calibrate
from .nn import native
from .nn.modes import eval_mode
from .rundir import RunDirectory, fingerprint
from .tasks import TASKS, Task
from .tasks.forecast import ForecastTask
from .train import Trainer, TrainResult, TrainSettings, seed_everything
from .train_stacked import train_stacked


@dataclass
class Experiment:
    task: Task
    model: nn.Module
    method: Compose
    strengths: dict[str, float] | None = None  # the absolute strengths of a relative-strength run


@dataclass
class RunOutcome:
    """What one run gives back: ``record``, exactly what ``results.json`` holds (status, metrics,
    baselines, ...), and the trained ``experiment`` (None for the SINDy baseline, which has no torch model)."""

    record: dict[str, Any]
    experiment: Experiment | None


def build_task(cfg: ExperimentConfig) -> Task:
    """The registered task named by ``cfg.task.name``, built from its config section."""
    return TASKS[cfg.task.name](cfg.task)


def build_model(model_cfg: Any, task: Task) -> nn.Module:
    """The task's model for a config's ``model`` section; a kind the task does not take is a clear error."""
    if model_cfg.kind not in task.model_kinds:
        raise ValueError(f"model.kind: {model_cfg.kind!r} does not fit task {task.name!r}, which takes "
                         f"{', '.join(task.model_kinds)}")
    if model_cfg.kind == "sindy":
        raise ValueError("model.kind: sindy is a baseline without a torch model; use run_experiment")
    return task.build_model(model_cfg)


def assemble(task: Task, model_cfg: Any, methods: list[dict[str, Any]], seed: int, trainer: TrainSettings,
             init_seed: int | None = None) -> tuple[nn.Module, Compose, dict[str, float] | None]:
    """The task's model (initialised from ``init_seed``, default ``seed``) with the composed, prepared
    methods, whose own random choices follow ``seed``; with ``trainer.strength: relative`` their
    strengths are calibrated on this fresh initialisation (the absolute values are returned)."""
    seed_everything(seed if init_seed is None else init_seed)
    method = Compose(build_method(_seeded(spec, seed)) for spec in methods)
    _warn_unfinished_schedules(method, trainer.epochs)
    model = method.prepare(build_model(model_cfg, task))
    strengths = None
    if trainer.strength == "relative":  # before any warm start: a path's points share one scale
        strengths = calibrate(method, model, initial_data_loss(task, model, trainer.batch_size, seed))
    return model, method, strengths


def _warn_unfinished_schedules(method: Compose, epochs: int) -> None:
    """Warn where a pruning schedule ends after the sparsification epochs (``trainer.epochs``; fine-tuning does
    not prune): the run would end at a lower sparsity than asked, and say nothing. A warning, not an error: a
    short smoke run of a full config is legitimate."""
    for i, m in enumerate(method.methods):
        if not isinstance(m, MagnitudePruning):
            continue
        reached = m.target(epochs)
        if reached < m.sparsity:
            last = m.start if m.schedule == "oneshot" else m.end
            warnings.warn(f"methods.{i} (magnitude): its schedule ends at epoch {last}, after the run's {epochs} "
                          f"sparsification epochs (trainer.epochs; fine-tuning does not prune), so the run reaches "
                          f"sparsity {reached:.3g} of the {m.sparsity:g} asked; lower its end (start for "
                          "oneshot) or raise trainer.epochs", UserWarning, stacklevel=3)


def load_warm_start(model: nn.Module, path: str | Path) -> None:
    """Load the weights of a checkpoint (e.g. a path point's ``sparsified.pt``) into ``model``."""
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"warm_start: no such checkpoint: {source}")
    model.load_state_dict(torch.load(source, weights_only=False)["model"])


def build_experiment(cfg: ExperimentConfig, task: Task | None = None) -> Experiment:
    """Task (or the given one, built from the same ``task`` section), model (seeded with ``cfg.seed``)
    and the composed, prepared methods.

    With ``cfg.lottery`` the model is re-initialised (original: same seed; fresh: another
    seed) and takes the final masks of the run ``lottery.from_run`` (or, with ``mask: random``, those masks
    with their entries shuffled from ``cfg.seed``: the random ticket of the same per-tensor sparsity).
    """
    task = build_task(cfg) if task is None else task
    fresh = cfg.lottery is not None and cfg.lottery.reinit == "fresh"
    model, method, strengths = assemble(task, cfg.model, cfg.methods, cfg.seed, cfg.trainer,
                                        init_seed=cfg.seed + (1_000_003 if fresh else 0))
    if cfg.lottery is not None:
        shuffle = torch.Generator().manual_seed(cfg.seed + 2_000_003) if cfg.lottery.mask == "random" else None
        _load_masks(model, Path(cfg.lottery.from_run.format(seed=cfg.seed)), shuffle)
        seed_everything(cfg.seed)  # training draws the same random numbers as the source run
    if cfg.warm_start is not None:
        load_warm_start(model, cfg.warm_start)
    return Experiment(task, model, method, strengths)


def initial_data_loss(task: Task, model: nn.Module, batch_size: int, seed: int) -> float:
    """The task loss of ``model`` on one training batch (its own generator, deterministic gates); the
    global random state is left as it was, so training draws the same numbers as without it."""
    state = torch.get_rng_state()
    try:
        batch = next(iter(task.train_batches(batch_size, torch.Generator().manual_seed(seed))))
        with eval_mode(model), torch.no_grad():
            return float(task.loss(model, batch))
    finally:
        torch.set_rng_state(state)


def _seeded(spec: dict[str, Any], seed: int) -> dict[str, Any]:
    """A method's own random choices (e.g. moduli's neuron positions) follow the run's seed unless the
    config fixes them: without this, every seed of a sweep would share one manifold layout."""
    takes_seed = "seed" in parameters_of(spec.get("name"))
    return {**spec, "seed": seed} if takes_seed and "seed" not in spec else spec


def _load_masks(model: nn.Module, run_dir: Path, shuffle: torch.Generator | None = None) -> None:
    """The final masks of the finished run ``run_dir``; with ``shuffle``, each mask's entries randomly
    permuted (its number of kept entries unchanged)."""
    source = run_dir / "results.json"
    if not source.exists():
        raise FileNotFoundError(f"lottery.from_run: no finished run at {run_dir} (results.json missing)")
    state = torch.load(run_dir / "last.pt", weights_only=False)["model"]
    masks = {k: v for k, v in state.items() if k.endswith(".mask")}
    own = {k for k in model.state_dict() if k.endswith(".mask")}
    if not masks or set(masks) != own:
        raise ValueError(f"lottery.from_run: masks of {run_dir} do not match this model's masks "
                         "(use the same model and pruning method)")
    if shuffle is not None:
        masks = {k: v.flatten()[torch.randperm(v.numel(), generator=shuffle)].view_as(v)
                 for k, v in sorted(masks.items())}
    model.load_state_dict(masks, strict=False)


def analyse(model: nn.Module, task: Task) -> dict[str, float]:
    """Sparsity (global and of the recurrent matrices) and, where the truth is known, graph recovery."""
    ws = analysis.weight_sparsity(model)
    out = {"weight_sparsity": ws["global"]}
    recurrent = [v for k, v in ws.items() if k.endswith("weight_hh")]
    if recurrent:
        sizes = [p.numel() for n, p in analysis.effective_weights(model).items() if n.endswith("weight_hh")]
        out["recurrent_sparsity"] = sum(s * n for s, n in zip(recurrent, sizes)) / sum(sizes)
    out.update(task.analyse(model))
    if not task.has_vector_field:
        return out
    out["feature_sparsity"] = analysis.feature_sparsity(analysis.dependency_matrix(model, "structural"))
    scores = analysis.path_scores(model)
    # no truth for real data; a first-order NODE on a second-order system has none of its shape
    if task.truth is not None and tuple(scores.shape) == task.truth.shape:
        rec = analysis.recovery_metrics(scores, task.truth)
        out.update({f"recovery_{k}": v for k, v in rec.items()})
        x = task.field_inputs("train")
        if x is not None and x.shape[-1] == task.truth.shape[1]:  # the field's input is the observed state
            jac = analysis.jacobian_recovery(model, x, task.truth)
            out.update({f"recovery_jacobian_{k}": v for k, v in jac.items()})
    return out


def load_run(run_dir: str | Path, checkpoint: str = "model.pt", task: Task | None = None) -> Experiment:
    """Rebuild a finished run's experiment from its ``config.yaml`` and load its weights: by default the
    reported model (``model.pt``), or another checkpoint (``last.pt``, ``best.pt``). ``task``: an already
    built task of the same task section, reused (building a task can mean simulating or loading data)."""
    from .config import load_config

    run_dir = Path(run_dir)
    exp = build_experiment(load_config(run_dir / "config.yaml"), task)
    saved = torch.load(run_dir / checkpoint, weights_only=False)
    if saved.get("phase", 1) == 2:  # saved after fine-tuning began: the pattern was frozen (gates -> masks)
        exp.method.finalize(exp.model)
    exp.model.load_state_dict(saved["model"])
    return exp


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path | None = None, resume: bool = False,
                   overwrite: bool = False) -> dict[str, Any]:
    """Train and evaluate one experiment and return its results record (what ``results.json`` holds);
    :func:`train_experiment` also gives the trained model."""
    return train_experiment(cfg, out_dir, resume, overwrite).record


def train_experiment(cfg: ExperimentConfig, out_dir: str | Path | None = None, resume: bool = False,
                     overwrite: bool = False) -> RunOutcome:
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
        info = {"threads": cfg.trainer.threads, "torch": torch.__version__, "rk4_kernel": _rk4_kernel(cfg)}
        with RunDirectory(out_dir, fingerprint(cfg.model_dump()), resume, overwrite, info):
            return _run(cfg, Path(out_dir), resume)
    finally:
        torch.set_num_threads(threads)


def _rk4_kernel(cfg: ExperimentConfig) -> str:
    """For ``run.json``: whether this run's rk4 solves of tanh MLP fields may use the native kernel (its numbers
    equal the PyTorch path's to float rounding, not bit for bit, so it is part of the run like the threads)."""
    m = cfg.model
    if not (m.solver == "rk4" and m.fixed_grid_loop and m.native_solve):
        return "off"
    return native.status()


def _run(cfg: ExperimentConfig, out: Path | None, resume: bool) -> RunOutcome:
    start = time.perf_counter()
    if cfg.model.kind == "sindy":
        return _run_sindy(cfg, out, start)
    exp, trainer = _prepare(cfg, out)
    return _report(cfg, out, exp, trainer.fit(resume=resume), start)


def _prepare(cfg: ExperimentConfig, out: Path | None, task: Task | None = None) -> tuple[Experiment, Trainer]:
    """The experiment (on ``task`` if given) and its trainer (its config written to ``out``)."""
    exp = build_experiment(cfg, task)
    if out is not None:
        io.write_text(out / "config.yaml", yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    return exp, Trainer(exp.model, exp.method, exp.task, cfg.trainer, out, seed=cfg.seed)


def _report(cfg: ExperimentConfig, out: Path | None, exp: Experiment, result: TrainResult,
            start: float) -> RunOutcome:
    """A trained run's results (evaluated, analysed, written to ``out``)."""
    results: dict[str, Any] = {
        "name": cfg.name, "seed": cfg.seed, "status": result.status, "message": result.message,
        "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "threads": cfg.trainer.threads,
        "seconds": time.perf_counter() - start, "metrics": {},
    }
    if exp.strengths is not None:
        results["strengths"] = exp.strengths
    if result.status == "interrupted":  # no results.json: the run is resumed, not reported
        return RunOutcome(results, exp)
    results["metrics"] = {**exp.task.evaluate(exp.model), **analyse(exp.model, exp.task)}
    if result.sparsified is not None:  # the same scores before fine-tuning, for "after sparsification" columns
        results["metrics"].update({f"sparsified_{k}": v for k, v in result.sparsified.items()})
    results["acknowledgement"] = exp.task.acknowledgement
    results["baselines"] = exp.task.trivial_baselines()  # what learning nothing scores, beside every number
    if out is not None:
        dependency = analysis.dependency_matrix(exp.model) if exp.task.has_vector_field else None
        io.save_torch(out / "model.pt", {"model": exp.model.state_dict(), "phase": result.phase})
        _write_outputs(out, exp.task, results, dependency, exp.task.figure_data(exp.model))
    return RunOutcome(results, exp)


def stack_key(config: dict[str, Any]) -> str | None:
    """Runs with equal keys can train as one stacked job (:func:`run_stacked`): their configs differ only in
    ``seed``, ``name``, ``warm_start`` and the numeric strengths of their methods. None: never stacked
    (the SINDy baseline, lottery-ticket runs)."""
    if config.get("model", {}).get("kind") == "sindy" or config.get("lottery"):
        return None
    cfg = {k: v for k, v in config.items() if k not in ("seed", "name", "warm_start")}
    cfg["methods"] = [{k: v for k, v in spec.items() if not (k in _stackable_params(spec) and _is_number(v))}
                      for spec in config.get("methods", [])]
    return fingerprint(cfg)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _stackable_params(spec: dict[str, Any]) -> tuple[str, ...]:
    """The numbers in which members of one stacked job may differ, as the spec's method declares them."""
    cls = METHODS.get(str(spec.get("name")))
    return cls.stackable_params if cls is not None else ()


def run_stacked(cfgs: list[ExperimentConfig], out_dirs: Sequence[str | Path | None] | None = None,
                resume: bool | list[bool] = False, overwrite: bool | list[bool] = False,
                progress: bool = False) -> list[dict[str, Any]]:
    """The results records of :func:`train_stacked_experiments` (what each ``results.json`` holds)."""
    return [o.record for o in train_stacked_experiments(cfgs, out_dirs, resume, overwrite, progress)]


def train_stacked_experiments(cfgs: list[ExperimentConfig], out_dirs: Sequence[str | Path | None] | None = None,
                              resume: bool | list[bool] = False, overwrite: bool | list[bool] = False,
                              progress: bool = False) -> list[RunOutcome]:
    """Train several experiments as one lockstep job (:func:`~sparsedyn.train_stacked.train_stacked`);
    each gets the run directory, files and numbers it would get from :func:`run_experiment` (up to float
    rounding of the batched products). Members must share everything but seed and method strengths
    (:func:`stack_key`); ``resume``/``overwrite`` may be given per member."""
    n = len(cfgs)
    outs = list(out_dirs) if out_dirs is not None else [None] * n
    resumes = list(resume) if isinstance(resume, list) else [resume] * n
    overwrites = list(overwrite) if isinstance(overwrite, list) else [overwrite] * n
    if not (len(outs) == len(resumes) == len(overwrites) == n):
        raise ValueError("run_stacked: one run directory, resume and overwrite flag per config")
    keys = {stack_key(c.model_dump()) for c in cfgs}
    if None in keys or len(keys) != 1:
        raise ValueError("run_stacked: the configs must differ only in seed and method strengths "
                         "(and no SINDy or lottery-ticket run)")
    threads = torch.get_num_threads()
    torch.set_num_threads(cfgs[0].trainer.threads)
    try:
        with ExitStack() as dirs:
            for cfg, out, res, over in zip(cfgs, outs, resumes, overwrites):
                if out is not None:
                    info = {"threads": cfg.trainer.threads, "torch": torch.__version__, "stacked": n,
                            "rk4_kernel": _rk4_kernel(cfg)}
                    dirs.enter_context(RunDirectory(out, fingerprint(cfg.model_dump()), res, over, info))
            start = time.perf_counter()
            members: list[tuple[Experiment, Trainer]] = []
            tasks: dict[str, Task] = {}
            for cfg, out in zip(cfgs, outs):
                key = fingerprint(cfg.task.model_dump())
                exp, trainer = _prepare(cfg, None if out is None else Path(out), tasks.get(key))
                if isinstance(exp.task, ForecastTask):  # stateless in training: members of one section share it
                    tasks[key] = exp.task
                trainer.rng_state = torch.get_rng_state()  # where this run's own training would start
                members.append((exp, trainer))
            results = train_stacked([t for _, t in members], resume=any(resumes), progress=progress)
            return [_report(cfg, None if out is None else Path(out), exp, result, start)
                    for cfg, out, (exp, _), result in zip(cfgs, outs, members, results)]
    finally:
        torch.set_num_threads(threads)


def _write_outputs(out: Path, task: Task, results: dict[str, Any], dependency: torch.Tensor | None,
                   figure: dict[str, Any] | None) -> None:
    """Everything a report reads, so it never rebuilds the experiment: the learned and the true
    dependency matrices, the figure's arrays and, last (its presence means "complete"), the results."""
    if dependency is not None:
        torch.save(dependency, out / "dependency.pt")
    if task.truth is not None:
        io.save_numpy(out / "truth.npy", np.asarray(task.truth, dtype=float))
    if task.feature_names is not None:
        io.write_json(out / "features.json", task.feature_names)
    if task.scaling is not None:  # the trajectories task's data scaling, to map its numbers back
        io.write_json(out / "scaling.json", task.scaling.as_dict())
    if figure is not None:
        io.save_npz(out / "forecasts.npz", figure)
    io.write_json(out / "results.json", results)


def _run_sindy(cfg: ExperimentConfig, out_dir: Path | None, start: float) -> RunOutcome:
    """The pysindy baseline: fit, forecast on every split, score the coefficient-support graph."""
    from .baselines.sindy import SindyModel, fit_sindy

    if cfg.methods:
        raise ValueError("methods: the sindy baseline takes no sparsity methods (its own threshold sparsifies)")
    task = build_task(cfg)
    if not isinstance(task, ForecastTask) or task.truth is None:
        raise ValueError(f"model.kind: sindy needs a forecasting task with a known graph, not {task.name!r}")
    model = SindyModel(fit_sindy(task.splits["train"], cfg.model.sindy_degree, cfg.model.sindy_threshold))
    scores = model.scores()
    metrics = {**task.evaluate(model), "feature_sparsity": analysis.feature_sparsity(scores),
               "weight_sparsity": float((model.sindy.coefficients() == 0).mean()),
               **{f"recovery_{k}": v for k, v in analysis.recovery_metrics(scores, task.truth).items()}}
    results = {"name": cfg.name, "seed": cfg.seed, "status": "completed", "message": "sindy fit",
               "epochs_run": 0, "best_epoch": 0, "seconds": time.perf_counter() - start, "metrics": metrics,
               "acknowledgement": task.acknowledgement, "baselines": task.trivial_baselines()}
    if out_dir is not None:
        out = Path(out_dir)
        io.write_text(out / "config.yaml", yaml.safe_dump(cfg.model_dump(), sort_keys=False))
        _write_outputs(out, task, results, torch.as_tensor((scores > 0).astype("float32")), None)
    return RunOutcome(results, None)
