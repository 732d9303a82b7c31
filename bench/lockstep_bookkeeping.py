"""The lockstep step's per-member bookkeeping, batched or member by member, in one process (issue 23).

``sparsedyn.train_stacked`` computes small members' masked MSEs in one computation
(:func:`~sparsedyn.tasks.trajectories.stacked_masked_mse`, below ``STACKED_MSE_BELOW`` predicted values per member;
``--force-stacked-mse`` at every size) and sets their gradients to None directly
(``_zero_grads``). This bench times one lockstep epoch of the systems sweep's model (``bench/stacked_training.py``'s
``SYSTEMS``: MLP 16-16, batch 8, 4 steps per epoch) with those and with the member-by-member forms they replaced
(each member's ``score``, each optimizer's ``zero_grad``), rounds alternating, the fastest round per form kept.

    python bench/lockstep_bookkeeping.py [--rounds 8] [--n200] [--force-stacked-mse]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # stacked_training, beside this file
from sparsedyn import train_stacked  # noqa: E402
from sparsedyn.tasks import forecast  # noqa: E402
from sparsedyn.tasks.forecast import ForecastTask  # noqa: E402
from stacked_training import SYSTEMS, SYSTEMS_N200, trainers  # noqa: E402

BATCHED = {"loss": ForecastTask.stacked_loss, "zero": train_stacked._zero_grads}


def _loss_per_member(self, models, batches):
    return [self.score(p, b) for p, b in zip(self.predict_stacked(models, batches), batches)]


def _zero_per_member(members) -> None:
    for t in members:
        t.optimizer.zero_grad(set_to_none=True)


def _use(batched: bool) -> None:
    ForecastTask.stacked_loss = BATCHED["loss"] if batched else _loss_per_member
    train_stacked._zero_grads = BATCHED["zero"] if batched else _zero_per_member


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--n200", action="store_true", help="the 200-variable system at M = 32 instead of M = 81")
    ap.add_argument("--force-stacked-mse", action="store_true", help="the stacked MSE whatever the members' size")
    args = ap.parse_args()
    if args.force_stacked_mse:
        forecast.STACKED_MSE_BELOW = 1 << 62
    torch.set_num_threads(1)
    base, m = (SYSTEMS_N200, 32) if args.n200 else (SYSTEMS, 81)
    members = trainers(base, [], m)
    steps = sum(1 for _ in members[0].task.train_batches(members[0].s.batch_size, torch.Generator()))
    train_stacked._joint_epoch(members, 1)  # warm-up
    best = {"member by member": float("inf"), "batched (shipped)": float("inf")}
    for _ in range(args.rounds):
        for name in best:
            _use(name != "member by member")
            start = time.perf_counter()
            train_stacked._joint_epoch(members, 1)
            best[name] = min(best[name], (time.perf_counter() - start) / steps * 1e3)
    _use(True)
    n = base["task"]["system_params"]["n"]
    print(f"# lockstep_bookkeeping: {platform.machine()}, torch {torch.__version__}, 1 thread, n = {n}, M = {m}, "
          f"{args.rounds} rounds (fastest kept){', stacked MSE forced' if args.force_stacked_mse else ''}")
    for name, ms in best.items():
        print(f"  {name:<20} {ms:7.2f} ms per lockstep step")
    print(f"batched / member by member: {best['batched (shipped)'] / best['member by member']:.2f}x")


if __name__ == "__main__":
    main()
