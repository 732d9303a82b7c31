"""TorchScript of the hand-fused rk4 solve (issue 23, item 2): is a scripted forward and adjoint loop faster
than the library's eager one (``sparsedyn.nn.fused_rk4``), and what does scripting cost?

The same 3/8-rule steps and the same hand-written adjoint as :mod:`sparsedyn.nn.fused_rk4` (every grid point
an output, tanh MLP), the loops scripted with ``torch.jit.script`` so that no Python runs per operation;
wrapped in an autograd function like the library's, the loss and its gradient through autograd in both.
Rounds alternate the two rows; the fastest round of each is kept.

    python bench/scripted_solve.py --rounds 15
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch import Tensor

from sparsedyn.nn.fields import MLP
from sparsedyn.nn.fused_rk4 import fused_rk4_solve

SCRIPTED: dict[str, torch.jit.ScriptFunction] = {}  # _forward and _backward, scripted in main() (timed)


@torch.jit.script  # scripted on its own, called (not inlined) by _forward: measured faster
def _mlp(params: list[Tensor], u: Tensor) -> tuple[Tensor, list[Tensor]]:
    hidden: list[Tensor] = []
    h = u
    last = len(params) // 2 - 1
    for i in range(last + 1):
        h = torch.addmm(params[2 * i + 1], h, params[2 * i].t())
        if i < last:
            h = torch.tanh(h)
            hidden.append(h)
    return h, hidden


def _forward(params: list[Tensor], y0: Tensor, dts: list[float]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    ys: list[Tensor] = [y0]
    inputs: list[Tensor] = []
    hiddens: list[Tensor] = []
    y = y0
    third = 1.0 / 3.0
    for dt in dts:
        k1, h1 = _mlp(params, y)
        u2 = torch.add(y, k1, alpha=dt * third)
        k2, h2 = _mlp(params, u2)
        u3 = torch.add(torch.add(y, k2, alpha=dt), k1, alpha=-dt * third)
        k3, h3 = _mlp(params, u3)
        u4 = torch.add(torch.add(torch.add(y, k1, alpha=dt), k2, alpha=-dt), k3, alpha=dt)
        k4, h4 = _mlp(params, u4)
        e = dt * 0.125
        y = torch.add(torch.add(torch.add(torch.add(y, k1, alpha=e), k2, alpha=3 * e), k3, alpha=3 * e), k4, alpha=e)
        inputs += [ys[-1], u2, u3, u4]
        hiddens += h1 + h2 + h3 + h4
        ys.append(y)
    return ys, inputs, hiddens


@torch.jit.script
def _vjp(params: list[Tensor], u: Tensor, hidden: list[Tensor], g: Tensor, gs: list[list[Tensor]],
         xs: list[list[Tensor]]) -> Tensor:
    for i in range(len(params) // 2 - 1, -1, -1):
        gs[i].append(g)
        xs[i].append(hidden[i - 1] if i > 0 else u)
        g = torch.mm(g, params[2 * i])
        if i > 0:
            g = torch.ops.aten.tanh_backward(g, hidden[i - 1])
    return g


def _backward(params: list[Tensor], dts: list[float], inputs: list[Tensor], hiddens: list[Tensor],
              grad_out: Tensor) -> list[Tensor]:
    layers = len(params) // 2
    nh = layers - 1
    gs: list[list[Tensor]] = [[] for _ in range(layers)]
    xs: list[list[Tensor]] = [[] for _ in range(layers)]
    a = grad_out[len(dts)]
    third = 1.0 / 3.0
    for i in range(len(dts) - 1, -1, -1):
        dt = dts[i]
        e = dt * 0.125
        s, h = 4 * i, 4 * i * nh
        g4 = _vjp(params, inputs[s + 3], hiddens[h + 3 * nh: h + 4 * nh], a * e, gs, xs)
        g3 = _vjp(params, inputs[s + 2], hiddens[h + 2 * nh: h + 3 * nh], torch.add(g4 * dt, a, alpha=3 * e), gs, xs)
        g2 = _vjp(params, inputs[s + 1], hiddens[h + nh: h + 2 * nh],
                  torch.add(torch.add(g3 * dt, g4, alpha=-dt), a, alpha=3 * e), gs, xs)
        g1 = _vjp(params, inputs[s], hiddens[h: h + nh],
                  torch.add(torch.add(torch.add(g4 * dt, g3, alpha=-dt * third), g2, alpha=dt * third), a, alpha=e),
                  gs, xs)
        a = a + g1 + g2 + g3 + g4 + grad_out[i]
    out: list[Tensor] = []
    for i in range(layers):
        g = torch.cat(gs[i], 0)
        out += [torch.mm(g.t(), torch.cat(xs[i], 0)), g.sum(0)]
    out.append(a)
    return out


class _Scripted(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dts, y0, *params):
        ys, inputs, hiddens = SCRIPTED["forward"](list(params), y0, dts)
        ctx.saved = (dts, list(params), inputs, hiddens)
        return torch.stack(ys)

    @staticmethod
    def backward(ctx, grad):
        dts, params, inputs, hiddens = ctx.saved
        out = SCRIPTED["backward"](params, dts, inputs, hiddens, grad)
        return (None, out[-1], *out[:-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    SCRIPTED.update(forward=torch.jit.script(_forward), backward=torch.jit.script(_backward))
    script_seconds = time.perf_counter() - start
    torch.manual_seed(0)
    field = MLP(10, 10, (64, 64))
    y0, target = torch.randn(32, 10), torch.randn(30, 32, 10)
    t = torch.arange(30) * 0.1
    params = [p for layer in field.layers for p in (layer.weight, layer.bias)]
    dts = [0.1] * 29

    def step(solve) -> list[Tensor]:
        for p in params:
            p.grad = None
        ((solve() - target) ** 2).mean().backward()
        return [p.grad.clone() for p in params]

    rows = {"library fused (eager)": lambda: step(lambda: fused_rk4_solve(field, y0, t, 0.1)),
            "scripted": lambda: step(lambda: _Scripted.apply(dts, y0, *params))}
    start = time.perf_counter()
    scripted = rows["scripted"]()  # TorchScript's profiling executor optimises during the first calls
    rows["scripted"]()
    warm = time.perf_counter() - start
    eager = rows["library fused (eager)"]()
    worst = max(float((a - b).abs().max() / a.abs().max()) for a, b in zip(eager, scripted))
    best = dict.fromkeys(rows, float("inf"))
    for _ in range(args.rounds):
        for name, fn in rows.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / args.steps)
    print(f"# scripted_solve: MLP 10-64-64-10 tanh, 32 x 30 rk4 steps of 0.1, {args.rounds} rounds x {args.steps} "
          f"steps (fastest kept); {platform.machine()}, torch {torch.__version__}, 1 thread")
    print(f"scripting: {script_seconds:.2f} s; first two scripted steps (profiling runs): {warm:.2f} s")
    for name, seconds in best.items():
        print(f"{name:24s} {1000 * seconds:6.2f} ms per step (solve, loss, backward)")
    print(f"scripted / eager: {best['scripted'] / best['library fused (eager)']:.2f}x; "
          f"weight gradients agree to {worst:.1e} (relative)")


if __name__ == "__main__":
    main()
