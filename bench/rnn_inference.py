"""Sparse RNN inference: exported (CSR where faster) vs the dense masked model, side by side.

For each hidden size, batch and sparsity: an Elman (tanh) layer is pruned by global magnitude,
then a 50-step sequence is run by (a) the masked dense model in eval mode and (b) its export.
Also measures this machine's memory bandwidth (a large array copy) in the same run and
reports the fraction of it that the exported recurrent product reaches.

    python bench/rnn_inference.py [--steps 50] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from sparsedyn.export import export
from sparsedyn.methods import MagnitudePruning
from sparsedyn.nn import RecurrentLayer


def bandwidth_gbs(mb: int = 512, repeats: int = 5) -> float:
    """Copy bandwidth (bytes read + written per second), best of ``repeats``."""
    a = np.ones(mb * 2**20 // 8)
    b = np.empty_like(a)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t0)
    return 2 * a.nbytes / best / 1e9


def best_time(fn, repeats: int) -> float:
    fn()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--hidden", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--sparsity", type=float, nargs="+", default=[0.9, 0.95, 0.98])
    args = p.parse_args()
    torch.manual_seed(0)
    bw = bandwidth_gbs()
    print(f"# rnn_inference: Elman tanh, input 64, {args.steps} steps, best of {args.repeats}; "
          f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"# memory bandwidth (copy, read+write): {bw:.1f} GB/s")
    print(f"{'hidden':>6s} {'batch':>5s} {'sparsity':>8s} {'dense ms':>9s} {'export ms':>9s} {'format':>6s} "
          f"{'speed-up':>8s} {'GB/s':>6s} {'of bw':>6s}")
    for H in args.hidden:
        for B in args.batch:
            x = torch.randn(args.steps, B, 64)
            for s in args.sparsity:
                layer = RecurrentLayer(64, H, "elman", "tanh")
                pruning = MagnitudePruning(sparsity=s, include="recurrent")
                pruning.prepare(layer)
                pruning.on_epoch_end(layer, 1)
                layer.eval()
                sparse = export(layer, "auto", batch=B)
                with torch.no_grad():
                    dense_t = best_time(lambda m=layer, x=x: m(x), args.repeats)
                    sparse_t = best_time(lambda m=sparse, x=x: m(x), args.repeats)
                    assert torch.allclose(layer(x)[0], sparse(x)[0], atol=1e-5)
                hh = sparse.hh
                per_step = (hh.nnz * 8 + (H + 1) * 4) if hh.format == "csr" else H * H * 4
                per_step += 2 * B * H * 4  # read h, write the product
                gbs = per_step * args.steps / sparse_t / 1e9
                print(f"{H:6d} {B:5d} {s:8.2f} {1e3 * dense_t:9.2f} {1e3 * sparse_t:9.2f} {hh.format:>6s} "
                      f"{dense_t / sparse_t:7.1f}x {gbs:6.2f} {gbs / bw:6.1%}")


if __name__ == "__main__":
    main()
