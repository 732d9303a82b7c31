"""Per-training-step time of each sparsity method divided by the vanilla NODE's.

Same system, data, seed, model size and solver for every method; each step is a full
training step (forward solve, task loss + penalty, backward, the trainer's optimizer step, after_step hook with the
trainer's step sizes).
Methods are timed interleaved, in several rounds, and the fastest round per method is used (noise only adds time), so
the ratios compare runs that saw the same machine load. Target: <= 1.3x for every method.

    python bench/node_overhead.py [--steps 30] [--rounds 5]
    python bench/node_overhead.py --n 529 --methods "group_lasso (1 per output)" --matched 256 256

``--matched`` adds a dense (vanilla) row of other hidden sizes, and a column of every row's time divided by
that row's: a per-output field has more weights than the shared MLP at any width, so its cost is compared
with a dense network of about its parameter count.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from sparsedyn.analysis import effective_weights
from sparsedyn.config import parse_config
from sparsedyn.runner import build_experiment
from sparsedyn.train import Trainer, TrainSettings

METHODS = {
    "vanilla": [],
    "l1": [{"name": "l1", "lam": 1e-4}],
    "l0": [{"name": "l0", "lam": 1e-3}],
    "pathreg": [{"name": "pathreg", "lambda_paths": 1e-3, "lambda_weights": 1e-4}],
    "cnode": [{"name": "cnode", "lam": 1e-3}],
    # GroupLasso changes the architecture: one network per output. With the shared MLP's
    # hidden sizes that is n times the compute; with 16x16 per output the weight count matches.
    "group_lasso (64x64 per output)": [{"name": "group_lasso", "lam": 1e-2}],
    "group_lasso (16x16 per output)": [{"name": "group_lasso", "lam": 1e-2, "hidden": [16, 16]}],
    "group_lasso (1 per output)": [{"name": "group_lasso", "lam": 1e-2, "hidden": [1]}],
    "lassonet_inner": [{"name": "lassonet", "lam": 1e-2, "mode": "inner"}],
    "lassonet_outer": [{"name": "lassonet", "lam": 1e-2, "mode": "outer"}],
    "magnitude": [{"name": "magnitude", "sparsity": 0.9, "schedule": "oneshot", "start": 1}],
}


def make(methods, n, hidden):
    cfg = parse_config({
        "seed": 0, "methods": methods,
        "task": {"system": "sparse_tanh", "system_params": {"n": n, "parents": 2}, "n_train": 32,
                 "t_end": 3.0, "n_points": 30},
        "model": {"hidden": hidden, "solver": "rk4", "step_size": 0.1},
    })
    exp = build_experiment(cfg)
    exp.method.on_epoch_end(exp.model, 1)  # magnitude: masks now prune 90%
    # the trainer's own optimizer (parameter groups: gates at gate_lr, LassoNet's heavy-ball group) and
    # its per-element step sizes for the proximal thresholds
    trainer = Trainer(exp.model, exp.method, exp.task, TrainSettings(lr=1e-3, progress=False))
    batch = exp.task.splits["train"]
    return exp, trainer, batch


def step(exp, trainer, batch):
    loss = exp.task.loss(exp.model, batch) + exp.method.penalty(exp.model)
    trainer.optimizer.zero_grad()
    loss.backward()
    trainer.optimizer.step()
    exp.method.after_step(exp.model, 1e-3, trainer._step_size)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    p.add_argument("--threads", type=int, default=1, help="torch threads (part of the measurement)")
    p.add_argument("--matched", type=int, nargs="+", default=None,
                   help="hidden sizes of an extra dense row, to compare per-output fields at a matched weight count")
    p.add_argument("--methods", default="", help="comma-separated subset of the rows (vanilla is always run)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    chosen = {"vanilla", *filter(None, args.methods.split(","))} if args.methods else set(METHODS)
    unknown = chosen - set(METHODS)
    if unknown:
        p.error(f"unknown --methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    setups = {name: make(ms, args.n, args.hidden) for name, ms in METHODS.items() if name in chosen}
    matched = f"vanilla ({'x'.join(map(str, args.matched))})" if args.matched else None
    if matched:
        setups[matched] = make([], args.n, args.matched)
    times: dict[str, list[float]] = {name: [] for name in setups}
    for s in setups.values():  # warm-up
        for _ in range(3):
            step(*s)
    for _ in range(args.rounds):
        for name, s in setups.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(*s)
            times[name].append((time.perf_counter() - t0) / args.steps)
    base = min(times["vanilla"])
    print(f"# node_overhead: n={args.n}, hidden={args.hidden}, batch 32 trajectories x 30 points, "
          f"rk4 dt=0.1 on t in [0, 3]; {args.rounds} rounds x {args.steps} steps; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'method':32s} {'weights':>8s} {'ms/step':>8s} {'ratio':>6s} {'<=1.3x':>7s}"
          + (f" {'/ ' + matched:>24s}" if matched else ""))
    for name, ts in times.items():
        med = min(ts)  # the least-disturbed round: timing noise here is one-sided
        ratio = med / base
        n_weights = sum(w.numel() for w in effective_weights(setups[name][0].model).values())
        extra = f" {med / min(times[matched]):24.2f}" if matched else ""
        print(f"{name:32s} {n_weights:8d} {1000 * med:8.2f} {ratio:6.2f} {'yes' if ratio <= 1.3 else 'NO':>7s}{extra}")


if __name__ == "__main__":
    main()
