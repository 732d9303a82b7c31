"""The library's small-NODE training step against anchors, interleaved in one process (issue 23).

One training step = forecast a batch of trajectories with rk4 on a fixed grid, MSE loss, backward, Adam.
Rows, all on the same field (MLP 10 -> 64 -> 64 -> 10, tanh), data (32 trajectories x 30 points of the
10-variable sparse tanh system, rk4 step 0.1 on [0, 3]) and thread count:

* ``sparsedyn``: the library's own step (the task's loss, the trainer's optimizer), fixed-grid loop on (its rk4
  solve in the native C kernel, ``sparsedyn.nn.native``, when it could be built);
* ``sparsedyn, no kernel``: the same with ``model.native_solve = False`` (the PyTorch fused solve);
* ``sparsedyn, odeint``: the same with ``model.fixed_grid_loop = False`` (torchdiffeq's odeint inside);
* ``torchdiffeq direct``: ``odeint`` called on the bare field with a plain MSE and Adam: the anchor;
* ``diffrax (jit)``: the same step in JAX/diffrax under ``jax.jit``, when jax and diffrax are installed
  (the optional ``bench`` extra); skipped with a message otherwise.

Then the stacked step (the trainer's lockstep epoch, ``bench/stacked_training.py``'s systems model) at
M = 81 members in GFLOP/s against a measured single-core matmul peak. Rounds alternate the rows; the
fastest round per row is kept (timing noise only adds time); ratios are of those.

    python bench/node_step_anchors.py [--rounds 7] [--steps 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from torchdiffeq import odeint

from sparsedyn.config import parse_config
from sparsedyn.runner import build_experiment
from sparsedyn.train import Trainer, TrainSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))  # stacked_training, beside this file

N, HIDDEN, BATCH, POINTS, T_END, DT = 10, (64, 64), 32, 30, 3.0, 0.1


def library_step(loop: bool, native: bool = True):
    cfg = parse_config({
        "seed": 0, "methods": [],
        "task": {"system": "sparse_tanh", "system_params": {"n": N, "parents": 2}, "n_train": BATCH,
                 "t_end": T_END, "n_points": POINTS},
        "model": {"hidden": list(HIDDEN), "solver": "rk4", "step_size": DT, "fixed_grid_loop": loop,
                  "native_solve": native},
    })
    exp = build_experiment(cfg)
    trainer = Trainer(exp.model, exp.method, exp.task, TrainSettings(lr=1e-3, progress=False))
    batch = exp.task.splits["train"]

    def step() -> None:
        loss = exp.task.loss(exp.model, batch) + exp.method.penalty(exp.model)
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()

    return step, exp, batch


def torchdiffeq_step(exp, batch):
    field = exp.model.field
    optimizer = torch.optim.Adam(field.parameters(), lr=1e-3)
    x0, t, target = batch.y[:, 0], batch.t, batch.y.transpose(0, 1)

    def step() -> None:
        pred = odeint(lambda s, y: field(y), x0, t, method="rk4", options={"step_size": DT})
        loss = ((pred - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def diffrax_step(exp, batch):
    """The same step in JAX/diffrax under jit, or None (with the reason) when they are not installed."""
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
        import optax
    except ImportError as e:
        return None, f"diffrax row skipped: {e.name} is not installed (pip install -e '.[bench]')"
    jax.config.update("jax_platform_name", "cpu")
    params = [(jnp.asarray(m.weight.detach().numpy()), jnp.asarray(m.bias.detach().numpy()))
              for m in exp.model.field.layers]
    x0 = jnp.asarray(batch.y[:, 0].numpy())
    ts = jnp.asarray(batch.t.numpy())
    target = jnp.asarray(batch.y.numpy())

    def field(t, y, p):
        for i, (w, b) in enumerate(p):
            y = y @ w.T + b
            if i < len(p) - 1:
                y = jnp.tanh(y)
        return y

    def loss(p):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(field), _rk4_diffrax(), t0=ts[0], t1=ts[-1], dt0=DT, y0=x0,
                                  args=p, saveat=diffrax.SaveAt(ts=ts), max_steps=4096)
        return jnp.mean((jnp.transpose(sol.ys, (1, 0, 2)) - target) ** 2)

    opt = optax.adam(1e-3)
    state = [params, opt.init(params)]

    @jax.jit
    def update(p, s):
        value, grads = jax.value_and_grad(loss)(p)
        updates, s = opt.update(grads, s)
        return optax.apply_updates(p, updates), s, value

    def step() -> None:
        p, s, value = update(*state)
        value.block_until_ready()
        state[:] = [p, s]

    with torch.no_grad():  # the same problem: the initial losses agree
        field_t = exp.model.field
        ref = odeint(lambda s, y: field_t(y), batch.y[:, 0], batch.t, method="rk4", options={"step_size": DT})
        torch_loss = float(((ref.transpose(0, 1) - batch.y) ** 2).mean())
    jax_loss = float(loss(params))
    return step, f"diffrax vs torch, loss at the initial parameters: {jax_loss:.6g} vs {torch_loss:.6g}"


def _rk4_diffrax():
    """diffrax's solver for the 3/8-rule RK4 that torchdiffeq's "rk4" runs (diffrax ships none)."""
    import diffrax
    import numpy as np

    rk4_tableau = diffrax.ButcherTableau(
        c=np.array([1 / 3, 2 / 3, 1.0]), b_sol=np.array([1 / 8, 3 / 8, 3 / 8, 1 / 8]), b_error=np.zeros(4),
        a_lower=(np.array([1 / 3]), np.array([-1 / 3, 1.0]), np.array([1.0, -1.0, 1.0])))

    class RK4(diffrax.AbstractERK):
        tableau = rk4_tableau  # no annotations: class attributes, not (hashed) dataclass fields
        interpolation_cls = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

        def order(self, terms):
            return 4

    return RK4()


def step_flop() -> float:
    """FLOP of one step: rk4 = 4 field evaluations per grid step; a linear layer's forward is 2 x in x out
    per sample, its backward twice that (tanh, bias and the solver's vector updates are not counted)."""
    sizes = [N, *HIDDEN, N]
    macs = sum(a * b for a, b in zip(sizes, sizes[1:]))
    evaluations = 4 * round(T_END / DT)
    return 3 * 2 * macs * BATCH * evaluations


def matmul_peak(threads: int) -> float:
    """GFLOP/s of a 1024 x 1024 float32 matmul, best of 10, at the run's thread count."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    best = min(_timed(lambda: a @ b) for _ in range(10))
    return 2 * 1024**3 / best / 1e9


def _timed(fn, repeat: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def stacked_gflops(members: int, rounds: int, native: bool = True) -> tuple[float, float]:
    """(GFLOP/s, ms per stacked step) of the trainer's lockstep epoch at ``members``
    (bench/stacked_training.py's systems model: LV n=5, MLP 16-16, rk4 on the 20-point grid, batch 8)."""
    import stacked_training as st
    from sparsedyn.flat_adam import FlatAdam
    from sparsedyn.train_stacked import _joint_epoch

    trainers = st.trainers(st.SYSTEMS, [], members)
    for t in trainers:
        t.model.native_solve = native
    steps = st.steps(trainers[0])
    batch = trainers[0].s.batch_size
    sizes = [5, 16, 16, 5]
    macs = sum(a * b for a, b in zip(sizes, sizes[1:]))
    flop = 3 * 2 * macs * batch * 4 * 19 * members * steps  # 19 rk4 steps between the 20 points
    flat = FlatAdam()  # the joint Adam step on flat buffers, as train_stacked runs it
    _joint_epoch(trainers, 1, flat)
    best = min(_timed(lambda: _joint_epoch(trainers, 1, flat)) for _ in range(rounds))
    flat.release()
    return flop / best / 1e9, 1000 * best / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--members", type=int, default=81)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ours, exp, batch = library_step(True)
    rows = {"sparsedyn": ours, "sparsedyn, no kernel": library_step(True, native=False)[0],
            "sparsedyn, odeint": library_step(False)[0],
            "torchdiffeq direct": torchdiffeq_step(exp, batch)}
    jax_step, note = diffrax_step(exp, batch)
    if jax_step is not None:
        rows["diffrax (jit)"] = jax_step
    for fn in rows.values():  # warm-up (and jit compile)
        for _ in range(3):
            fn()
    times = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, fn in rows.items():
            times[name].append(_timed(fn, args.steps))
    best = {name: min(ts) for name, ts in times.items()}
    peak = matmul_peak(args.threads)
    flop = step_flop()
    print(f"# node_step_anchors: MLP {N}-{'-'.join(map(str, HIDDEN))}-{N} tanh, {BATCH} x {POINTS} points, rk4 "
          f"dt={DT}; {args.rounds} rounds x {args.steps} steps; {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {args.threads} thread(s); matmul peak {peak:.1f} GFLOP/s")
    anchor = best["torchdiffeq direct"]
    print(f"{'row':22s} {'ms/step':>8s} {'/ torchdiffeq':>14s} {'GFLOP/s':>8s} {'% of peak':>9s}")
    for name, t in best.items():
        gflops = flop / t / 1e9
        print(f"{name:22s} {1000 * t:8.2f} {t / anchor:14.2f} {gflops:8.2f} {100 * gflops / peak:8.1f}%")
    if note:
        print(note)
    print(f"target: sparsedyn <= 0.8x torchdiffeq direct: {'met' if best['sparsedyn'] <= 0.8 * anchor else 'NOT met'}")
    print(f"target: sparsedyn <= 1.0x diffrax (jit): "
          f"{'met' if best['sparsedyn'] <= best.get('diffrax (jit)', 0.0) else 'NOT met (or no diffrax row)'}")
    if args.members:
        for native, label in ((False, "no kernel"), (True, "")):
            gflops, ms = stacked_gflops(args.members, max(15, 2 * args.rounds), native)  # an epoch is ~60 ms
            print(f"stacked step, M = {args.members}{', ' + label if label else ''}: {ms:.1f} ms per step, "
                  f"{gflops:.2f} GFLOP/s = {100 * gflops / peak:.1f}% of the single-core peak (target >= 10%)")


if __name__ == "__main__":
    main()
