"""Synthetic dynamical systems with a known dependency graph.

Each system gives its true vector field ``f``, its true adjacency (``G[i, j] = 1`` iff
``x_j`` enters ``dx_i/dt``; for second-order systems the rows are accelerations and the
columns ``[positions, velocities]``), an initial-condition sampler with an optional shift
(out-of-distribution), and a seeded trajectory generator with interventions ``do(x_k = c)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
from scipy.integrate import solve_ivp

Intervention = Mapping[int, float]


class DynamicalSystem:
    """Base class. Subclasses set ``n`` (state size), ``adjacency`` and implement ``f`` and ``_x0``."""

    name: ClassVar[str] = "system"
    second_order: ClassVar[bool] = False
    n: int
    adjacency: np.ndarray

    def f(self, x: np.ndarray) -> np.ndarray:
        """The true vector field on a batch of states ``(B, n) -> (B, n)``."""
        raise NotImplementedError

    def _x0(self, rng: np.random.Generator, k: int) -> np.ndarray:
        raise NotImplementedError

    @property
    def observed(self) -> np.ndarray:
        """Indices of the observed state variables (positions only for second-order systems)."""
        return np.arange(self.n // 2 if self.second_order else self.n)

    def sample_x0(self, rng: np.random.Generator, k: int, shift: float = 0.0) -> np.ndarray:
        """``k`` initial states; ``shift`` moves the distribution (out-of-distribution tests)."""
        return self._x0(rng, k) + shift * self.shift_direction()

    def shift_direction(self) -> np.ndarray:
        return np.ones(self.n)

    def intervened_indices(self, intervention: Intervention) -> list[int]:
        """State indices held fixed by ``do(x_k = c)`` (a position and its velocity for 2nd order)."""
        n_obs = self.n // 2 if self.second_order else self.n
        idx = []
        for k in intervention:
            if not 0 <= int(k) < n_obs:
                raise ValueError(f"intervention on variable {k}, but the system has {n_obs} variables")
            idx.append(int(k))
            if self.second_order:
                idx.append(int(k) + n_obs)
        return idx

    def simulate(
        self, x0: np.ndarray, t: np.ndarray, intervention: Intervention | None = None,
        rtol: float = 1e-8, atol: float = 1e-8,
    ) -> np.ndarray:
        """Integrate from ``x0`` (B, n) and return states at ``t``, shape (B, T, n)."""
        x0 = np.array(x0, dtype=np.float64, ndmin=2)
        if x0.shape[1] != self.n:
            raise ValueError(f"x0 must have shape (B, {self.n}), got {x0.shape}")
        held: list[int] = []
        if intervention:
            held = self.intervened_indices(intervention)
            for k, c in intervention.items():
                x0[:, int(k)] = c
                if self.second_order:
                    x0[:, int(k) + self.n // 2] = 0.0
        B = x0.shape[0]

        def rhs(_, flat):
            dx = self.f(flat.reshape(B, self.n))
            if held:
                dx[:, held] = 0.0
            return dx.ravel()

        sol = solve_ivp(rhs, (float(t[0]), float(t[-1])), x0.ravel(), t_eval=t, rtol=rtol, atol=atol,
                        method="LSODA")
        if not sol.success:
            raise RuntimeError(f"{self.name}: integration failed: {sol.message}")
        return sol.y.reshape(B, self.n, len(t)).transpose(0, 2, 1)


def _check_positive_int(name: str, v: int, minimum: int = 1) -> int:
    if int(v) != v or int(v) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v}")
    return int(v)


def _check_fraction(name: str, v: float) -> float:
    if not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {v}")
    return float(v)


class SparseLinear(DynamicalSystem):
    """``dx/dt = A x`` with a random sparse, diagonally dominant (hence stable) ``A``."""

    name = "sparse_linear"

    def __init__(self, n: int = 10, density: float = 0.2, seed: int = 0) -> None:
        self.n = _check_positive_int("n", n, 2)
        density = _check_fraction("density", density)
        rng = np.random.default_rng(seed)
        off = (rng.random((self.n, self.n)) < density) * rng.uniform(0.5, 1.5, (self.n, self.n))
        off *= rng.choice([-1.0, 1.0], (self.n, self.n))
        np.fill_diagonal(off, 0.0)
        self.A = off - np.diag(np.abs(off).sum(1) + 0.5)
        self.adjacency = self.A != 0

    def f(self, x: np.ndarray) -> np.ndarray:
        return x @ self.A.T

    def _x0(self, rng, k):
        return rng.normal(0.0, 1.0, (k, self.n))


class LotkaVolterra(DynamicalSystem):
    """Generalised Lotka-Volterra ``dx_i/dt = x_i (r_i + sum_j a_ij x_j)``, sparse ``a``.

    ``a_ii = -1`` (self-limitation); off-diagonal interactions are scaled so that each row's
    absolute sum is at most 0.5, which keeps trajectories bounded.
    """

    name = "lotka_volterra"

    def __init__(self, n: int = 5, density: float = 0.3, seed: int = 0) -> None:
        self.n = _check_positive_int("n", n, 2)
        density = _check_fraction("density", density)
        rng = np.random.default_rng(seed)
        off = (rng.random((self.n, self.n)) < density) * rng.uniform(-1.0, 1.0, (self.n, self.n))
        np.fill_diagonal(off, 0.0)
        row = np.abs(off).sum(1, keepdims=True)
        off = np.where(row > 0.5, off * 0.5 / np.maximum(row, 1e-12), off)
        self.a = off - np.eye(self.n)
        self.r = rng.uniform(0.5, 1.5, self.n)
        self.adjacency = self.a != 0

    def f(self, x: np.ndarray) -> np.ndarray:
        return x * (self.r + x @ self.a.T)

    def _x0(self, rng, k):
        return rng.uniform(0.2, 1.5, (k, self.n))


class Lorenz96(DynamicalSystem):
    """``dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F`` (indices cyclic)."""

    name = "lorenz96"

    def __init__(self, n: int = 10, F: float = 8.0) -> None:
        self.n = _check_positive_int("n", n, 4)
        self.F = float(F)
        G = np.zeros((self.n, self.n), dtype=bool)
        for i in range(self.n):
            for d in (-2, -1, 0, 1):
                G[i, (i + d) % self.n] = True
        self.adjacency = G

    def f(self, x: np.ndarray) -> np.ndarray:
        return (np.roll(x, -1, 1) - np.roll(x, 2, 1)) * np.roll(x, 1, 1) - x + self.F

    def _x0(self, rng, k):
        return rng.normal(0.0, 2.0, (k, self.n))


class SparseTanh(DynamicalSystem):
    """``dx_i/dt = -x_i + sum_{j in pa(i)} a_ij tanh(x_j)`` with ``parents`` random parents each."""

    name = "sparse_tanh"

    def __init__(self, n: int = 10, parents: int = 2, seed: int = 0) -> None:
        self.n = _check_positive_int("n", n, 2)
        parents = _check_positive_int("parents", parents, 1)
        if parents >= self.n:
            raise ValueError(f"parents must be < n ({self.n}), got {parents}")
        rng = np.random.default_rng(seed)
        W = np.zeros((self.n, self.n))
        for i in range(self.n):
            others = [j for j in range(self.n) if j != i]
            for j in rng.choice(others, parents, replace=False):
                W[i, j] = rng.choice([-1.0, 1.0]) * rng.uniform(1.0, 2.0)
        self.W = W
        self.adjacency = (W != 0) | np.eye(self.n, dtype=bool)

    def f(self, x: np.ndarray) -> np.ndarray:
        return -x + np.tanh(x) @ self.W.T

    def _x0(self, rng, k):
        return rng.normal(0.0, 1.5, (k, self.n))


class CoupledOscillators(DynamicalSystem):
    """The damped coupled second-order system of the [NODE] prototype (state ``[X0..X2, V0..V2]``).

    ``X0'' = -1.5 X0 - 0.5 V0``, ``X1'' = -2.7 X1 - V1``, ``X2'' = -2 X2 - V0 - V1 - 0.1 V2``.
    Initial positions are spread around ``y0``; initial velocities are ``y0``'s (a function of
    nothing, so a SONODE's initial-velocity network can learn them). With
    ``observe_velocities=True`` the whole state is observed (for a first-order NODE) and the
    adjacency is the first-order one over ``[X, V]``.
    """

    name = "oscillators"
    second_order = True
    Y0: ClassVar[np.ndarray] = np.array([0.4, 0.7, 1.8, 0.3, 0.5, 1.0])

    def __init__(self, spread: float = 0.3, observe_velocities: bool = False) -> None:
        self.n = 6
        self.spread = float(spread)
        if self.spread < 0:
            raise ValueError(f"spread must be >= 0, got {spread}")
        self.observe_velocities = bool(observe_velocities)
        self.K = np.array([
            [-1.5, 0.0, 0.0, -0.5, 0.0, 0.0],
            [0.0, -2.7, 0.0, 0.0, -1.0, 0.0],
            [0.0, 0.0, -2.0, -1.0, -1.0, -0.1],
        ])
        accel = self.K != 0  # (3 accelerations, 6 = [X, V])
        if self.observe_velocities:
            self.adjacency = np.vstack([np.hstack([np.zeros((3, 3), bool), np.eye(3, dtype=bool)]), accel])
        else:
            self.adjacency = accel

    @property
    def observed(self) -> np.ndarray:
        return np.arange(6) if self.observe_velocities else np.arange(3)

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([x[:, 3:], x @ self.K.T], axis=1)

    def _x0(self, rng, k):
        x0 = np.tile(self.Y0, (k, 1))
        x0[:, :3] += self.spread * rng.normal(size=(k, 3))
        return x0

    def shift_direction(self) -> np.ndarray:
        return np.r_[np.ones(3), np.zeros(3)]


def _coupled_graph(size: str, n: int, parents: int, strength: str, value: float,
                   rng: np.random.Generator) -> tuple[int, np.ndarray, float]:
    """Checked ``(n, A, value)`` of a coupled network: ``n`` nodes (named ``size``), each with ``parents``
    distinct random parents other than itself (``A`` 0/1, (n, n)), a coupling ``strength`` > 0."""
    n = _check_positive_int(size, n, 2)
    parents = _check_positive_int("parents", parents, 1)
    if parents >= n:
        raise ValueError(f"parents must be < {size} ({n}), got {parents}")
    if not value > 0:
        raise ValueError(f"{strength} must be > 0, got {value}")
    return n, _sparse_parents(rng, n, parents), float(value)


def _sparse_parents(rng: np.random.Generator, n: int, parents: int) -> np.ndarray:
    """A 0/1 matrix (n, n): each node gets ``parents`` distinct random parents other than itself."""
    A = np.zeros((n, n))
    for i in range(n):
        A[i, rng.choice([j for j in range(n) if j != i], parents, replace=False)] = 1.0
    return A


class Kuramoto(DynamicalSystem):
    """Phase oscillators on a sparse directed graph: ``dtheta_i/dt = omega_i + K sum_j A_ij sin(theta_j - theta_i)``.

    Each oscillator has ``parents`` random parents; natural frequencies ``omega_i ~ U(0.5, 1.5)``.
    A phase depends on itself and its parents (its own phase enters every coupling term).
    None of sparsedyn's recipes was tuned on this system.
    """

    name = "kuramoto"

    def __init__(self, n: int = 8, parents: int = 2, K: float = 1.0, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n, self.A, self.K = _coupled_graph("n", n, parents, "K", K, rng)
        self.omega = rng.uniform(0.5, 1.5, self.n)
        self.adjacency = (self.A != 0) | np.eye(self.n, dtype=bool)

    def f(self, x: np.ndarray) -> np.ndarray:
        diff = np.sin(x[:, None, :] - x[:, :, None])  # [b, i, j] = sin(theta_j - theta_i)
        return self.omega + self.K * (self.A[None] * diff).sum(axis=2)

    def _x0(self, rng, k):
        return rng.uniform(-np.pi, np.pi, (k, self.n))


class FitzHughNagumo(DynamicalSystem):
    """FitzHugh-Nagumo neurons coupled through their voltages on a sparse directed graph.

    State ``[v_1..v_m, w_1..w_m]``: ``dv_i/dt = v_i - v_i^3 / 3 - w_i + I + c sum_j A_ij (v_j - v_i)``,
    ``dw_i/dt = eps (v_i + a - b w_i)`` (a = 0.7, b = 0.8, eps = 0.08, I = 0.5); each neuron has
    ``parents`` random parents. None of sparsedyn's recipes was tuned on this system.
    """

    name = "fitzhugh_nagumo"

    def __init__(self, m: int = 5, parents: int = 1, c: float = 0.5, seed: int = 0) -> None:
        self.m, self.A, self.c = _coupled_graph("m", m, parents, "c", c, np.random.default_rng(seed))
        self.n = 2 * self.m
        eye = np.eye(self.m, dtype=bool)
        self.adjacency = np.block([[(self.A != 0) | eye, eye], [eye, eye]])

    def f(self, x: np.ndarray) -> np.ndarray:
        v, w = x[:, :self.m], x[:, self.m:]
        coupling = v @ self.A.T - self.A.sum(axis=1) * v
        dv = v - v ** 3 / 3 - w + 0.5 + self.c * coupling
        dw = 0.08 * (v + 0.7 - 0.8 * w)
        return np.concatenate([dv, dw], axis=1)

    def _x0(self, rng, k):
        return np.concatenate([rng.uniform(-2, 2, (k, self.m)), rng.uniform(-0.5, 1.5, (k, self.m))], axis=1)


SYSTEMS: dict[str, type[DynamicalSystem]] = {
    cls.name: cls for cls in (SparseLinear, LotkaVolterra, Lorenz96, SparseTanh, CoupledOscillators, Kuramoto,
                              FitzHughNagumo)
}


def make_system(name: str, **params) -> DynamicalSystem:
    """Build a system by name; unknown names and parameters give an error naming them."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown system {name!r}; choose from {sorted(SYSTEMS)}")
    try:
        return SYSTEMS[name](**params)
    except TypeError as e:
        raise ValueError(f"bad parameter for system {name!r}: {e}") from None
