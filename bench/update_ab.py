"""A/B of the two step-time changes of 2026-12-05, each timed against its own absence in one run.

1. The fused rk4 backward accumulating a large layer's weight gradient evaluation by evaluation
   (``nn.fused_rk4.ACCUMULATE_FROM``) instead of one product over the concatenated (gradient, input) pairs.
2. The lockstep trainer's one joint Adam step for all members (``joint_adam.joint_adam_step``) instead of
   each member's own ``optimizer.step()``.

Rows: a single training step of the MLP 64-64 NODE on 10 and on 529 variables (node_overhead's setup, 1),
and one lockstep step of the systems sweep's model stacked at M = 81 (Lotka-Volterra, 10 species) and at
M = 32 on a 200-species system (stacked_training's setups, 1 and 2). Variants are timed interleaved;
the fastest round of each is kept. Ratios < 1 mean the change is faster.

    python bench/update_ab.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections.abc import Callable

import torch

import sparsedyn.train_stacked as train_stacked
from node_overhead import make, step
from sparsedyn.nn import fused_rk4
from stacked_training import SYSTEMS, SYSTEMS_N200, steps, trainers

NEVER = math.inf  # ACCUMULATE_FROM(_MEMBER) that makes every layer concatenate (the code before the change)
DEFAULT_THRESHOLD, DEFAULT_JOINT = fused_rk4.ACCUMULATE_FROM, train_stacked.joint_adam_step
DEFAULT_MEMBER_THRESHOLD = fused_rk4.ACCUMULATE_FROM_MEMBER  # the same rule for stacked members (per member)


def variant(accumulate: bool, joint: bool) -> Callable[[], None]:
    """A setter for the two switches (the library's defaults are accumulate=True, joint=True)."""

    def apply() -> None:
        fused_rk4.ACCUMULATE_FROM = DEFAULT_THRESHOLD if accumulate else NEVER
        fused_rk4.ACCUMULATE_FROM_MEMBER = DEFAULT_MEMBER_THRESHOLD if accumulate else NEVER
        train_stacked.joint_adam_step = DEFAULT_JOINT if joint else (lambda optimizers: False)
    return apply


def time_variants(run: Callable[[], None], variants: dict[str, Callable[[], None]], rounds: int,
                  per: float) -> dict[str, float]:
    """Fastest round per variant (seconds per step), the variants interleaved in every round."""
    best = {name: math.inf for name in variants}
    for r in range(rounds + 1):  # round 0 warms up
        for name, apply in variants.items():
            apply()
            t0 = time.perf_counter()
            run()
            if r:
                best[name] = min(best[name], (time.perf_counter() - t0) / per)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# update_ab: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, "
          f"{args.rounds} rounds, fastest kept; ACCUMULATE_FROM = {fused_rk4.ACCUMULATE_FROM}, "
          f"per stacked member {fused_rk4.ACCUMULATE_FROM_MEMBER}")
    print(f"{'row':34s} {'before ms':>10s} {'accumulate':>11s} {'+ joint Adam':>13s} {'ratio':>6s}")
    singles = {"single step, n = 10, MLP 64-64": 10, "single step, n = 529, MLP 64-64": 529}
    for name, n in singles.items():
        exp, trainer, batch = make([], n, [64, 64])
        best = time_variants(lambda e=exp, t=trainer, b=batch: [step(e, t, b) for _ in range(5)],
                             {"before": variant(False, False), "accumulate": variant(True, False)},
                             args.rounds, 5)
        print(f"{name:34s} {1e3 * best['before']:10.2f} {1e3 * best['accumulate']:11.2f} {'':>13s} "
              f"{best['accumulate'] / best['before']:6.2f}")
    stacked = {"lockstep, systems n = 10, M = 81": (SYSTEMS, 81), "lockstep, n = 200, M = 32": (SYSTEMS_N200, 32)}
    for name, (base, m) in stacked.items():
        ts = trainers(base, [], m)
        n_steps = steps(ts[0])
        best = time_variants(lambda ts=ts: train_stacked._joint_epoch(ts, 1),
                             {"before": variant(False, False), "accumulate": variant(True, False),
                              "joint": variant(True, True)}, args.rounds, n_steps)
        print(f"{name:34s} {1e3 * best['before']:10.2f} {1e3 * best['accumulate']:11.2f} "
              f"{1e3 * best['joint']:13.2f} {best['joint'] / best['before']:6.2f}")


if __name__ == "__main__":
    main()
