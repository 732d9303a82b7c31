"""torch's CPU tanh against its sigmoid, and the fused rk4 solve in either form (issue 23).

The fused rk4 solve (:mod:`sparsedyn.nn.fused_rk4`) evaluates its tanh MLP as the equal sigmoid network
(``tanh(u) = 2 sigmoid(2u) - 1``, the affine part folded into the next layer's weights). This bench shows why
and what it buys, side by side in one process on one thread:

1. per call, ``torch.tanh`` against ``torch.sigmoid`` on float32 vectors of the sizes a solve activates
   (2,048: batch 32 x 64 hidden units; 10,368 and 51,200: stacked members);
2. one fused solve with its backward (MLP 10-64-64-10, 32 states, 29 rk4 steps of 0.1), with the solve's
   hidden activations computed by tanh (the earlier form: ``_tanh_form`` below) and by the shipped sigmoid
   form; rounds alternate the rows, the fastest round per row is kept; the weight gradients of the two are
   compared.

    python bench/fused_activation.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import platform
import time
from contextlib import contextmanager
from functools import partial

import torch

from sparsedyn.nn import fused_rk4
from sparsedyn.nn.fields import MLP
from sparsedyn.nn.fused_rk4 import fused_rk4_solve


def per_call_us(fn, calls: int = 3000) -> float:
    for _ in range(50):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def _tanh_slope(g, h):
    """The earlier backward's activation derivative: tanh's ``1 - h^2``."""
    return torch.addcmul(g, g * h, h, value=-1.0)


@contextmanager
def _tanh_form():
    """The fused solve as it was before the sigmoid form: tanh, the original weights, their own gradients."""
    saved = fused_rk4._mlp, fused_rk4._mlp_vjp, fused_rk4._sigmoid_form, fused_rk4._original_grads
    fused_rk4._mlp = partial(saved[0], activation=torch.tanh)
    fused_rk4._mlp_vjp = partial(saved[1], slope=_tanh_slope)
    fused_rk4._sigmoid_form, fused_rk4._original_grads = (lambda p: p), (lambda g, layers: g)
    try:
        yield
    finally:
        fused_rk4._mlp, fused_rk4._mlp_vjp, fused_rk4._sigmoid_form, fused_rk4._original_grads = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# fused_activation: {platform.machine()}, torch {torch.__version__}, 1 thread, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'floats':>8} {'tanh us':>9} {'sigmoid us':>11} {'ratio':>6}")
    for size in (2048, 10368, 51200):
        x = torch.randn(size)
        tanh, sigmoid = per_call_us(partial(torch.tanh, x)), per_call_us(partial(torch.sigmoid, x))
        print(f"{size:>8} {tanh:>9.1f} {sigmoid:>11.1f} {tanh / sigmoid:>6.1f}")

    torch.manual_seed(0)
    field = MLP(10, 10, (64, 64))
    y0, t = torch.randn(32, 10), torch.linspace(0, 2.9, 30)
    target = torch.randn(30, 32, 10)
    params = list(field.parameters())

    def step() -> list[torch.Tensor]:
        loss = ((fused_rk4_solve(field, y0, t, 0.1) - target) ** 2).mean()
        return list(torch.autograd.grad(loss, params))

    def timed(repeats: int = 10) -> float:
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        return (time.perf_counter() - start) / repeats * 1e3

    with _tanh_form():
        g_tanh = step()
    g_sigmoid = step()
    best = {"tanh form": float("inf"), "sigmoid form (shipped)": float("inf")}
    for _ in range(args.rounds):
        with _tanh_form():
            best["tanh form"] = min(best["tanh form"], timed())
        best["sigmoid form (shipped)"] = min(best["sigmoid form (shipped)"], timed())
    print(f"\nfused rk4 solve + backward, MLP 10-64-64-10, 32 states x 29 steps, {args.rounds} rounds (fastest kept):")
    for name, ms in best.items():
        print(f"  {name:<24} {ms:7.2f} ms")
    diff = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(g_sigmoid, g_tanh))
    print(f"sigmoid / tanh form: {best['sigmoid form (shipped)'] / best['tanh form']:.2f}x; "
          f"weight gradients agree to {diff:.1e} (relative to each tensor's largest)")


if __name__ == "__main__":
    main()
