"""Does compiling the rk4 solve pay? The library's hand-fused solve against the same solve compiled (issue 23).

The library's default field is solved by one hand-written autograd node (``nn.fused_rk4``): its forward and
backward run without autograd, so they can be compiled as plain tensor programs. Rows, interleaved in one
process, one thread, MLP 10 -> 64 -> 64 -> 10 tanh, 32 trajectories, ``--steps`` rk4 steps of 0.1:

* ``library fused (eager)``: ``fused_rk4_solve`` forward and backward (the weight gradients summed over all
  evaluations in one product per layer);
* ``compiled step``: one 3/8-rule step's forward, and one step's adjoint (accumulating the weight gradients
  evaluation by evaluation), each compiled by ``torch.compile(fullgraph=True, dynamic=False)`` with
  inductor's C++ wrapper (it cuts a compiled call's Python overhead), called once per step; the step length
  is a tensor, so one compile serves every grid.

Printed: compile seconds (first call of both functions), ms per solve (forward + backward), the ratio, the
largest difference of the compiled gradients from the eager ones, and after how many solves the compile pays.
Needs a C++ compiler (inductor's CPU backend).

    python bench/compiled_step.py [--rounds 15] [--steps 30]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from sparsedyn.nn.fields import MLP
from sparsedyn.nn.fused_rk4 import fused_rk4_solve


def _field(p, u):
    h1 = torch.tanh(torch.addmm(p[1], u, p[0].t()))
    h2 = torch.tanh(torch.addmm(p[3], h1, p[2].t()))
    return torch.addmm(p[5], h2, p[4].t()), h1, h2


def forward_step(y, dt, *p):
    """One 3/8-rule step: the new state, the stage inputs and every evaluation's hidden states."""
    k1, a1, b1 = _field(p, y)
    u2 = y + dt / 3 * k1
    k2, a2, b2 = _field(p, u2)
    u3 = y + dt * (k2 - k1 / 3)
    k3, a3, b3 = _field(p, u3)
    u4 = y + dt * (k1 - k2 + k3)
    k4, a4, b4 = _field(p, u4)
    return y + dt / 8 * (k1 + 3 * k2 + 3 * k3 + k4), u2, u3, u4, a1, b1, a2, b2, a3, b3, a4, b4


def _vjp(p, u, h1, h2, g, acc):
    acc[4], acc[5] = acc[4] + g.t() @ h2, acc[5] + g.sum(0)
    g = (g @ p[4]) * (1 - h2 * h2)
    acc[2], acc[3] = acc[2] + g.t() @ h1, acc[3] + g.sum(0)
    g = (g @ p[2]) * (1 - h1 * h1)
    acc[0], acc[1] = acc[0] + g.t() @ u, acc[1] + g.sum(0)
    return g @ p[0]


def backward_step(a, dt, y, u2, u3, u4, a1, b1, a2, b2, a3, b3, a4, b4, *p_and_acc):
    """The adjoint of one step (``nn.fused_rk4``'s formulas), the weight gradients accumulated."""
    p, acc = p_and_acc[:6], list(p_and_acc[6:])
    e = dt / 8
    g4 = _vjp(p, u4, a4, b4, a * e, acc)
    g3 = _vjp(p, u3, a3, b3, 3 * e * a + dt * g4, acc)
    g2 = _vjp(p, u2, a2, b2, 3 * e * a - dt * g4 + dt * g3, acc)
    g1 = _vjp(p, y, a1, b1, e * a + dt * g4 - dt / 3 * g3 + dt / 3 * g2, acc)
    return (a + g1 + g2 + g3 + g4, *acc)


def stepwise_solve(fwd, bwd, params, y0, steps: int, dt: torch.Tensor, seed_grad: torch.Tensor):
    """Gradients of <seed_grad, final state> with respect to the weights, step by step."""
    saved, y = [], y0
    for _ in range(steps):
        out = fwd(y, dt, *params)
        saved.append((y, *out[1:]))
        y = out[0]
    a, acc = seed_grad, [torch.zeros_like(w) for w in params]
    for s in reversed(saved):
        a, *acc = bwd(a, dt, *s, *params, *acc)
    return acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    field = MLP(10, 10, (64, 64))
    y0 = torch.randn(32, 10)
    seed_grad = torch.randn(32, 10)
    t = torch.arange(args.steps + 1) * 0.1
    params = [p.detach() for layer in field.layers for p in (layer.weight, layer.bias)]
    dt = torch.tensor(0.1)

    def library() -> list[torch.Tensor]:
        field.zero_grad()
        (fused_rk4_solve(field, y0, t, 0.1)[-1] * seed_grad).sum().backward()
        return [p.grad for layer in field.layers for p in (layer.weight, layer.bias)]

    options = {"cpp_wrapper": True}
    fwd = torch.compile(forward_step, fullgraph=True, dynamic=False, options=options)
    bwd = torch.compile(backward_step, fullgraph=True, dynamic=False, options=options)
    start = time.perf_counter()
    with torch.no_grad():
        compiled = stepwise_solve(fwd, bwd, params, y0, args.steps, dt, seed_grad)
    compile_s = time.perf_counter() - start
    eager = library()
    diff = max(float((c - e).abs().max() / e.abs().max()) for c, e in zip(compiled, eager))
    times: dict[str, list[float]] = {"library fused (eager)": [], "compiled step": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        library()
        times["library fused (eager)"].append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.no_grad():
            stepwise_solve(fwd, bwd, params, y0, args.steps, dt, seed_grad)
        times["compiled step"].append(time.perf_counter() - start)
    best = {k: min(v) * 1e3 for k, v in times.items()}
    print(f"# compiled_step: MLP 10-64-64-10 tanh, 32 x {args.steps} rk4 steps of 0.1, {args.rounds} rounds "
          f"(fastest kept); {platform.machine()}, torch {torch.__version__}, 1 thread")
    print(f"compile (first call of both step functions): {compile_s:.1f} s")
    for name, ms in best.items():
        print(f"{name:24s} {ms:7.2f} ms per solve (forward + backward)")
    saving = best["library fused (eager)"] - best["compiled step"]
    ratio = best["compiled step"] / best["library fused (eager)"]
    pays = f"after {compile_s / (saving / 1e3):,.0f} solves" if saving > 0 else "never"
    print(f"compiled / eager: {ratio:.2f}x; weight gradients agree to {diff:.1e} (relative); the compile pays {pays}")


if __name__ == "__main__":
    main()
