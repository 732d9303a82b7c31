"""The trainer: it knows sparsity methods only through their four hooks.

Each epoch: mini-batches -> ``task.loss + method.penalty`` -> Adam step ->
``method.after_step``; then ``method.on_epoch_end``, evaluation, a CSV row, and atomic
checkpoints (``last.pt`` every epoch, ``best.pt`` when the monitored metric improves).
A non-finite loss or a monitored metric that blows up stops training with a message and
restores the best checkpoint (a completed run keeps its final weights: with a pruning
schedule, the final model is the one at the target sparsity). ``resume=True`` continues from ``last.pt`` with the saved
RNG states, so an interrupted run ends with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import io
from .methods.base import Method


class Task(Protocol):
    """What the trainer needs from a task."""

    monitor: str

    def train_batches(self, batch_size: int, generator: torch.Generator): ...
    def loss(self, model: nn.Module, batch: Any) -> Tensor: ...
    def evaluate(self, model: nn.Module) -> dict[str, float]: ...


@dataclass
class TrainSettings:
    epochs: int = 100
    lr: float = 1e-2
    gate_lr: float | None = None  # learning rate of gate parameters (log_alpha); None = lr
    batch_size: int = 16
    lr_schedule: str = "none"  # "none" | "cosine" | "plateau" (lr / 4 when the monitor does not improve)
    optimizer: str = "adam"  # "adam" | "sgd"
    grad_clip: float | None = None
    eval_every: int = 1
    divergence_factor: float = 1e4  # stop if the monitored metric exceeds factor x best
    progress: bool = True


@dataclass
class TrainResult:
    status: str  # "completed" | "diverged"
    message: str
    epochs_run: int
    best_epoch: int
    best_value: float
    history: list[dict[str, float]] = field(default_factory=list)


class DivergenceError(RuntimeError):
    """Raised inside the loop when training diverges; handled by :meth:`Trainer.fit`."""


def seed_everything(seed: int) -> None:
    """Seed torch and numpy's global generators (data use their own seeded generators)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


