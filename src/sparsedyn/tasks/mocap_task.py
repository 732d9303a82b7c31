"""The mocap forecasting benchmark (published protocol) and its out-of-distribution variants.

Protocol (ODE2VAE / latent SDE papers): time step ``dt = 0.1`` per frame; a model sees the
first 3 frames of a test sequence and forecasts the rest; the error is the MSE in the raw
50-d space over the forecast frames, averaged over the test sequences
(:func:`~sparsedyn.tasks.mocap.forecast_mse`).

sparsedyn's models work on standardised dims (per-dim mean and sd of the training frames, the
sd floored at ``SD_FLOOR``) and
are trained on random windows of ``window`` frames started at an observed frame (multiple
shooting); forecasts are mapped back to raw units before scoring. A NODE starts from frame 0;
a SONODE also gets its initial velocity from the first three observed frames
(:func:`initial_velocity`), as the protocol gives them.

Sources: ``mocap35`` (16/3/4 split of ``mocap35.mat``, 300 frames) and ``walkjog``
(``cmu35WalkJog.mat`` at 30 Hz in the same 50 dims: 16 walks train, 3 val, 4 ``test`` walks,
and all 10 jogs as ``test_jog``, scored over the first ``horizon`` frames, default the shortest
jog). OOD variants: observation ``noise`` (sd as a fraction of each dim's sd, on train and
val) and ``irregular`` sampling (that random fraction of training frames hidden).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from ..nn.modes import eval_mode
from ..nn.ode import SecondOrderODE
from ..nn.stacked import stacked_forecast
from .base import PathField, TaskConfig, register_task
from .forecast import ForecastTask
from .mocap import (
    ACKNOWLEDGEMENT,
    Motion,
    asf_channels,
    benchmark_dims,
    data_dir,
    forecast_mse,
    load_mocap35,
    load_walkjog,
    parse_asf,
)
from .trajectories import Trajectories

SOURCES = ("mocap35", "walkjog")
GIVEN = 3
SD_FLOOR = 1.0  # raw units (degrees): the smallest per-dim scale of the standardisation


def initial_velocity(data: Trajectories) -> Tensor:
    """``dx/dt`` at each sequence's first point from its first three observed points.

    The derivative at ``t_0`` of the quadratic through ``(t_k, x_k)``, k = 0, 1, 2 (for a
    uniform step: ``(-3 x_0 + 4 x_1 - x_2) / (2 dt)``); exact on quadratics. A sequence with
    only two observed points gets the forward difference, one with a single point zero.
    """
    out = torch.zeros_like(data.y[:, 0])
    for b in range(len(data)):
        idx = torch.nonzero(data.mask[b]).flatten()[:3]
        t, x = data.t[idx], data.y[b, idx]
        if len(idx) == 3:
            t0, t1, t2 = t
            out[b] = (x[0] * (2 * t0 - t1 - t2) / ((t0 - t1) * (t0 - t2))
                      + x[1] * (t0 - t2) / ((t1 - t0) * (t1 - t2))
                      + x[2] * (t0 - t1) / ((t2 - t0) * (t2 - t1)))
        elif len(idx) == 2:
            out[b] = (x[1] - x[0]) / (t[1] - t[0])
    return out


def _walkjog_sequences(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Walks and jogs of ``cmu35WalkJog.mat`` in the 50 benchmark dims (jogs: the fast root)."""
    channels = asf_channels(parse_asf(path / "35.asf"))
    raw = load_walkjog(path)
    seqs = [s for split in ("train", "test") for s in raw[split]]
    if any(s.shape[1] != len(channels) for s in seqs):
        raise ValueError(f"{path}: cmu35WalkJog.mat has {seqs[0].shape[1]} channels, 35.asf {len(channels)}")
    dims = [benchmark_dims(Motion(s, channels), frames=len(s) - 1) for s in seqs]
    speed = [np.abs(d[:, :3]).sum(1).mean() for d in dims]  # jogs cover ~2.7x the ground per frame
    cut = (min(speed) + max(speed)) / 2
    return [d for d, v in zip(dims, speed) if v < cut], [d for d, v in zip(dims, speed) if v >= cut]


