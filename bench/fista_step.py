"""One FISTA step of SparseGraph's library path (``sparsedyn.collocation.fit_library_path``) at 15 and 30
variables: where its time goes, and the prox built in the coefficients' layout (``stacked_prox``) against
the earlier one that gathered each product term's two factors by columns of the (output, input) layout.

A step is the gradient ``gram @ theta - rhs`` (M members' (F x F) Gram matrices), the prox (group norms,
factors, their product per degree-2 term) and the momentum update. Both prox versions run on the same
inputs and must agree bit for bit. Rounds alternate the rows; the fastest round of each is kept.

    python bench/fista_step.py --rounds 20
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch import Tensor

from sparsedyn.collocation import HybridField, feature_groups, square_partners, stacked_prox


def column_prox(field: HybridField, groups: Tensor, th: Tensor, thresholds: Tensor) -> Tensor:
    """The prox as ``fit_library_path`` computed it until 2026-12-07: factors in the (output, input) layout,
    the degree-2 terms' factors gathered by columns, applied through transposed views."""
    n = field.n
    factor, both = field.shrink_factors(((th**2).transpose(1, 2) @ groups).sqrt(), thresholds)
    out = th.clone()
    out[:, 1:1 + n] *= factor.transpose(1, 2)
    out[:, 1 + n:] *= both.transpose(1, 2)
    return out


def _best(fn, rounds: int, repeat: int) -> float:
    """Fastest of ``rounds`` rounds of ``repeat`` calls, ms per call."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best * 1e3


def row(n: int, members: int, rounds: int) -> str:
    """One line of the table: a degree-2 library on ``n`` variables, ``members`` members at a sparse stage."""
    gen = torch.Generator().manual_seed(0)
    field = HybridField(members, n, 0, True, gen)
    groups, partner = feature_groups(field), square_partners(field)
    features = groups.shape[0]
    gram = torch.randn(members, features, features, generator=gen)
    theta = torch.randn(members, features, n, generator=gen)
    theta = theta * (torch.rand(theta.shape, generator=gen) < 0.3)  # a sparse stage
    rhs = torch.randn(members, features, n, generator=gen)
    thresholds = 0.5 * torch.rand(members, n, n, generator=gen) * field.off_diagonal
    equal = torch.equal(column_prox(field, groups, theta, thresholds),
                        stacked_prox(field, groups, partner, theta, thresholds))
    times: dict[str, list[float]] = {"gradient": [], "column": [], "stacked": []}
    for _ in range(rounds):  # interleaved
        times["gradient"].append(_best(lambda: gram @ theta - rhs, 1, 5))
        times["column"].append(_best(lambda: column_prox(field, groups, theta, thresholds), 1, 5))
        times["stacked"].append(_best(lambda: stacked_prox(field, groups, partner, theta, thresholds), 1, 5))
    grad, col, stk = (min(v) for v in times.values())
    return (f"{n:>3} {features:>4} {grad:12.3f} {col:12.3f} {stk:13.3f} {stk / col:10.2f}x "
            f"{(grad + stk) / (grad + col):10.2f}x {equal}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--members", type=int, default=16, help="5 folds + the full data + 10 halves: a default fit")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# fista_step: {args.members} members, degree-2 library, {args.rounds} rounds (fastest kept); "
          f"{platform.machine()}, torch {torch.__version__}, 1 thread")
    print(f"{'n':>3} {'F':>4} {'gradient ms':>12} {'column prox':>12} {'stacked prox':>13} {'prox ratio':>11} "
          f"{'step ratio':>11} equal")
    for n in (15, 30):
        print(row(n, args.members, args.rounds))

if __name__ == "__main__":
    main()
