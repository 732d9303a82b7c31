"""The lockstep's joint Adam step on flat buffers against one foreach call per setting, in one process (issue 23).

``train_stacked`` steps its members' optimizers with :class:`~sparsedyn.flat_adam.FlatAdam` (every member's
parameters and moments views into one buffer per setting: one ``adam()`` call on flat tensors); before, with
:func:`~sparsedyn.joint_adam.joint_adam_step` (one foreach call per setting over every member's tensors). Two
identical sets of members (``bench/stacked_training.py``'s ``SYSTEMS`` model, vanilla, M = 81; ``--n200``: 200
variables, M = 32), one per form, so that neither disturbs the other's buffers. Timed, rounds alternating, the
fastest round kept: the Adam step alone (after one backward, repeated) and a whole lockstep step
(``train_stacked._joint_epoch``). After timing, both sets are checked to hold the same parameters bit for bit.

    python bench/flat_adam_step.py [--rounds 7] [--n200]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # stacked_training, beside this file
from sparsedyn.flat_adam import FlatAdam  # noqa: E402
from sparsedyn.joint_adam import joint_adam_step  # noqa: E402
from sparsedyn.train_stacked import _joint_epoch  # noqa: E402
from stacked_training import SYSTEMS, SYSTEMS_N200, steps, trainers  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n200", action="store_true", help="the 200-variable system at M = 32 instead of M = 81")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base, m = (SYSTEMS_N200, 32) if args.n200 else (SYSTEMS, 81)
    joint, flat_members, flat = trainers(base, [], m), trainers(base, [], m), FlatAdam()
    n_steps = steps(joint[0])
    forms = {"joint_adam_step": (joint, None), "FlatAdam (shipped)": (flat_members, flat)}
    for members, buffers in forms.values():
        _joint_epoch(members, 1, buffers)  # warm-up; leaves every member with a gradient
    adam = {name: float("inf") for name in forms}
    epoch = {name: float("inf") for name in forms}
    for _ in range(args.rounds):
        for name, (members, buffers) in forms.items():
            optimizers = [t.optimizer for t in members]
            if buffers is not None:  # repeated without a forward: the step on the members' gradients, as a step
                buffers.begin_step()  # whose forward read no slot runs it (gradients gathered, no kept buffer)
            start = time.perf_counter()
            for _ in range(20):
                buffers.step(optimizers) if buffers is not None else joint_adam_step(optimizers)
            adam[name] = min(adam[name], (time.perf_counter() - start) / 20 * 1e3)
            start = time.perf_counter()
            _joint_epoch(members, 1, buffers)
            epoch[name] = min(epoch[name], (time.perf_counter() - start) / n_steps * 1e3)
    flat.release()
    same = all(torch.equal(p, q) for a, b in zip(joint, flat_members)
               for p, q in zip(a.model.parameters(), b.model.parameters()))
    n = base["task"]["system_params"]["n"]
    tensors = sum(1 for t in joint for _ in t.model.parameters())
    print(f"# flat_adam_step: {platform.machine()}, torch {torch.__version__}, 1 thread, n = {n}, M = {m} "
          f"({tensors} tensors), {args.rounds} rounds (fastest kept)")
    print(f"{'form':<22} {'Adam step ms':>12} {'lockstep step ms':>17}")
    for name in forms:
        print(f"{name:<22} {adam[name]:12.2f} {epoch[name]:17.2f}")
    a, b = forms
    print(f"flat / joint: Adam step {adam[b] / adam[a]:.2f}x, lockstep step {epoch[b] / epoch[a]:.2f}x; "
          f"parameters of the two sets equal bit for bit after timing: {same}")


if __name__ == "__main__":
    main()
