"""Per-evaluation cost of a small MLP vector field: iterating its layers vs slicing the ModuleList.

``MLP.forward`` used ``self.layers[:-1]``, which builds a new ModuleList on every call; a NODE evaluates
its field 4 times per RK4 step, so the cost repeats thousands of times per epoch. Both forwards run
interleaved in one process (best of several rounds, one thread) and must give identical outputs.

    python bench/field_eval.py [--rounds 7] [--calls 2000]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from sparsedyn.nn.fields import MLP


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    field, x = MLP(6, 6, (16, 16)), torch.randn(16, 6)

    def sliced(z: torch.Tensor) -> torch.Tensor:  # the former MLP.forward
        for layer in field.layers[:-1]:
            z = field.act(layer(z))
        return field.layers[-1](z)

    times: dict[str, list[float]] = {"sliced (before)": [], "iterated (now)": []}
    with torch.no_grad():
        assert torch.equal(sliced(x), field(x))
        for _ in range(args.rounds):
            for name, f in (("sliced (before)", sliced), ("iterated (now)", field)):
                start = time.perf_counter()
                for _ in range(args.calls):
                    f(x)
                times[name].append((time.perf_counter() - start) / args.calls * 1e6)
    print(f"# MLP 6-16-16-6, batch 16, 1 thread, {platform.machine()}, torch {torch.__version__}")
    for name, v in times.items():
        print(f"{name:16s} {min(v):7.1f} us per field evaluation")
    print(f"ratio before / now: {min(times['sliced (before)']) / min(times['iterated (now)']):.2f}x")


if __name__ == "__main__":
    main()
