"""The rk4 solve with its backward: the native C kernel against the PyTorch fused solve, side by side (issue 23).

For each shape (members M, variables n, hidden widths, rows per member, grid steps), one solve of a tanh MLP
field and the gradient of its sum with respect to the stacked weights, through ``nn.fused_native._NativeRK4``
and ``nn.fused_rk4._FusedRK4`` on the same inputs; rounds alternate the two, the fastest round is kept. FLOP
as in ``node_step_anchors.py`` (a layer's forward 2 x in x out per row, its backward twice that). Then the fields
the PyTorch fused solve does not take (grouped, skip, SONODE), kernel against the lean loop, a whole step each.

    python bench/native_kernel.py [--rounds 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from sparsedyn.nn import native
from sparsedyn.nn.fields import MLP
from sparsedyn.nn.fixed_grid import _plan
from sparsedyn.nn.fused_native import _NativeRK4
from sparsedyn.nn.fused_rk4 import _FusedRK4

SHAPES = [  # (members, n, hidden, rows, steps): where each shape comes from
    (1, 10, (64, 64), 32, 29),     # node_step_anchors' single step
    (81, 5, (16, 16), 8, 19),      # the systems sweep's lockstep of 81 (node_step_anchors' stacked row)
    (32, 200, (16, 16), 8, 19),    # stacked_training --n200 at M = 32
    (1, 529, (64, 64), 32, 29),    # node_overhead --n 529
]


def solve_and_grad(kernel: bool, plan, y0, params):
    layout = (y0.shape[0], (1,) * (len(params) // 2), False, False)

    def run() -> None:
        out = _NativeRK4.apply(plan, None, layout, y0, *params) if kernel else _FusedRK4.apply(plan, None, y0, *params)
        torch.autograd.grad(out.sum(), params)
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if native.kernel() is None:
        raise SystemExit(f"the native kernel is not available here: {native.status()}")
    print(f"# native_kernel: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), {args.rounds} rounds (fastest kept)")
    print(f"{'M':>3s} {'n':>4s} {'hidden':>8s} {'rows':>4s} {'steps':>5s} {'kernel ms':>10s} {'GFLOP/s':>8s} "
          f"{'PyTorch ms':>11s} {'GFLOP/s':>8s} {'ratio':>6s}")
    for m, n, hidden, rows, steps in SHAPES:
        torch.manual_seed(0)
        fields = [MLP(n, n, hidden) for _ in range(m)]
        params = [torch.stack([getattr(f.layers[i], name) for f in fields]).detach().requires_grad_()
                  for i in range(len(hidden) + 1) for name in ("weight", "bias")]
        y0 = torch.randn(m, rows, n)
        plan = _plan(tuple(torch.linspace(0, 1, steps + 1).tolist()), None)
        runs = {"kernel": solve_and_grad(True, plan, y0, params), "torch": solve_and_grad(False, plan, y0, params)}
        best = {k: float("inf") for k in runs}
        for run in runs.values():
            run()
        reps = max(1, int(0.05 / max(1e-4, _time(runs["kernel"]))))
        for _ in range(args.rounds):
            for k, run in runs.items():
                best[k] = min(best[k], _time(run, reps))
        sizes = [n, *hidden, n]
        flop = 3 * 2 * sum(a * b for a, b in zip(sizes, sizes[1:])) * rows * 4 * steps * m
        print(f"{m:3d} {n:4d} {'-'.join(map(str, hidden)):>8s} {rows:4d} {steps:5d} {1e3 * best['kernel']:10.2f} "
              f"{flop / best['kernel'] / 1e9:8.1f} {1e3 * best['torch']:11.2f} {flop / best['torch'] / 1e9:8.1f} "
              f"{best['kernel'] / best['torch']:6.2f}")
    loop_rows(args.rounds)


def loop_rows(rounds: int) -> None:
    """Fields the PyTorch fused solve does not take (before the kernel they ran the lean loop): one NODE or
    SONODE step's solve, loss and backward, kernel against ``native_solve = False``."""
    from sparsedyn.nn.fields import GroupedMLP, SkipField
    from sparsedyn.nn.ode import NeuralODE, SecondOrderODE

    rk4 = {"solver": "rk4", "step_size": 0.1}
    cases = [
        ("GroupedMLP 10 x (16-16 per output)", NeuralODE(GroupedMLP(10, 10, (16, 16)), **rk4), 10),
        ("SkipField(MLP 10-64-64-10)", NeuralODE(SkipField(MLP(10, 10, (64, 64))), **rk4), 10),
        ("SONODE MLP 100-64-50", SecondOrderODE(MLP(100, 50, (64,)), MLP(50, 50, (16,)), **rk4), 50),
    ]
    print(f"{'field (32 rows, t in [0, 3], rk4 0.1)':40s} {'kernel ms':>10s} {'loop ms':>8s} {'ratio':>6s}")
    for name, model, n in cases:
        torch.manual_seed(0)
        x0, t = torch.randn(32, n), torch.linspace(0, 3, 30)

        def step(model=model, x0=x0, t=t) -> None:
            model(x0, t).square().mean().backward()

        best = {}
        for native_solve in (True, False):
            model.native_solve = native_solve
            step()
            best[native_solve] = min(_time(step) for _ in range(rounds))
        print(f"{name:40s} {1e3 * best[True]:10.2f} {1e3 * best[False]:8.2f} {best[True] / best[False]:6.2f}")


def _time(fn, repeat: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


if __name__ == "__main__":
    main()
