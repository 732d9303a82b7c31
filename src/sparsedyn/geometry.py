"""Manifolds for moduli regularization: sampling, pairwise distances, inhibitors, penalty matrices.

Hidden neuron ``j`` sits at a position ``p_j`` on a manifold; the moduli penalty weights
``|W_hh[j, k]|`` by ``R[j, k] = f(d(p_j, p_k))``. Distances are differentiable (trainable
positions) and every manifold can retract positions back onto itself after a step.

Manifolds: ``circle`` (radius 5), ``torus`` / ``torus:k`` (flat, side 10), ``klein`` (flat
Klein bottle, side 10, glide reflection ``(x, y) -> (x + L, L - y)``), ``sphere`` (S^2,
radius 5), ``s3`` (S^3, radius 5), ``euclidean:k`` (standard normal in R^k), ``none``
(``R = 1``: plain L1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

L_SIDE = 10.0
RADIUS = 5.0


@dataclass(frozen=True)
class Manifold:
    """A manifold by name and dimension; see the module docstring for the names."""

    kind: str
    dim: int

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.dim}" if self.kind in ("torus", "euclidean") else self.kind

    @property
    def coord_dim(self) -> int:
        """Size of a position vector (ambient coordinates for spheres)."""
        return {"circle": 1, "klein": 2, "sphere": 3, "s3": 4, "none": 1}.get(self.kind, self.dim)

    def sample(self, n: int, seed: int = 0) -> Tensor:
        """``n`` positions i.i.d. from the natural uniform measure (standard normal for euclidean)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        g = torch.Generator().manual_seed(seed)
        if self.kind == "circle":
            return torch.rand(n, 1, generator=g, dtype=torch.float64) * 2 * math.pi
        if self.kind in ("torus", "klein"):
            return torch.rand(n, self.coord_dim, generator=g, dtype=torch.float64) * L_SIDE
        if self.kind in ("sphere", "s3"):
            x = torch.randn(n, self.coord_dim, generator=g, dtype=torch.float64)
            return x / x.norm(dim=1, keepdim=True)
        if self.kind == "euclidean":
            return torch.randn(n, self.dim, generator=g, dtype=torch.float64)
        return torch.zeros(n, 1, dtype=torch.float64)  # none

    def distances(self, p: Tensor) -> Tensor:
        """Pairwise geodesic distance matrix ``(n, n)``; zero diagonal, differentiable in ``p``."""
        n = p.shape[0]
        off = 1.0 - torch.eye(n, dtype=p.dtype, device=p.device)
        if self.kind == "none":
            return torch.zeros(n, n, dtype=p.dtype, device=p.device)
        if self.kind == "circle":
            d = (p[:, None, 0] - p[None, :, 0]).abs() % (2 * math.pi)
            return RADIUS * torch.minimum(d, 2 * math.pi - d) * off
        if self.kind in ("sphere", "s3"):
            clip = 1.0 - (1e-12 if p.dtype == torch.float64 else 1e-6)  # finite arccos gradient
            cos = (p @ p.T).clamp(-clip, clip)
            return RADIUS * torch.arccos(cos) * off
        diff = p[:, None, :] - p[None, :, :]  # (n, n, k)
        if self.kind == "euclidean":
            return _norm(diff) * off
        if self.kind == "torus":
            a = diff.abs() % L_SIDE
            return _norm(torch.minimum(a, L_SIDE - a)) * off
        return _klein(p) * off

    def retract(self, p: Tensor) -> Tensor:
        """Map positions back onto the manifold (wrap angles / the square, renormalise spheres)."""
        if self.kind == "circle":
            return p % (2 * math.pi)
        if self.kind == "torus":
            return p % L_SIDE
        if self.kind == "klein":
            x, y = p[:, 0], p[:, 1]
            odd = torch.floor(x / L_SIDE) % 2 == 1  # crossing x = L once applies the glide reflection
            y = torch.where(odd, L_SIDE - y, y)
            return torch.stack([x % L_SIDE, y % L_SIDE], dim=1)
        if self.kind in ("sphere", "s3"):
            return p / p.norm(dim=1, keepdim=True)
        return p


def _norm(v: Tensor) -> Tensor:
    return (v * v).sum(-1).clamp_min(1e-24).sqrt()


