"""Recurrent layer speed: the time loop over ``xp.unbind(0)`` against the former ``xp[t]`` indexing.

Indexing ``xp[t]`` at every step makes autograd build a full-size ``(T, B, H)`` zero gradient per
step in backward; one ``unbind(0)`` hands each step its slice. Both loops give identical outputs
(checked here before timing). Timed side by side, interleaved over rounds, the fastest round per
variant kept (noise only adds time): the layer's forward+backward alone, and a full training step
(task loss + penalty, backward, Adam step, after_step) of the nav_cpu and adding_cpu configs.
Target: the full step >= 1.3x faster.

    python bench/recurrent_step.py [--rounds 5] [--steps 5]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from sparsedyn.config import load_config
from sparsedyn.nn.rnn import RecurrentLayer
from sparsedyn.runner import build_experiment

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
NEW_FORWARD = RecurrentLayer.forward


def indexed_forward(self, x, state=None):
    """The former loop: ``xp[t]`` at every step (otherwise the same as ``RecurrentLayer.forward``)."""
    w_ih, w_hh = self.weight_ih, self.weight_hh
    xp = x @ w_ih.T
    if self.bias is not None:
        xp = xp + self.bias
    state = self.initial_state(x.shape[1], x) if state is None else state
    step = {"elman": self._elman, "gru": self._gru, "lstm": self._lstm}[self.cell]
    outs = []
    for t in range(x.shape[0]):
        state = step(xp[t], state, w_hh)
        outs.append(state[0] if self.cell == "lstm" else state)
    return torch.stack(outs), state


def training_step(exp, opt, batch) -> None:
    loss = exp.task.loss(exp.model, batch) + exp.method.penalty(exp.model)
    opt.zero_grad()
    loss.backward()
    opt.step()
    exp.method.after_step(exp.model, 1e-3)


def setups():
    """name -> a zero-argument callable doing one timed unit of work."""
    out = {}
    for cell, (T, B, H) in {"elman": (20, 100, 256), "gru": (50, 64, 128), "lstm": (50, 64, 128)}.items():
        layer = RecurrentLayer(H, H, cell=cell)
        x = torch.randn(T, B, H)

        def fwd_bwd(layer=layer, x=x):
            layer.zero_grad()
            layer(x)[0].square().mean().backward()
        out[f"{cell} layer T={T} B={B} H={H}, fwd+bwd"] = fwd_bwd
    for name in ("nav_cpu", "adding_cpu"):
        cfg = load_config(CONFIGS / f"{name}.yaml")
        exp = build_experiment(cfg)
        opt = torch.optim.Adam(exp.model.parameters(), lr=1e-3)
        batch = next(iter(exp.task.train_batches(cfg.trainer.batch_size, torch.Generator().manual_seed(0))))
        out[f"{name} full training step"] = lambda exp=exp, opt=opt, batch=batch: training_step(exp, opt, batch)
    return out


def check_identical() -> None:
    torch.manual_seed(0)
    for cell in ("elman", "gru", "lstm"):
        layer, x = RecurrentLayer(8, 16, cell=cell), torch.randn(7, 3, 8, requires_grad=True)
        new_out = NEW_FORWARD(layer, x)[0]
        old_out = indexed_forward(layer, x)[0]
        g_new = torch.autograd.grad(new_out.sum(), x)[0]
        g_old = torch.autograd.grad(old_out.sum(), x)[0]
        assert torch.equal(new_out, old_out) and torch.equal(g_new, g_old), cell


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    check_identical()
    work = setups()
    times = {(name, v): [] for name in work for v in ("indexed", "unbind")}
    for _ in range(args.rounds):
        for name, fn in work.items():
            for variant, forward in (("indexed", indexed_forward), ("unbind", NEW_FORWARD)):
                RecurrentLayer.forward = forward
                fn()  # warm-up for this variant
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    fn()
                times[(name, variant)].append((time.perf_counter() - t0) / args.steps)
    RecurrentLayer.forward = NEW_FORWARD
    print(f"# recurrent_step: {args.rounds} rounds x {args.steps} steps, fastest round; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread")
    print(f"{'work':44s} {'indexed ms':>10s} {'unbind ms':>10s} {'speed-up':>8s}")
    for name in work:
        old, new = min(times[(name, "indexed")]), min(times[(name, "unbind")])
        print(f"{name:44s} {1000 * old:10.2f} {1000 * new:10.2f} {old / new:7.2f}x")


if __name__ == "__main__":
    main()
