"""Navigation by path integration (Sorscher et al. 2019; [MODULI]): trajectories, place cells, error.

An agent random-walks in a square box (dt = 0.02 s, rotation velocity ~ N(0, 11.52 rad/s),
speed ~ Rayleigh(0.13 * 2 pi m/s), turning away from walls within 3 cm and slowing to a
quarter speed there). The RNN sees velocity and must output the place-cell code of its
position; the decoded position is the mean centre of the top-3 place cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from ..analysis import eval_mode
from ..nn.rnn import recurrent_layers
from ..nn.sequence_models import PathIntegrationRNN
from ..nn.stacked import stacked_path_integration
from .base import Task, TaskConfig, register_task


@dataclass
class NavBatch:
    velocity: Tensor  # (T, B, 2)
    start_code: Tensor  # (B, Np)
    positions: Tensor  # (T, B, 2), metres
    codes: Tensor  # (T, B, Np), target distributions


def random_walk(rng: np.random.Generator, batch: int, steps: int, box: float = 2.2, dt: float = 0.02,
                border: float = 0.03, rot_sd: float = 11.52, speed_scale: float = 0.13 * 2 * math.pi):
    """``(start (B, 2), positions (T, B, 2), velocity (T, B, 2))`` in a box ``[-box/2, box/2]^2``."""
    half = box / 2
    pos = rng.uniform(-half, half, (batch, 2))
    hd = rng.uniform(0, 2 * math.pi, batch)
    start = pos.copy()
    positions, velocity = np.empty((steps, batch, 2)), np.empty((steps, batch, 2))
    walls = np.array([0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi])  # outward normals: +x, +y, -x, -y
    for t in range(steps):
        turn = rng.normal(0.0, rot_sd, batch) * dt
        speed = rng.rayleigh(speed_scale, batch)
        dists = np.stack([half - pos[:, 0], half - pos[:, 1], half + pos[:, 0], half + pos[:, 1]], 1)
        nearest = dists.argmin(1)
        # angle between heading and the nearest wall's outward normal, in (-pi, pi]
        angle = (hd - walls[nearest] + math.pi) % (2 * math.pi) - math.pi
        near = (dists[np.arange(batch), nearest] < border) & (np.abs(angle) < math.pi / 2)
        turn = turn + np.where(near, np.sign(angle) * (math.pi / 2 - np.abs(angle)), 0.0)
        speed = np.where(near, 0.25 * speed, speed)
        step = speed * dt
        velocity[t] = np.stack([step * np.cos(hd), step * np.sin(hd)], 1)
        pos = np.clip(pos + velocity[t], -half, half)
        positions[t] = pos
        hd = (hd + turn) % (2 * math.pi)
    return start, positions, velocity


class PlaceCells:
    """``n`` place cells with random centres and softmax-normalised tuning.

    ``dog=True`` (Sorscher et al.): ``softmax(-d^2 / 2 sigma^2) - softmax(-d^2 / 2 s sigma^2)``, shifted
    to be non-negative and renormalised. The shift spreads most of the mass evenly over distant
    cells (target entropy close to log n), so learning needs many steps. ``dog=False``: the plain
    Gaussian softmax, a sharper target that a CPU-scale run can learn.
    """

    def __init__(self, n: int = 512, sigma: float = 0.12, surround_scale: float = 2.0, box: float = 2.2,
                 seed: int = 0, dog: bool = True) -> None:
        if n < 3:
            raise ValueError(f"n_place_cells must be >= 3 (decoding uses the top 3), got {n}")
        if sigma <= 0 or surround_scale <= 1:
            raise ValueError(f"place_cell_sigma must be > 0 and surround_scale > 1, got {sigma}, {surround_scale}")
        rng = np.random.default_rng(seed)
        self.centres = torch.tensor(rng.uniform(-box / 2, box / 2, (n, 2)), dtype=torch.float32)
        self.sigma, self.surround, self.dog = sigma, surround_scale, dog

    def code(self, pos: Tensor) -> Tensor:
        """Place-cell distributions for positions ``(..., 2) -> (..., n)``."""
        d2 = ((pos[..., None, :] - self.centres) ** 2).sum(-1)
        centre = torch.softmax(-d2 / (2 * self.sigma**2), -1)
        if not self.dog:
            return centre
        out = centre - torch.softmax(-d2 / (2 * self.surround * self.sigma**2), -1)
        out = out - out.min(-1, keepdim=True).values
        return out / out.sum(-1, keepdim=True)

    def decode(self, logits: Tensor, k: int = 3) -> Tensor:
        """Mean centre of the ``k`` most active cells: ``(..., n) -> (..., 2)``."""
        return self.centres[logits.topk(k, dim=-1).indices].mean(-2)


class NavigationTaskConfig(TaskConfig):
    name: Literal["navigation"]
    n_place_cells: int = Field(512, ge=3)
    sequence_length: int = Field(20, gt=0)
    steps_per_epoch: int = Field(100, gt=0)
    n_val: int = Field(500, gt=0)
    n_test: int = Field(500, gt=0)
    place_cell_sigma: float = Field(0.12, gt=0)
    surround_scale: float = Field(2.0, gt=1)
    place_cell_dog: bool = True  # difference-of-Gaussians tuning (Sorscher); false: plain Gaussian
    box: float = Field(2.2, gt=0)
    data_seed: int = Field(0, ge=0)


@register_task
class NavigationTask(Task[NavigationTaskConfig]):
    """Path integration. ``monitor = "val_loss"``; metrics include the decoding error in cm."""

    name = "navigation"
    Config = NavigationTaskConfig
    model_kinds = ("rnn",)

    monitor = "val_loss"

    def setup(self) -> None:
        c = self.config
        self.box, self.T, self.steps_per_epoch = c.box, c.sequence_length, c.steps_per_epoch
        self.place_cells = PlaceCells(c.n_place_cells, c.place_cell_sigma, c.surround_scale, c.box, c.data_seed,
                                      c.place_cell_dog)
        self.splits = {"val": self.batch(np.random.default_rng(c.data_seed + 1), c.n_val),
                       "test": self.batch(np.random.default_rng(c.data_seed + 2), c.n_test)}

    def build_model(self, m) -> nn.Module:
        return PathIntegrationRNN(self.n_place_cells, m.hidden, m.cell, m.nonlinearity, m.rnn_bias)

    @property
    def n_place_cells(self) -> int:
        return self.place_cells.centres.shape[0]

    def batch(self, rng: np.random.Generator, size: int) -> NavBatch:
        start, pos, vel = random_walk(rng, size, self.T, self.box)
        pos_t = torch.tensor(pos, dtype=torch.float32)
        return NavBatch(torch.tensor(vel, dtype=torch.float32), self.place_cells.code(torch.tensor(start).float()),
                        pos_t, self.place_cells.code(pos_t))

    def train_batches(self, batch_size: int, generator: torch.Generator):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        for _ in range(self.steps_per_epoch):
            yield self.batch(rng, batch_size)

    def loss(self, model: nn.Module, batch: NavBatch) -> Tensor:
        return _cross_entropy(model(batch.velocity, batch.start_code), batch.codes)

    def can_stack(self, models: Sequence[nn.Module], batches: Sequence[NavBatch]) -> bool:
        """Members stack (:func:`~sparsedyn.nn.stacked.stacked_path_integration`) when they are
        path-integration RNNs of one structure and their batches have one shape."""
        if not all(isinstance(m, PathIntegrationRNN) for m in models):
            return False
        structures = {tuple((la.cell, la.nonlinearity, la.input_size, la.hidden_size, la.bias is None)
                            for la in recurrent_layers(m)) for m in models}
        shapes = {(tuple(b.velocity.shape), tuple(b.start_code.shape)) for b in batches}
        return len(structures) == 1 and len(shapes) == 1

    def stacked_loss(self, models: Sequence[nn.Module], batches: Sequence[NavBatch]) -> list[Tensor]:
        """Each member's :meth:`loss` on its batch from one stacked forward (check :meth:`can_stack`)."""
        logits = stacked_path_integration(models, torch.stack([b.velocity for b in batches]),
                                          torch.stack([b.start_code for b in batches]))
        return [_cross_entropy(lg, b.codes) for lg, b in zip(logits, batches)]

    def error_cm(self, model: nn.Module, batch: NavBatch) -> float:
        return self._error_cm(model(batch.velocity, batch.start_code), batch)

    def _error_cm(self, logits: Tensor, batch: NavBatch) -> float:
        return 100.0 * float((self.place_cells.decode(logits) - batch.positions).norm(dim=-1).mean())

    def trivial_baselines(self) -> dict[str, dict[str, float]]:
        """Decoding errors (cm) of two predictors that integrate no velocity: staying where the start
        code decodes to (``start_position``: persistence) and always the box's centre."""
        out: dict[str, dict[str, float]] = {"start_position": {}, "box_centre": {}}
        for split, b in self.splits.items():
            start = self.place_cells.decode(b.start_code).expand_as(b.positions)
            out["start_position"][f"{split}_error_cm"] = 100.0 * float((start - b.positions).norm(dim=-1).mean())
            out["box_centre"][f"{split}_error_cm"] = 100.0 * float(b.positions.norm(dim=-1).mean())
        return out

    def decoding_floor_cm(self, split: str = "test") -> float:
        """Error (cm) of decoding the *target* codes themselves: the decoder's own error, a floor that a
        model whose output decodes like its target cannot pass (5.9 cm for nav_cpu's 256 Gaussian cells)."""
        b = self.splits[split]
        return self._error_cm(b.codes, b)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        with eval_mode(model), torch.no_grad():
            val, test = self.splits["val"], self.splits["test"]
            val_logits = model(val.velocity, val.start_code)  # one forward serves loss and error
            return {"val_loss": float(_cross_entropy(val_logits, val.codes)),
                    "val_error_cm": self._error_cm(val_logits, val),
                    "test_error_cm": self.error_cm(model, test)}


def _cross_entropy(logits: Tensor, codes: Tensor) -> Tensor:
    """Cross-entropy of the predicted place-cell distribution against the target one."""
    return -(codes * torch.log_softmax(logits, -1)).sum(-1).mean()