class MocapTaskConfig(TaskConfig):
    """CMU subject 35 forecasting (sparsedyn.tasks.mocap_task); data_dir default: $SPARSEDYN_MOCAP_DIR."""

    name: Literal["mocap"]
    data_dir: str | None = PathField(None)
    source: Literal["mocap35", "walkjog"] = "mocap35"
    window: int = Field(20, ge=GIVEN)  # training window (frames), started at an observed frame
    windows_per_epoch: int = Field(256, gt=0)
    noise: float = Field(0.0, ge=0)  # observation noise sd, as a fraction of each dim's sd (train, val)
    irregular: float = Field(0.0, ge=0, lt=1)  # fraction of training frames hidden
    horizon: int | None = Field(None, gt=3)  # scored frames; default: the shortest evaluation sequence
    dt: float = Field(0.1, gt=0)
    data_seed: int = Field(0, ge=0)
    # A SONODE's initial velocity: "frames" (the derivative of the quadratic through the first three
    # frames, as the protocol gives them) or "network" (an MLP of the initial state trained end to end,
    # model.velocity_hidden; the finite difference amplifies frame noise)
    velocity: Literal["frames", "network"] = "frames"


@register_task
class MocapTask(ForecastTask[MocapTaskConfig]):
    """Forecast CMU subject 35's motion from its first frames (see the module docstring)."""

    name = "mocap"
    Config = MocapTaskConfig
    model_kinds = ("node", "sonode")

    acknowledgement = ACKNOWLEDGEMENT
    velocity_from_data = True

    @property
    def supports_sonode(self) -> bool:
        return True

    def setup(self) -> None:
        c = self.config
        source, window, windows_per_epoch, noise, irregular = c.source, c.window, c.windows_per_epoch, c.noise, \
            c.irregular
        horizon, dt, data_seed = c.horizon, c.dt, c.data_seed
        self.velocity_from_data = c.velocity == "frames"
        path = data_dir(c.data_dir)
        if source == "mocap35":
            raw = load_mocap35(path)
            seqs = {k: list(v) for k, v in raw.items()}
        else:
            walks, jogs = _walkjog_sequences(path)
            seqs = {"train": walks[:16], "val": walks[16:19], "test": walks[19:23], "test_jog": jogs}
            horizon = horizon or min(len(s) for s in jogs)
        self.eval_splits = tuple(k for k in seqs if k != "train")
        horizon = horizon or min(len(s) for k in self.eval_splits for s in seqs[k])
        train = np.concatenate(seqs["train"])
        # dims with a training sd below SD_FLOOR (root displacements, near-constant channels) are not
        # blown up: a test value a hair off their training mean would otherwise be a huge input
        self.mean, self.sd = train.mean(0), np.maximum(train.std(0), SD_FLOOR)
        self.window, self.windows_per_epoch, self.dt = window, windows_per_epoch, dt
        rng = np.random.default_rng(data_seed)

        def trajectories(arrays, frames, noisy=False, drop=0.0):
            y = np.stack([(a[:frames] - self.mean) / self.sd for a in arrays])
            if noisy and noise > 0:
                y = y + noise * rng.normal(size=y.shape)
            mask = rng.random(y.shape[:2]) >= drop
            mask[:, 0] = True
            t = torch.arange(frames, dtype=torch.float32) * dt
            return Trajectories(t, torch.tensor(y, dtype=torch.float32), torch.tensor(mask))

        # training sequences keep their own lengths (walk trials differ): one Trajectories each,
        # sampled by train_batches; ``splits`` holds the evaluation splits
        self.train_seqs = [trajectories([a], len(a), True, irregular) for a in seqs["train"]]
        self.splits = {k: trajectories(seqs[k], horizon, noisy=(k == "val")) for k in self.eval_splits}
        self.horizon = horizon

    @property
    def n_observed(self) -> int:
        return 50

    def train_batches(self, batch_size: int, generator: torch.Generator):
        """``windows_per_epoch`` random windows, each started at an observed frame."""
        for start in range(0, self.windows_per_epoch, batch_size):
            n = min(batch_size, self.windows_per_epoch - start)
            picks = torch.randint(len(self.train_seqs), (n,), generator=generator).tolist()
            ys, masks = [], []
            for i in picks:
                seq = self.train_seqs[i]
                starts = torch.nonzero(seq.mask[0, :seq.y.shape[1] - self.window + 1]).flatten()
                s = int(starts[torch.randint(len(starts), (1,), generator=generator)])
                ys.append(seq.y[0, s:s + self.window])
                masks.append(seq.mask[0, s:s + self.window])
            t = torch.arange(self.window, dtype=torch.float32) * self.dt
            yield Trajectories(t, torch.stack(ys), torch.stack(masks))

    def field_inputs(self, split: str = "train") -> Tensor:
        """Observed standardised frames ``(points, 50)``; ``"train"`` pools every training sequence."""
        if split != "train":
            return super().field_inputs(split)
        return torch.cat([s.y[s.mask] for s in self.train_seqs])

    def predict(self, model: nn.Module, data: Trajectories) -> Tensor:
        if isinstance(model, SecondOrderODE) and model.init_velocity is None:
            return model(data.x0, data.t, v0=initial_velocity(data))
        return model(data.x0, data.t)  # a NODE, or a SONODE with its own velocity network

    def predict_stacked(self, models: Sequence[nn.Module], batches: Sequence[Trajectories]) -> Tensor:
        v0 = None
        if isinstance(models[0], SecondOrderODE) and models[0].init_velocity is None:
            v0 = torch.stack([initial_velocity(b) for b in batches])
        return stacked_forecast(models, torch.stack([b.x0 for b in batches]), batches[0].t, v0=v0)

    def raw(self, split: str) -> np.ndarray:
        """The split's observed sequences ``(sequences, horizon, 50)`` in raw units."""
        return self.splits[split].y.numpy() * self.sd + self.mean

    def forecast(self, model: nn.Module, split: str) -> np.ndarray:
        """Raw-unit forecasts ``(sequences, horizon, 50)`` from each sequence's first frames."""
        data = self.splits[split]
        given = Trajectories(data.t, data.y, torch.arange(data.y.shape[1])[None, :].expand(len(data), -1) < GIVEN)
        with eval_mode(model), torch.no_grad():
            pred = self.predict(model, given).numpy()
        return pred * self.sd + self.mean

    def figure_data(self, model: nn.Module) -> dict[str, np.ndarray]:
        """Time, truth and forecast (raw units) of the first test sequence, for the report's figure."""
        return {"t": self.splits["test"].t.numpy(), "truth": self.raw("test")[0],
                "forecast": self.forecast(model, "test")[0]}

    def evaluate(self, model: nn.Module, splits: tuple[str, ...] | None = None) -> dict[str, float]:
        """The protocol's raw-space forecast MSE per split (frames after the first 3)."""
        out = {}
        for s in splits or self.eval_splits:
            truth, pred = self.raw(s), self.forecast(model, s)
            out[f"{s}_mse"] = forecast_mse(pred, truth, GIVEN) if np.isfinite(pred).all() else float("inf")
        return out

    def trivial_baselines(self) -> dict[str, dict[str, float]]:
        """The protocol's MSE per evaluation split of predicting zeros (the per-sequence mean: the data
        are mean-centred) and of holding the first frame (persistence)."""
        out: dict[str, dict[str, float]] = {"zero": {}, "persistence": {}}
        for s in self.eval_splits:
            truth = self.raw(s)
            out["zero"][f"{s}_mse"] = forecast_mse(np.zeros_like(truth), truth, GIVEN)
            out["persistence"][f"{s}_mse"] = forecast_mse(np.repeat(truth[:, :1], truth.shape[1], axis=1), truth,
                                                          GIVEN)
        return out

