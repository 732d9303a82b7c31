"""Hier-Prox (Lemhadri et al. 2021, Alg. 2), the proximal operator of LassoNet, as a pure function."""

from __future__ import annotations

import torch
from torch import Tensor


def hier_prox(skip: Tensor, first: Tensor, lam: float | Tensor, M: float) -> tuple[Tensor, Tensor]:
    """Solve, for every input feature ``k`` independently,

        min_{b, W}  1/2 ||v - b||^2 + 1/2 ||u - W||^2 + lam ||b||_2
        s.t.        ||W||_inf <= M ||b||_2

    with ``v = skip[:, k]`` and ``u = first[:, k]``.

    Args:
        skip: ``S``, shape ``(n_out, n_in)``.
        first: the first hidden layer's weight ``W1``, shape ``(hidden, n_in)``.
        lam: threshold (step size times the penalty weight), ``>= 0``: a number, or one per feature ``(n_in,)``.
        M: hierarchy constant, ``>= 0``; ``M = 0`` is a group lasso on ``S`` with ``W1 = 0``.

    Returns:
        The new ``(S, W1)``; a feature whose new skip column is zero has a zero ``W1`` column.
    """
    if skip.dim() != 2 or first.dim() != 2 or skip.shape[1] != first.shape[1]:
        raise ValueError(
            f"skip (n_out, n_in) and first (hidden, n_in) must share n_in; got {tuple(skip.shape)} "
            f"and {tuple(first.shape)}"
        )
    lam = torch.as_tensor(lam, dtype=skip.dtype, device=skip.device)
    if not bool((lam >= 0).all()) or not M >= 0:
        raise ValueError(f"lam and M must be >= 0, got lam={lam}, M={M}")
    K = first.shape[0]
    # ||v|| via the column scaled by its largest entry: squaring a tiny (subnormal-range) entry loses
    # precision (hypothesis found ||[4.7e-161, 0]|| off by 3e-4), which broke the hierarchy
    peak = skip.abs().amax(dim=0)  # (n_in,)
    unit = skip / torch.where(peak > 0, peak, 1.0)[None]
    v_norm = peak * unit.norm(dim=0)  # (n_in,)
    u_abs = first.abs()
    u_sorted = torch.sort(u_abs, dim=0, descending=True).values  # (K, n_in)
    zeros = torch.zeros_like(v_norm)[None]
    cum = torch.cat([zeros, torch.cumsum(u_sorted, dim=0)], dim=0)  # (K+1, n_in): sum_{i<=m}
    m = torch.arange(K + 1, dtype=skip.dtype, device=skip.device)[:, None]
    # ||b||_2 candidate for each m; w_m = M * b_norm_m (this form stays finite at M = 0).
    b_norm = torch.clamp(v_norm + M * cum - lam, min=0.0) / (1.0 + m * M * M)
    w = M * b_norm
    inf = torch.full_like(zeros, float("inf"))
    upper = torch.cat([inf, u_sorted], dim=0)  # |u_(m)|, |u_(0)| = inf
    lower = torch.cat([u_sorted, zeros], dim=0)  # |u_(m+1)|, |u_(K+1)| = 0
    tol = 1e-12 + 1e-9 * lower  # lower is always finite
    valid = (lower <= w + tol) & (w <= upper + tol)
    first_valid = torch.argmax(valid.to(torch.int8), dim=0)  # first True per column
    idx = first_valid[None]
    b_star = b_norm.gather(0, idx)[0]
    w_star = w.gather(0, idx)[0]
    # b points along v; where v = 0 every direction is optimal and the first axis is taken (dividing
    # by ||v|| would give b = 0 beside a nonzero W1, which breaks the hierarchy)
    axis = torch.zeros_like(skip)
    axis[0] = 1.0
    nonzero = peak[None] > 0
    unit_norm = unit.norm(dim=0)[None]
    direction = torch.where(nonzero, unit / torch.where(nonzero, unit_norm, 1.0), axis)
    new_skip = direction * b_star
    new_first = torch.sign(first) * torch.minimum(u_abs, w_star[None].expand_as(u_abs))
    return new_skip, new_first