def _klein(p: Tensor) -> Tensor:
    """Flat Klein bottle: the minimum over lattice images, including the glide reflection."""
    x, y = p[:, 0], p[:, 1]
    best = None
    for shift, flip in ((0.0, False), (L_SIDE, True), (-L_SIDE, True)):
        qx = x[None, :] + shift
        qy = (L_SIDE - y if flip else y)[None, :]
        for k in (-1.0, 0.0, 1.0):
            d = _norm(torch.stack([x[:, None] - qx, y[:, None] - (qy + k * L_SIDE)], dim=-1))
            best = d if best is None else torch.minimum(best, d)
    assert best is not None
    return best


def parse_manifold(name: str) -> Manifold:
    """``circle``, ``torus``, ``torus:6``, ``klein``, ``sphere``, ``s3``, ``euclidean:3``, ``none``."""
    kind, _, dim = str(name).partition(":")
    if kind not in ("circle", "torus", "klein", "sphere", "s3", "euclidean", "none"):
        raise ValueError(f"unknown manifold {name!r}; choose from circle, torus[:k], klein, sphere, s3, "
                         "euclidean[:k], none")
    if dim and kind not in ("torus", "euclidean"):
        raise ValueError(f"manifold {kind!r} takes no dimension, got {name!r}")
    try:
        k = int(dim) if dim else {"torus": 2, "euclidean": 2, "sphere": 2, "s3": 3, "klein": 2}.get(kind, 1)
    except ValueError:
        raise ValueError(f"manifold dimension must be an integer, got {name!r}") from None
    if k < 1:
        raise ValueError(f"manifold dimension must be >= 1, got {name!r}")
    return Manifold(kind, k)


# -- inhibitors ---------------------------------------------------------------------------------

def _dog(d: Tensor) -> Tensor:
    return 100.0 * (torch.exp(-d**2 / 5.0) - torch.exp(-4.0 * d**2))


_D_STAR = math.sqrt(5.0 * math.log(20.0) / 19.0)  # argmax of the difference of Gaussians
DOG_MAX = float(_dog(torch.tensor(_D_STAR, dtype=torch.float64)))

INHIBITORS = {
    # inverted difference of Gaussians: R = max(g) - g (max over d >= 0, analytic)
    "dog": lambda d: DOG_MAX - _dog(d),
    "diffusion": lambda d: d**2,
    "ripple": lambda d: 50.0 + 50.0 * torch.cos(2.0 * d),
    "gauss": lambda d: 100.0 * torch.exp(-d**2 / 3.0),
}


def inhibitor(name: str):
    try:
        return INHIBITORS[name]
    except KeyError:
        raise ValueError(f"unknown inhibitor {name!r}; choose from {sorted(INHIBITORS)}") from None


def penalty_matrix(manifold: str | Manifold, n: int, inhibitor_name: str = "dog", seed: int = 0,
                   permuted: bool = False, scale_matched: bool = False) -> Tensor:
    """``R[j, k] = f(d(p_j, p_k))`` for ``n`` positions sampled with ``seed``.

    ``permuted`` shuffles the entries (same values, no geometry; fixed seed); ``scale_matched``
    replaces every entry by ``mean(R)`` (an L1 penalty of the same overall strength).
    """
    m = parse_manifold(manifold) if isinstance(manifold, str) else manifold
    if m.kind == "none":
        R = torch.ones(n, n, dtype=torch.float64)
    else:
        R = inhibitor(inhibitor_name)(m.distances(m.sample(n, seed)))
    if permuted:
        g = torch.Generator().manual_seed(seed + 1_000_003)
        R = R.flatten()[torch.randperm(R.numel(), generator=g)].view(n, n)
    if scale_matched:
        R = torch.full_like(R, float(R.mean()))
    return R.float()


class ManifoldEmbedding(nn.Module):
    """Trainable positions on a manifold; ``matrix()`` rebuilds ``R`` from them (differentiably)."""

    def __init__(self, manifold: str | Manifold, n: int, inhibitor_name: str = "dog", seed: int = 0) -> None:
        super().__init__()
        self.manifold = parse_manifold(manifold) if isinstance(manifold, str) else manifold
        if self.manifold.kind == "none":
            raise ValueError("a trainable embedding needs a manifold other than 'none'")
        self.inhibitor_name = inhibitor_name
        inhibitor(inhibitor_name)
        self.positions = nn.Parameter(self.manifold.sample(n, seed).float())

    def matrix(self) -> Tensor:
        return inhibitor(self.inhibitor_name)(self.manifold.distances(self.positions))

    @torch.no_grad()
    def retract(self) -> None:
        self.positions.copy_(self.manifold.retract(self.positions))
