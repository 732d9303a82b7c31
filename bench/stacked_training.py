"""How much training throughput stacking M small NODEs into one batched model would buy (issue 11).

A prototype, not the library feature: M copies of the systems sweep's model (MLP 16-16 tanh field on
Lotka-Volterra, 5 variables, rk4 on the 20-point observation grid, batch 8) are held as one set of
weights with a leading member axis and stepped together (batched matmuls, one Adam over the stacked
tensors), against the same M models stepped one at a time with ``NeuralODE`` and ``torch.optim.Adam``.
Before timing, one stacked member's loss and gradients are checked against its separate twin.
Timed interleaved over rounds, the fastest round kept; prints the per-member step time and the
throughput ratio for M = 1, 9, 27, 81.

    python bench/stacked_training.py [--rounds 3] [--steps 5]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from sparsedyn.config import parse_config
from sparsedyn.runner import build_experiment

CONFIG = {"seed": 0, "task": {"system": "lotka_volterra", "system_params": {"n": 5, "density": 0.3, "seed": 0},
                              "n_train": 32, "n_points": 20, "t_end": 5.0, "noise": 0.01},
          "model": {"hidden": [16, 16], "activation": "tanh", "solver": "rk4", "step_size": None}}


def stacked_weights(models) -> list[torch.Tensor]:
    """Each Linear's weight (M, out, in) and bias (M, 1, out), member order = ``models`` order."""
    layers = [[m for m in model.modules() if isinstance(m, torch.nn.Linear)] for model in models]
    out = []
    for k in range(len(layers[0])):
        out.append(torch.stack([ls[k].weight.detach() for ls in layers]).requires_grad_())
        out.append(torch.stack([ls[k].bias.detach()[None] for ls in layers]).requires_grad_())
    return out


def stacked_field(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The MLP field on states (M, B, n): tanh between layers, as ``sparsedyn.nn.MLP``."""
    for i in range(0, len(params), 2):
        x = torch.baddbmm(params[i + 1], x, params[i].transpose(1, 2))
        if i + 2 < len(params):
            x = torch.tanh(x)
    return x


def stacked_rk4(params, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Classic rk4 on the grid ``t`` (torchdiffeq's fixed-grid rk4 uses the 3/8 rule; see check())."""
    xs, x = [x0], x0
    for t0, t1 in zip(t[:-1], t[1:]):
        h = t1 - t0
        k1 = stacked_field(params, x)
        k2 = stacked_field(params, x + h * k1 / 3)
        k3 = stacked_field(params, x + h * (k2 - k1 / 3))
        k4 = stacked_field(params, x + h * (k1 - k2 + k3))
        x = x + h * (k1 + 3 * (k2 + k3) + k4) / 8
        xs.append(x)
    return torch.stack(xs, dim=2)  # (M, B, T, n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    exp = build_experiment(parse_config(CONFIG))
    data = exp.task.splits["train"]
    batch = data.subset(torch.arange(8))
    t, y = batch.t, batch.y

    def separate_step(model, opt):
        loss = (model(batch.x0, t) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    def stacked_step(params, opt):
        pred = stacked_rk4(params, batch.x0.expand(params[0].shape[0], -1, -1), t)
        loss = (pred - y).pow(2).mean(dim=(1, 2, 3)).sum()  # members never mix: each has its own term
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    # check: member 0 of a stacked pair equals its separate twin (loss and gradient)
    models = [build_experiment(parse_config({**CONFIG, "seed": s})).model for s in range(2)]
    params = stacked_weights(models)
    pred = stacked_rk4(params, batch.x0.expand(2, -1, -1), t)
    (pred - y).pow(2).mean(dim=(1, 2, 3)).sum().backward()
    twin = models[0]
    (twin(batch.x0, t) - y).pow(2).mean().backward()
    first = next(m for m in twin.modules() if isinstance(m, torch.nn.Linear))
    torch.testing.assert_close(params[0].grad[0], first.weight.grad, rtol=1e-4, atol=1e-6)

    results = {}
    for M in (1, 9, 27, 81):
        members = [build_experiment(parse_config({**CONFIG, "seed": s})).model for s in range(M)]
        opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in members]
        sparams = stacked_weights(members)
        sopt = torch.optim.Adam(sparams, lr=1e-2)
        sep, stk = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                for m, o in zip(members, opts):
                    separate_step(m, o)
            sep.append((time.perf_counter() - t0) / args.steps / M)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                stacked_step(sparams, sopt)
            stk.append((time.perf_counter() - t0) / args.steps / M)
        results[M] = (min(sep), min(stk))
    print(f"# stacked_training (prototype): LV n=5, MLP 16-16 tanh, rk4 19 steps, batch 8; {args.rounds} rounds x "
          f"{args.steps} steps, fastest round; {platform.machine()}, torch {torch.__version__}, 1 thread")
    print(f"{'M':>4s} {'separate ms/member':>19s} {'stacked ms/member':>18s} {'throughput':>10s}")
    for M, (a, b) in results.items():
        print(f"{M:4d} {1000 * a:19.3f} {1000 * b:18.3f} {a / b:9.1f}x")


if __name__ == "__main__":
    main()
