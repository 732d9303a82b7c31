"""The trainer: it knows sparsity methods only through their hooks.

Before training the untrained model is evaluated once (epoch 0): it is the first best
checkpoint and the reference a blow-up is measured against, so a run that explodes before
its first scheduled evaluation still counts as diverged.

Phase 1, ``epochs`` sparsification epochs: mini-batches -> ``task.loss + method.penalty`` ->
optimizer step -> ``method.after_step`` (with the optimizer's per-element step sizes, so proximal
thresholds are on the loss's scale); then ``method.on_epoch_end``, evaluation, a CSV row, and
atomic checkpoints (``last.pt`` every epoch, ``best.pt`` when the monitored metric improves).
Phase 2, ``finetune_epochs`` (default a quarter of ``epochs``): the sparsified model is scored
(the ``sparsified_*`` metrics), ``method.finalize`` freezes the pattern (gates become masks of
their deterministic values), and the weights train on the task loss alone with a fresh
optimizer and a cosine schedule; the best validation checkpoint of this phase (whose sparsity
pattern is the final one) is the reported model. Without fine-tuning the final weights are reported.

A non-finite loss or a monitored metric above ``divergence_factor`` x the best stops training
with a message and restores the best checkpoint. ``resume=True`` continues from ``last.pt``
with the saved RNG states (in either phase), so an interrupted run ends with the same numbers
as an uninterrupted one; an unreadable ``last.pt`` falls back to ``best.pt``, then to a fresh
start, with a message naming the file. :func:`request_stop` (a sweep's first Ctrl-C) makes
the loop stop after the current epoch's checkpoint with status ``interrupted``.

:meth:`Trainer.fit` is ``begin`` -> per epoch ``enter_epoch``, the mini-batch steps (``objective``,
backward, ``update``), ``end_epoch`` -> ``finish``; :mod:`sparsedyn.train_stacked` drives several
trainers through the same calls in lockstep, with one shared forward and backward per step.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import io
from .methods.base import Method
from .optim import AdamWithHeavyBall


class TrainSettings(BaseModel):
    """Every trainer setting, with its one default (the config's ``trainer`` section is this class)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(200, gt=0)
    lr: float = Field(1e-2, gt=0)
    gate_lr: float | None = Field(0.1, gt=0)  # learning rate of gate parameters; None = lr
    # Learning rate of a proximal method's "prox" group (LassoNet's skip and first layer), which takes
    # heavy-ball SGD steps (momentum 0.9) under Adam, as in the lassonet package; None = lr.
    prox_lr: float | None = Field(None, gt=0)
    # "relative": a method's strength is in units of the initial data loss (sparsedyn.methods.strength).
    strength: Literal["absolute", "relative"] = "absolute"
    batch_size: int = Field(16, gt=0)
    lr_schedule: Literal["none", "cosine", "plateau"] = "none"  # plateau: lr / 4 when the monitor stalls
    optimizer: Literal["adam", "sgd"] = "adam"
    grad_clip: float | None = Field(None, gt=0)
    eval_every: int = Field(10, gt=0)
    divergence_factor: float = Field(1e4, gt=1)  # diverged: monitored metric > factor x best (epoch 0 incl.)
    threads: int = Field(1, ge=1)  # torch threads: part of a run (results depend on it), same for run and sweep
    # Fine-tuning after the sparsification epochs: the methods freeze their sparsity pattern (gates become
    # masks) and the weights train on the task loss alone; the best validation checkpoint of this phase is
    # the reported model. None: a quarter of ``epochs``; 0: no fine-tuning (the final weights are reported).
    finetune_epochs: int | None = Field(None, ge=0)
    finetune_lr: float | None = Field(None, gt=0)  # None: lr (restarted, cosine-decayed over the phase)
    progress: bool = True

    @property
    def n_finetune(self) -> int:
        return self.epochs // 4 if self.finetune_epochs is None else self.finetune_epochs


@dataclass
class TrainResult:
    status: str  # "completed" | "diverged" | "interrupted"
    message: str
    epochs_run: int
    best_epoch: int | None  # None: no finite evaluation at all
    best_value: float
    history: list[dict[str, float]] = field(default_factory=list)
    sparsified: dict[str, float] | None = None  # evaluation after the sparsification epochs, before fine-tuning
    phase: int = 1  # the reported model's phase (2: its pattern is frozen; load it after ``method.finalize``)


class DivergenceError(RuntimeError):
    """Raised inside the loop when training diverges; handled by :meth:`Trainer.fit`."""


def non_finite(value: float, epoch: int) -> DivergenceError:
    """The error of a training step whose objective came out as ``value`` (NaN or infinite)."""
    return DivergenceError(f"non-finite training loss ({value}) at epoch {epoch}")


class TrainableTask(Protocol):
    """What the trainers (this module's and :mod:`~sparsedyn.train_stacked`'s) need from a task; every
    :class:`sparsedyn.tasks.base.Task` provides it (stacking: a default that declines)."""

    @property
    def monitor(self) -> str: ...

    def train_batches(self, batch_size: int, generator: torch.Generator): ...
    def loss(self, model: nn.Module, batch: Any) -> Tensor: ...
    def evaluate(self, model: nn.Module) -> dict[str, float]: ...
    def can_stack(self, models: Sequence[nn.Module], batches: Sequence[Any]) -> bool: ...
    def stacked_loss(self, models: Sequence[nn.Module], batches: Sequence[Any]) -> list[Tensor]: ...


_STOP = threading.Event()


def request_stop() -> None:
    """Ask every running :class:`Trainer` in this process to stop after its current epoch."""
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


def clear_stop() -> None:
    """Withdraw a :func:`request_stop` (for a process that goes on training after one)."""
    _STOP.clear()


def seed_everything(seed: int) -> None:
    """Seed torch and numpy's global generators (data use their own seeded generators)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


class Trainer:
    """Train ``model`` on ``task`` with ``method``'s hooks; write to ``run_dir`` if given."""

    def __init__(
        self, model: nn.Module, method: Method, task: TrainableTask, settings: TrainSettings | None = None,
        run_dir: Path | None = None, seed: int = 0,
    ) -> None:
        settings = settings or TrainSettings()
        self.model, self.method, self.task, self.s = model, method, task, settings
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.seed = seed
        self.phase = 1  # 1: sparsification, 2: fine-tuning with the pattern frozen
        self.optimizer = self._optimizer(settings.lr)
        self.scheduler: Any = None
        if settings.lr_schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=settings.epochs)
        elif settings.lr_schedule == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=0.25, patience=0)
        self.generator = torch.Generator().manual_seed(seed)
        self.history: list[dict[str, float]] = []
        self.best_epoch: int | None = None
        self.best_value, self.start_epoch = math.inf, 0
        self.sparsified: dict[str, float] | None = None
        self._best_state: dict[str, Tensor] | None = None
        self.rng_state: Tensor | None = None  # set by a lockstep job: this run's own torch random state
        self.status, self.message = "completed", "completed"

    def _optimizer(self, lr: float) -> torch.optim.Optimizer:
        """One parameter group per role a method declares (gates: ``gate_lr``), the rest at ``lr``."""
        rates = {"gates": self.s.gate_lr or lr, "prox": self.s.prox_lr or lr}
        groups, taken = [], set()
        for role, params in self.method.parameter_groups(self.model).items():
            params = [p for p in params if id(p) not in taken]
            taken |= {id(p) for p in params}
            if params:
                groups.append({"params": params, "lr": rates.get(role, lr), "role": role,
                               "heavy_ball": role == "prox" and self.s.optimizer == "adam"})
        rest = [p for p in self.model.parameters() if id(p) not in taken]
        groups.insert(0, {"params": rest, "lr": lr, "role": "weights"})
        if self.s.optimizer == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(groups)
        else:
            mixed = any(g.get("heavy_ball") for g in groups)
            # foreach: one kernel per step for all of a group's tensors (on CPU Adam defaults to a loop over them)
            optimizer = AdamWithHeavyBall(groups, foreach=True) if mixed else torch.optim.Adam(groups, foreach=True)
        # For step sizes: the group's *index*. ``Optimizer.load_state_dict`` replaces the group dicts, so a
        # reference to a dict would keep the pre-resume learning rate after a scheduler moved it.
        self._group_of = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
        return optimizer

    def _step_size(self, p: Tensor) -> Tensor:
        """The optimizer's effective step for each element of ``p``: Adam's ``lr / (sqrt(v_hat) + eps)``
        (bias-corrected), plain SGD's ``lr``. Proximal methods scale their thresholds by it."""
        group = self.optimizer.param_groups[self._group_of[id(p)]]
        state = self.optimizer.state.get(p, {})
        if isinstance(self.optimizer, torch.optim.Adam) and not group.get("heavy_ball") and "exp_avg_sq" in state:
            v_hat = state["exp_avg_sq"] / (1.0 - group["betas"][1] ** float(state["step"]))
            return group["lr"] / (v_hat.sqrt() + group["eps"])
        return torch.full_like(p, group["lr"])

    def _enter_finetuning(self) -> None:
        """Freeze the pattern and give the phase its own optimizer and cosine schedule."""
        self.method.finalize(self.model)
        self.phase = 2
        self.optimizer = self._optimizer(self.s.finetune_lr or self.s.lr)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(self.s.n_finetune, 1))

    def _start_finetuning(self, epoch: int) -> None:
        """After the sparsification epochs: score the sparsified model, then fine-tune from it; the best
        checkpoint restarts here, so the reported model has the final sparsity pattern."""
        self.sparsified = self.task.evaluate(self.model)
        self._save_sparsified(epoch)
        self._enter_finetuning()
        self.best_value, self.best_epoch, self._best_state = math.inf, None, None  # phase 1's has another structure
        self._set_reference(self.sparsified, epoch)

    def _save_sparsified(self, epoch: int) -> None:
        """The weights at the end of the sparsification epochs: a path's warm start for its next strength."""
        if self.run_dir is not None:
            io.save_torch(self.run_dir / "sparsified.pt", {"model": self.model.state_dict(), "epoch": epoch})

    # -- checkpoints ---------------------------------------------------------------------
    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "torch_rng": torch.get_rng_state(), "generator": self.generator.get_state(),
            "history": self.history, "best_value": self.best_value, "best_epoch": self.best_epoch,
            "phase": self.phase, "sparsified": self.sparsified,
        }

    def _path(self, name: str) -> Path | None:
        return self.run_dir / name if self.run_dir is not None else None

    def _load(self, path: Path) -> None:
        ckpt = torch.load(path, weights_only=False)  # read it whole first: a bad file changes nothing
        if not isinstance(ckpt, dict) or "model" not in ckpt:
            raise ValueError("not a sparsedyn checkpoint")
        if ckpt.get("phase", 1) == 2 and self.phase == 1:  # the model must have the fine-tuning structure
            self._enter_finetuning()
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler and ckpt["scheduler"]:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["torch_rng"])
        self.generator.set_state(ckpt["generator"])
        self.history = ckpt["history"]
        self.best_value, self.best_epoch = ckpt["best_value"], ckpt["best_epoch"]
        self.sparsified = ckpt.get("sparsified")
        self.start_epoch = ckpt["epoch"]

    def _resume(self) -> bool:
        """Load ``last.pt``, else ``best.pt``; an unreadable file is named and skipped. True if one loaded."""
        for name in ("last.pt", "best.pt"):
            path = self._path(name)
            if path is None or not path.exists():
                continue
            try:
                self._load(path)
                return True
            except Exception as e:  # truncated, empty or foreign file: say so and try the next one
                tqdm.write(f"sparsedyn: cannot resume from {path} ({type(e).__name__}: {e}); "
                           + ("trying best.pt" if name == "last.pt" else "starting from scratch"))
        return False

    def _restore_best(self) -> bool:
        best = self._path("best.pt")
        if best is not None and best.exists():
            self.model.load_state_dict(torch.load(best, weights_only=False)["model"])
            return True
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
            return True
        return False

    # -- loop ----------------------------------------------------------------------------
    @contextmanager
    def own_rng(self) -> Iterator[None]:
        """Run the body on this trainer's own global random state, if it has one (``rng_state``).

        A lockstep job (:mod:`sparsedyn.train_stacked`) trains several trainers in one process; each
        keeps the torch random state a run of its own would have, so its gate samples and checkpoints
        are the ones that run would draw and save."""
        if self.rng_state is None:
            yield
            return
        outer = torch.get_rng_state()
        torch.set_rng_state(self.rng_state)
        try:
            yield
        finally:
            self.rng_state = torch.get_rng_state()
            torch.set_rng_state(outer)

    def objective(self, loss: Tensor, epoch: int, check: bool = True) -> tuple[Tensor, Tensor]:
        """``loss + penalty`` (the penalty only while sparsifying) and the penalty; with ``check`` a non-finite
        objective is a :class:`DivergenceError` (:func:`non_finite`; a lockstep job checks all its members'
        objectives at once)."""
        if self.phase != 1 or self.method.vanilla:  # no penalty: the objective is the loss itself (loss + 0 has
            penalty, objective = loss.new_zeros(()), loss  # its bits and gradient, and cost an op and a node)
        else:
            penalty = self.method.penalty(self.model)
            objective = loss + penalty
        if check and not torch.isfinite(objective):
            raise non_finite(objective.item(), epoch)
        return objective, penalty

    def update(self) -> None:
        """After the backward pass: clip, step the optimizer, run the method's proximal/projection hook."""
        self.clip_gradients()
        self.optimizer.step()
        self.after_optimizer_step()

    def clip_gradients(self) -> None:
        """The first part of :meth:`update` (a lockstep job steps its members' optimizers jointly between)."""
        if self.s.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.s.grad_clip)

    def after_optimizer_step(self) -> None:
        """The last part of :meth:`update`: the method's proximal/projection hook (while sparsifying)."""
        if self.phase == 1:
            self.method.after_step(self.model, self.optimizer.param_groups[0]["lr"], self._step_size)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        total, pen_total, n = 0.0, 0.0, 0
        for batch in self.task.train_batches(self.s.batch_size, self.generator):
            loss = self.task.loss(self.model, batch)
            objective, penalty = self.objective(loss, epoch)
            self.optimizer.zero_grad(set_to_none=True)
            objective.backward()
            self.update()
            total, pen_total, n = total + loss.item(), pen_total + penalty.item(), n + 1
        return {"train_loss": total / max(n, 1), "penalty": pen_total / max(n, 1)}

    def _set_reference(self, scores: dict[str, float], epoch: int) -> None:
        """A phase's first best checkpoint (and divergence reference): the model as it enters the phase,
        if its monitored score is finite."""
        value = scores.get(self.task.monitor)
        if value is not None and math.isfinite(value):
            self.best_value, self.best_epoch = value, epoch
            self._checkpoint(epoch, improved=True, last=False)

    def fit(self, resume: bool = False) -> TrainResult:
        """Train ``settings.epochs`` sparsification epochs, then ``n_finetune`` fine-tuning epochs
        (continuing from ``last.pt`` if ``resume``); return the reported model's status."""
        self.begin(resume)
        bar = tqdm(range(self.start_epoch + 1, self.total + 1), desc="train", disable=not self.s.progress,
                   leave=False, initial=self.start_epoch, total=self.total)
        for epoch in bar:
            t0 = time.perf_counter()
            self.enter_epoch(epoch)
            try:
                stats: dict[str, float] | DivergenceError = self._train_epoch(epoch)
            except DivergenceError as e:
                stats = e
            if not self.end_epoch(epoch, stats, time.perf_counter() - t0):
                break
            bar.set_postfix({k: f"{v:.3g}" for k, v in self.history[-1].items()
                             if k in ("train_loss", self.task.monitor)})
        bar.close()
        return self.finish()

    @property
    def total(self) -> int:
        return self.s.epochs + self.s.n_finetune

    def begin(self, resume: bool) -> None:
        """Resume from ``last.pt`` (if asked and possible), else evaluate the untrained model (epoch 0)."""
        self.status, self.message = "completed", "completed"
        if not (resume and self._resume()):
            self._set_reference(self.task.evaluate(self.model), 0)  # epoch 0: the untrained model

    def enter_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch``: after the sparsification epochs, fine-tuning begins."""
        if epoch == self.s.epochs + 1 and self.phase == 1:
            self._start_finetuning(epoch - 1)
        self.model.train()

    def end_epoch(self, epoch: int, stats: dict[str, float] | DivergenceError, seconds: float) -> bool:
        """Close epoch ``epoch`` given its training statistics (or the divergence that stopped it): hooks,
        evaluation, schedules, history, checkpoints. False when training stops here."""
        try:
            if isinstance(stats, DivergenceError):
                raise stats
            row = {"epoch": epoch, "phase": self.phase, **stats}
            if self.phase == 1:
                self.method.on_epoch_end(self.model, epoch)
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            if epoch % self.s.eval_every == 0 or epoch in (self.s.epochs, self.total):
                row.update(self.task.evaluate(self.model))
                self._check_monitor(row, epoch)
                if self.s.lr_schedule == "plateau" and self.phase == 1:
                    self.scheduler.step(row[self.task.monitor])
            if self.s.lr_schedule == "cosine" or self.phase == 2:
                self.scheduler.step()
        except DivergenceError as e:
            self.status = "diverged"
            restored = self._restore_best()
            self.message = f"{e}; stopped and " + (f"restored the best checkpoint (epoch {self.best_epoch})"
                                                    if restored else "kept the final weights (no finite evaluation)")
            tqdm.write(f"sparsedyn: {self.message}")
            return False
        row["seconds"] = seconds
        self.history.append(row)
        self._checkpoint(epoch, improved=self.best_epoch == epoch)
        if stop_requested() and epoch < self.total:
            self.status, self.message = "interrupted", f"stopped on request after epoch {epoch} (checkpointed; resume)"
            return False
        return True

    def finish(self) -> TrainResult:
        """The run's result; a completed run reports its best fine-tuning checkpoint (or its final weights)."""
        if self.status == "completed" and self.phase == 1:  # no fine-tuning phase: the final weights are sparsified
            self._save_sparsified(self.total)
        if self.status == "completed" and self.phase == 2:  # report the best fine-tuned model (its pattern is final)
            self._restore_best()
            self.message = f"completed; the best fine-tuning checkpoint (epoch {self.best_epoch}) is the reported model"
        return TrainResult(self.status, self.message, len(self.history), self.best_epoch, self.best_value,
                           self.history, self.sparsified, self.phase)

    def _check_monitor(self, row: dict[str, float], epoch: int) -> None:
        value = row.get(self.task.monitor)
        if value is None:
            raise KeyError(f"task.evaluate did not return the monitored metric {self.task.monitor!r}")
        if not math.isfinite(value):
            raise DivergenceError(f"{self.task.monitor} is {value} at epoch {epoch}")
        if self.best_value < math.inf and value > self.s.divergence_factor * max(self.best_value, 1e-12):
            raise DivergenceError(
                f"{self.task.monitor} = {value:.3g} exceeds {self.s.divergence_factor:g} x best "
                f"({self.best_value:.3g}, epoch {self.best_epoch}) at epoch {epoch}"
            )
        if value < self.best_value:
            self.best_value, self.best_epoch = value, epoch

    def _checkpoint(self, epoch: int, improved: bool, last: bool = True) -> None:
        if self.run_dir is None:  # no run directory: keep the best weights in memory instead
            if improved:
                self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return
        state = self._state(epoch)
        if improved:
            io.save_torch(self.run_dir / "best.pt", state)
        if last:
            io.save_torch(self.run_dir / "last.pt", state)
            io.write_csv(self.run_dir / "metrics.csv", self.history)