class Trainer:
    """Train ``model`` on ``task`` with ``method``'s hooks; write to ``run_dir`` if given."""

    def __init__(
        self, model: nn.Module, method: Method, task: Task, settings: TrainSettings,
        run_dir: Path | None = None, seed: int = 0,
    ) -> None:
        self.model, self.method, self.task, self.s = model, method, task, settings
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.seed = seed
        gate_params = [p for n, p in model.named_parameters() if n.endswith("log_alpha")]
        ids = {id(p) for p in gate_params}
        groups = [{"params": [p for p in model.parameters() if id(p) not in ids], "lr": settings.lr}]
        if gate_params:
            groups.append({"params": gate_params, "lr": settings.gate_lr or settings.lr})
        self.optimizer = torch.optim.SGD(groups) if settings.optimizer == "sgd" else torch.optim.Adam(groups)
        self.scheduler: Any = None
        if settings.lr_schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=settings.epochs)
        elif settings.lr_schedule == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=0.25, patience=0)
        self.generator = torch.Generator().manual_seed(seed)
        self.history: list[dict[str, float]] = []
        self.best_value, self.best_epoch, self.start_epoch = math.inf, 0, 0
        self._best_state: dict[str, Tensor] | None = None

    # -- checkpoints ---------------------------------------------------------------------
    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "torch_rng": torch.get_rng_state(), "generator": self.generator.get_state(),
            "history": self.history, "best_value": self.best_value, "best_epoch": self.best_epoch,
        }

    def _path(self, name: str) -> Path | None:
        return self.run_dir / name if self.run_dir is not None else None

    def _load(self, path: Path) -> None:
        ckpt = torch.load(path, weights_only=False)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler and ckpt["scheduler"]:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["torch_rng"])
        self.generator.set_state(ckpt["generator"])
        self.history = ckpt["history"]
        self.best_value, self.best_epoch = ckpt["best_value"], ckpt["best_epoch"]
        self.start_epoch = ckpt["epoch"]

    def _restore_best(self) -> None:
        best = self._path("best.pt")
        if best is not None and best.exists():
            self.model.load_state_dict(torch.load(best, weights_only=False)["model"])
        elif self._best_state is not None:
            self.model.load_state_dict(self._best_state)

    # -- loop ----------------------------------------------------------------------------
    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        total, pen_total, n = 0.0, 0.0, 0
        for batch in self.task.train_batches(self.s.batch_size, self.generator):
            loss = self.task.loss(self.model, batch)
            penalty = self.method.penalty(self.model)
            objective = loss + penalty
            if not torch.isfinite(objective):
                raise DivergenceError(f"non-finite training loss ({objective.item()}) at epoch {epoch}")
            self.optimizer.zero_grad(set_to_none=True)
            objective.backward()
            if self.s.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.s.grad_clip)
            self.optimizer.step()
            self.method.after_step(self.model, self.optimizer.param_groups[0]["lr"])
            total, pen_total, n = total + loss.item(), pen_total + penalty.item(), n + 1
        return {"train_loss": total / max(n, 1), "penalty": pen_total / max(n, 1)}

    def fit(self, resume: bool = False) -> TrainResult:
        """Train for ``settings.epochs`` epochs (continuing from ``last.pt`` if ``resume``)."""
        last = self._path("last.pt")
        if resume and last is not None and last.exists():
            self._load(last)
        status, message = "completed", "completed"
        epochs = range(self.start_epoch + 1, self.s.epochs + 1)
        bar = tqdm(epochs, desc="train", disable=not self.s.progress, leave=False,
                   initial=self.start_epoch, total=self.s.epochs)
        for epoch in bar:
            t0 = time.perf_counter()
            try:
                row = {"epoch": epoch, **self._train_epoch(epoch)}
                self.method.on_epoch_end(self.model, epoch)
                row["lr"] = self.optimizer.param_groups[0]["lr"]
                if epoch % self.s.eval_every == 0 or epoch == self.s.epochs:
                    row.update(self.task.evaluate(self.model))
                    self._check_monitor(row, epoch)
                    if self.s.lr_schedule == "plateau":
                        self.scheduler.step(row[self.task.monitor])
                if self.s.lr_schedule == "cosine":
                    self.scheduler.step()
            except DivergenceError as e:
                status = "diverged"
                message = f"{e}; stopped and restored the best checkpoint (epoch {self.best_epoch})"
                tqdm.write(f"sparsedyn: {message}")
                break
            row["seconds"] = time.perf_counter() - t0
            self.history.append(row)
            bar.set_postfix({k: f"{row[k]:.3g}" for k in ("train_loss", self.task.monitor) if k in row})
            self._checkpoint(epoch, improved=self.best_epoch == epoch)
        bar.close()
        if status == "diverged":
            self._restore_best()
        return TrainResult(status, message, len(self.history), self.best_epoch, self.best_value,
                           self.history)

    def _check_monitor(self, row: dict[str, float], epoch: int) -> None:
        value = row.get(self.task.monitor)
        if value is None:
            raise KeyError(f"task.evaluate did not return the monitored metric {self.task.monitor!r}")
        if not math.isfinite(value):
            raise DivergenceError(f"{self.task.monitor} is {value} at epoch {epoch}")
        if self.best_value < math.inf and value > self.s.divergence_factor * max(self.best_value, 1e-12):
            raise DivergenceError(
                f"{self.task.monitor} = {value:.3g} exceeds {self.s.divergence_factor:g} x best "
                f"({self.best_value:.3g}) at epoch {epoch}"
            )
        if value < self.best_value:
            self.best_value, self.best_epoch = value, epoch

    def _checkpoint(self, epoch: int, improved: bool) -> None:
        if self.run_dir is None:  # no run directory: keep the best weights in memory instead
            if improved:
                self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return
        state = self._state(epoch)
        if improved:
            io.save_torch(self.run_dir / "best.pt", state)
        io.save_torch(self.run_dir / "last.pt", state)
        io.write_csv(self.run_dir / "metrics.csv", self.history)
