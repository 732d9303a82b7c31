"""Per-member training throughput: M runs trained as one lockstep job vs one at a time (issue 11).

Uses the library's own machinery, not a model of it: M trainers built exactly as ``sparsedyn run``
builds them (``runner.build_experiment`` + ``Trainer``), then

* **alone**: one trainer's epoch (``Trainer._train_epoch``): what each of M separate runs costs;
* **stacked**: one lockstep epoch of all M (``train_stacked._joint_epoch``: one stacked forecast, one
  backward, per-member penalties, optimizer and proximal steps).

Per-member step time = epoch time / steps (alone) and epoch time / steps / M (stacked); the ratio is
the per-member throughput gain. Rounds alternate alone and stacked; the fastest round is kept. Before
timing, the stacked losses of one batch are checked against each member's own forward.

Configurations: the systems sweep's model (MLP 16-16 tanh NODE on Lotka-Volterra, rk4 on the 20-point
grid, batch 8) vanilla and with PathReg, M = 1, 9, 27, 81; the same model on a 200-species
Lotka-Volterra system (``--n200``: gene scale, where the per-member work is larger) at M = 1, 8, 32; the
mocap sweep's NODE (MLP 64 on 50-d, rk4 step 0.1, batch 32; needs ../shared/data/mocap) at M = 1, 9;
and the nav_cpu recurrent layer (Elman ReLU, 256 units, sequences of 20, batch 100): its layer's
forward+backward timed stacked (``nn.stacked.stacked_recurrent``, what the navigation task's stacked
forward uses) vs one at a time.

    python bench/stacked_training.py [--rounds 3] [--quick] [--n200]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from sparsedyn.config import parse_config
from sparsedyn.flat_adam import FlatAdam
from sparsedyn.nn import RecurrentLayer
from sparsedyn.nn.stacked import stacked_recurrent
from sparsedyn.runner import build_experiment
from sparsedyn.train import Trainer
from sparsedyn.train_stacked import _joint_epoch, stacked_losses

MOCAP_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mocap"

SYSTEMS = {"task": {"name": "systems", "system": "lotka_volterra",
                    "system_params": {"n": 5, "density": 0.3, "seed": 0}, "n_train": 32, "n_val": 8, "n_test": 16,
                    "n_points": 20, "t_end": 5.0, "noise": 0.01},
           "model": {"kind": "node", "hidden": [16, 16], "activation": "tanh", "solver": "rk4", "step_size": None},
           "trainer": {"lr": 0.01, "gate_lr": 0.1, "batch_size": 8, "progress": False}}
SYSTEMS_N200 = {**SYSTEMS, "task": {**SYSTEMS["task"], "system_params": {"n": 200, "density": 0.02, "seed": 0}}}
PATHREG = [{"name": "pathreg", "lambda_paths": 1e-4, "init_drop": 0.1}]
MOCAP = {"task": {"name": "mocap", "data_dir": str(MOCAP_DATA)},
         "model": {"kind": "node", "hidden": [64], "activation": "tanh", "solver": "rk4", "step_size": 0.1},
         "trainer": {"lr": 0.003, "batch_size": 32, "grad_clip": 1.0, "progress": False}}


def trainers(base: dict, methods: list, m: int) -> list[Trainer]:
    out = []
    for seed in range(m):
        cfg = parse_config({**base, "seed": seed, "methods": methods})
        exp = build_experiment(cfg)
        t = Trainer(exp.model, exp.method, exp.task, cfg.trainer, None, seed=seed)
        t.rng_state = torch.get_rng_state()
        out.append(t)
    return out


def check(ts: list[Trainer]) -> float:
    """Largest relative difference between stacked and separate losses on one batch (eval mode)."""
    batches = [next(iter(t.task.train_batches(t.s.batch_size, torch.Generator().manual_seed(0)))) for t in ts]
    for t in ts:
        t.model.eval()
    with torch.no_grad():
        stacked, used = stacked_losses(ts, batches)
        alone = [t.task.loss(t.model, b) for t, b in zip(ts, batches)]
    for t in ts:
        t.model.train()
    assert used, "the stacked forward was not used"
    return max(abs(float(a - b)) / abs(float(b)) for a, b in zip(stacked, alone))


def steps(t: Trainer) -> int:
    return sum(1 for _ in t.task.train_batches(t.s.batch_size, torch.Generator().manual_seed(0)))


def time_trainer(base: dict, methods: list, m: int, rounds: int) -> tuple[float, float, float]:
    ts = trainers(base, methods, m)
    err = check(ts)
    n = steps(ts[0])
    solo = trainers(base, methods, 1)[0]  # "alone" on a trainer of its own: the lockstep's buffers stay intact
    flat = FlatAdam()  # the joint Adam step on flat buffers, as train_stacked runs it
    alone, stacked = [], []
    for r in range(rounds + 1):  # round 0 warms up
        t0 = time.perf_counter()
        solo._train_epoch(1)
        t1 = time.perf_counter()
        _joint_epoch(ts, 1, flat)
        t2 = time.perf_counter()
        if r:
            alone.append((t1 - t0) / n)
            stacked.append((t2 - t1) / n / m)
    flat.release()
    return min(alone), min(stacked), err


def time_recurrent(m: int, rounds: int) -> tuple[float, float, float]:
    torch.manual_seed(0)
    layers = [RecurrentLayer(3, 256, "elman", "relu", bias=False) for _ in range(m)]
    x = torch.randn(m, 20, 100, 3)
    out, _ = stacked_recurrent(layers, x)
    with torch.no_grad():
        err = max(float((out[i] - layers[i](x[i])[0]).abs().max() / out[i].abs().max()) for i in range(m))
    alone, stacked = [], []
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        layers[0](x[0])[0].square().mean().backward()
        t1 = time.perf_counter()
        stacked_recurrent(layers, x)[0].square().mean().backward()
        t2 = time.perf_counter()
        if r:
            alone.append(t1 - t0)
            stacked.append((t2 - t1) / m)
    return min(alone), min(stacked), err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="M = 1, 9 only (a smoke check of the bench)")
    ap.add_argument("--n200", action="store_true", help="only the 200-variable rows (M = 1, 8, 32)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, "
          f"{args.rounds} rounds (fastest kept)")
    print(f"{'config':<22}{'M':>4}{'alone ms/step':>15}{'stacked ms/step/member':>24}{'throughput x':>14}"
          f"{'max rel diff':>14}")
    sizes = (1, 9) if args.quick else (1, 9, 27, 81)
    rows = [("systems vanilla", SYSTEMS, [], m) for m in sizes]
    rows += [("systems pathreg", SYSTEMS, PATHREG, m) for m in sizes if m in (1, 27)]
    if args.n200:
        rows = [("systems n=200 vanilla", SYSTEMS_N200, [], m) for m in (1, 8, 32)]
    elif MOCAP_DATA.exists():
        rows += [("mocap node vanilla", MOCAP, [], m) for m in (1, 9)]
    else:
        print(f"# mocap skipped: no data at {MOCAP_DATA}")
    for name, base, methods, m in rows:
        a, s, err = time_trainer(base, methods, m, args.rounds)
        print(f"{name:<22}{m:>4}{a * 1e3:>15.2f}{s * 1e3:>24.3f}{a / s:>14.1f}{err:>14.1e}")
    for m in () if args.n200 else (1, 9):
        a, s, err = time_recurrent(m, args.rounds)
        print(f"{'nav_cpu rnn layer':<22}{m:>4}{a * 1e3:>15.2f}{s * 1e3:>24.3f}{a / s:>14.1f}{err:>14.1e}")


if __name__ == "__main__":
    main()
