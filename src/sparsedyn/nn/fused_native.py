"""The fused rk4 solve of :mod:`~sparsedyn.nn.fused_rk4` with its inner loops in C (:mod:`~sparsedyn.nn.native`).

Same autograd contract as :class:`~sparsedyn.nn.fused_rk4._FusedRK4`: the solve is one node, weights enter as
tensors (a gated layer's effective weight), the adjoint of the 3/8-rule step is the one written out there. The
C kernel runs every grid step and field evaluation of the forward in one call and the whole adjoint pass in
another; what stays in PyTorch is the output interpolation and its adjoint (a few indexed operations).

Numbers: equal to the PyTorch path to float rounding (matrix products summed in another order; float32 tanh by
a rational approximation within a few ulp), not bit for bit. Within the kernel a stacked member's numbers are
computed by the same loops whatever the member count or batch size, so a member's bits do not depend on what it
is stacked with (tests).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import Tensor

from . import native

MAX_LAYERS = 16
_DTYPES = {torch.float32: "f32", torch.float64: "f64"}


MULTITHREAD_FROM_MACS = 4_000_000
"""Multiply-adds per member and field evaluation from which, with more than one torch thread, the PyTorch solve
is used: the kernel runs on one core, and MKL's threaded products win on large layers (2 threads, this project's
CPU, a solve with its backward: 200 variables, 256-256, 64 rows 87.5 ms native against 79.8 ms; 529 variables,
64-64, 32 rows 27.9 against 33.3 ms; with one thread the kernel was faster in every case measured)."""


def applies(y0: Tensor, params: Sequence[Tensor], members: int = 1) -> bool:
    """Whether the native kernel takes this solve: non-empty CPU tensors of float32 or float64, at most 16
    layers, one torch thread or a small field (:data:`MULTITHREAD_FROM_MACS`), and the kernel built (on first use)
    and not switched off."""
    if y0.device.type != "cpu" or y0.dtype not in _DTYPES or len(params) // 2 > MAX_LAYERS or y0.numel() == 0:
        return False
    if any(p.device.type != "cpu" or p.dtype != y0.dtype for p in params):
        return False
    if torch.get_num_threads() > 1:
        rows = y0.numel() // y0.shape[-1] // members
        if rows * sum(w.numel() for w in params) // members >= MULTITHREAD_FROM_MACS:  # biases too: a few %
            return False
    return native.kernel() is not None


@lru_cache(maxsize=64)
def _output_map(outputs: tuple[tuple, ...]) -> dict[str, Tensor]:
    """Index tensors for the plan's outputs: at a step's end (``after``), at its start (``before``) and
    interpolated between (``interp``, with its slopes)."""
    after: list[tuple[int, int]] = []
    before: list[tuple[int, int]] = []
    interp: list[tuple[int, int, float]] = []
    for step, out in enumerate(outputs):
        for j, slope in out:
            if slope is None:
                after.append((j, step))
            elif slope == 0.0:
                before.append((j, step))
            else:
                interp.append((j, step, slope))

    def col(rows: list, k: int, dtype=torch.long) -> Tensor:
        return torch.tensor([r[k] for r in rows], dtype=dtype)

    return {"after_j": col(after, 0), "after_s": col(after, 1), "before_j": col(before, 0),
            "before_s": col(before, 1), "interp_j": col(interp, 0), "interp_s": col(interp, 1),
            "slope": col(interp, 2, torch.float64)}


def _pointers(tensors: list[Tensor]) -> ctypes.Array:
    return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class _NativeRK4(torch.autograd.Function):
    @staticmethod
    def forward(ctx, plan, keep, layout, y0, *params):
        lib = native.kernel()
        steps, outputs = plan
        sfx = _DTYPES[y0.dtype]
        m, groups, has_skip, second_order = layout
        n, layers = y0.shape[-1], len(groups)
        y = y0.detach().reshape(m, -1, n).contiguous()
        batch = y.shape[1]
        weights = [p.detach().contiguous() for p in params[:2 * layers:2]]
        biases = [p.detach().contiguous() for p in params[1:2 * layers:2]]
        skip = params[-1].detach().contiguous() if has_skip else None
        dims = [n] + [w.numel() // m // w.shape[-1] for w in weights]  # a layer's outputs, all its groups'
        c_dims = (ctypes.c_int * len(dims))(*dims)
        c_groups = (ctypes.c_int * len(groups))(*groups)
        dt = torch.tensor(steps, dtype=torch.float64)
        k = None if keep is None else keep.detach().to(y0.dtype).contiguous()
        s = len(steps)
        grid = y.new_empty(s + 1, m, batch, n)
        stages = y.new_empty(m, 4 * s, batch, n)  # member-major (see the layout in fused_rk4.c)
        hidden = y.new_empty(m, 4 * s * batch * sum(dims[1:-1]))
        rc = getattr(lib, f"rk4_forward_{sfx}")(m, batch, len(weights), c_dims, c_groups, _pointers(weights),
                                                _pointers(biases), _ptr(skip), _ptr(k), int(second_order), s,
                                                dt.data_ptr(), y.data_ptr(), grid.data_ptr(),
                                                stages.data_ptr(), hidden.data_ptr())
        if rc != 0:
            raise RuntimeError(f"native rk4 forward failed (code {rc})")
        idx = _output_map(outputs)
        solution = y.new_empty(1 + sum(len(o) for o in outputs), m, batch, n)
        solution[0] = y
        solution[idx["after_j"]] = grid[idx["after_s"] + 1]
        solution[idx["before_j"]] = grid[idx["before_s"]]
        if len(idx["interp_j"]):
            lo, hi = grid[idx["interp_s"]], grid[idx["interp_s"] + 1]
            slope = idx["slope"].to(y.dtype).view(-1, 1, 1, 1)
            solution[idx["interp_j"]] = lo + slope * (hi - lo)
        ctx.plan = plan
        ctx.saved = (k, weights, biases, skip, c_dims, c_groups, int(second_order), dt, stages, hidden, m, batch, sfx)
        return solution.view(solution.shape[0], *y0.shape)

    @staticmethod
    def backward(ctx, grad_out):
        lib = native.kernel()
        k, weights, biases, skip, c_dims, c_groups, so, dt, stages, hidden, m, batch, sfx = ctx.saved
        steps, outputs = ctx.plan
        s, n = len(steps), c_dims[0]
        g = grad_out.reshape(grad_out.shape[0], m, batch, n)
        idx = _output_map(outputs)
        after = g.new_zeros(s, m, batch, n)
        after.index_add_(0, idx["after_s"], g[idx["after_j"]])
        before = None
        if len(idx["before_j"]) or len(idx["interp_j"]):
            before = g.new_zeros(s, m, batch, n)
            before.index_add_(0, idx["before_s"], g[idx["before_j"]])
        if len(idx["interp_j"]):
            slope = idx["slope"].to(g.dtype).view(-1, 1, 1, 1)
            gi = g[idx["interp_j"]]
            after.index_add_(0, idx["interp_s"], gi * slope)
            before.index_add_(0, idx["interp_s"], gi * (1 - slope))
        a = g.new_zeros(m, batch, n)
        grads_w = [torch.empty_like(w) for w in weights]  # the kernel writes every element
        grads_b = [torch.empty_like(b) for b in biases]
        grad_skip = None if skip is None else torch.empty_like(skip)
        rc = getattr(lib, f"rk4_backward_{sfx}")(m, batch, len(weights), c_dims, c_groups, _pointers(weights),
                                                 _pointers(biases), _ptr(skip), _ptr(k), so, s, dt.data_ptr(),
                                                 stages.data_ptr(), hidden.data_ptr(),
                                                 after.data_ptr(), _ptr(before), a.data_ptr(), _pointers(grads_w),
                                                 _pointers(grads_b), _ptr(grad_skip))
        if rc != 0:
            raise RuntimeError(f"native rk4 backward failed (code {rc})")
        a = a + g[0]
        grads = [t for pair in zip(grads_w, grads_b) for t in pair] + ([] if grad_skip is None else [grad_skip])
        return (None, None, None, a.view(grad_out.shape[1:]), *grads)


def native_rk4(plan, keep: Tensor | None, y0: Tensor, params: Sequence[Tensor], members: int = 1,
               groups: tuple[int, ...] | None = None, skip: bool = False, second_order: bool = False) -> Tensor:
    """The solve for :func:`~sparsedyn.nn.fused_rk4.fused_rk4_solve` / ``fused_rk4_stacked`` (call
    :func:`applies` first): ``(T, *y0.shape)``. ``params``: each layer's weight and bias, then with ``skip`` a
    bias-free skip weight added to the field (inner LassoNet). ``groups``: per layer, 1 for a dense layer or the
    number of blocks of a block-diagonal one (a GroupedMLP's later layers); all 1 by default. ``second_order``:
    ``y0`` is a SONODE's state ``[x, v]`` (the field maps ``2n -> n``) and its derivative ``[v, keep * f]``."""
    layers = (len(params) - int(skip)) // 2
    layout = (members, tuple(groups) if groups is not None else (1,) * layers, skip, second_order)
    return _NativeRK4.apply(plan, keep, layout, y0, *params)
