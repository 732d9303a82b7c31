"""Systems for the graph-recovery benchmark that no sparsedyn default was tuned on.

Each is a :class:`~sparsedyn.tasks.systems.DynamicalSystem` whose ``adjacency[i, j]`` is the support
of the true Jacobian (``dx_i/dt`` depends on ``x_j``), drawn at random from ``seed``:

- :class:`HillNetwork`: gene regulation with Hill kinetics (activators and repressors, decay).
- :class:`GeneralisedLV`: a generalised Lotka-Volterra community (quadratic, positive states).
- :class:`CoupledRossler`: chaotic Rossler oscillators coupled through ``x`` along a random graph.
- :class:`HyperRossler`: the 4-D hyperchaotic Rossler flow (values in the hundreds).
- :class:`DystsFlow`: a chaotic flow of the ``dysts`` package (optional dependency), by name.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .systems import DynamicalSystem, _check_positive_int


def _parents(rng: np.random.Generator, n: int, k: int) -> list[np.ndarray]:
    return [rng.choice([j for j in range(n) if j != i], size=k, replace=False) for i in range(n)]


class HillNetwork(DynamicalSystem):
    """``dx_i/dt = b_i + sum_{j in pa(i)} v_ij H_ij(x_j) - g_i x_i`` with ``H`` an activating
    ``x^h / (K^h + x^h)`` or repressing ``K^h / (K^h + x^h)`` Hill function (h = 2..4)."""

    name = "hill"

    def __init__(self, n: int = 10, parents: int = 2, seed: int = 0) -> None:
        self.n = _check_positive_int("n", n, 3)
        rng = np.random.default_rng(seed)
        self.pa = _parents(rng, self.n, _check_positive_int("parents", parents))
        self.v = [rng.uniform(1.0, 2.0, len(p)) for p in self.pa]
        self.act = [rng.random(len(p)) < 0.5 for p in self.pa]
        self.K = [rng.uniform(0.5, 1.5, len(p)) for p in self.pa]
        self.h = [rng.integers(2, 5, len(p)).astype(float) for p in self.pa]
        self.b = rng.uniform(0.05, 0.2, self.n)
        self.g = rng.uniform(0.5, 1.0, self.n)
        A = np.eye(self.n, dtype=bool)
        for i, p in enumerate(self.pa):
            A[i, p] = True
        self.adjacency = A

    def f(self, x: np.ndarray) -> np.ndarray:
        x = np.maximum(x, 0.0)
        out = self.b - self.g * x
        for i, p in enumerate(self.pa):
            r = (x[:, p] / self.K[i]) ** self.h[i]
            hill = np.where(self.act[i], r / (1 + r), 1 / (1 + r))
            out[:, i] += hill @ self.v[i]
        return out

    def _x0(self, rng, k):
        return rng.uniform(0.0, 2.5, (k, self.n))


class GeneralisedLV(DynamicalSystem):
    """``dx_i/dt = x_i (r_i + sum_j A_ij x_j)`` with ``A_ii = -1`` and ``parents`` random interactions."""

    name = "glv"

    def __init__(self, n: int = 12, parents: int = 2, seed: int = 0) -> None:
        self.n = _check_positive_int("n", n, 3)
        rng = np.random.default_rng(seed)
        A = -np.eye(self.n)
        for i, p in enumerate(_parents(rng, self.n, _check_positive_int("parents", parents))):
            A[i, p] = rng.choice([-1.0, 1.0], len(p)) * rng.uniform(0.3, 0.6, len(p))
        self.A, self.r = A, rng.uniform(0.5, 1.0, self.n)
        self.adjacency = A != 0

    def f(self, x: np.ndarray) -> np.ndarray:
        return x * (self.r + x @ self.A.T)

    def _x0(self, rng, k):
        return rng.uniform(0.1, 1.0, (k, self.n))


class CoupledRossler(DynamicalSystem):
    """``m`` Rossler oscillators (``x, y, z`` each; a = 0.2, b = 0.2, c = 5.7, frequencies ~1) with
    ``dx_i/dt += eps * sum_{k in pa(i)} (x_k - x_i)`` along a random graph of ``parents`` per oscillator."""

    name = "coupled_rossler"

    def __init__(self, m: int = 5, parents: int = 1, eps: float = 0.3, seed: int = 0) -> None:
        self.m = _check_positive_int("m", m, 2)
        self.n = 3 * self.m
        rng = np.random.default_rng(seed)
        self.pa = _parents(rng, self.m, _check_positive_int("parents", parents))
        self.w = rng.uniform(0.9, 1.1, self.m)
        self.eps = float(eps)
        A = np.zeros((self.n, self.n), dtype=bool)
        for o in range(self.m):
            x, y, z = 3 * o, 3 * o + 1, 3 * o + 2
            A[x, [x, y, z]] = A[y, [x, y]] = A[z, [x, z]] = True
            for k in self.pa[o]:
                A[x, 3 * k] = True
        self.adjacency = A

    def f(self, s: np.ndarray) -> np.ndarray:
        x, y, z = s[:, 0::3], s[:, 1::3], s[:, 2::3]
        dx = -self.w * y - z
        for o, p in enumerate(self.pa):
            dx[:, o] += self.eps * (x[:, p] - x[:, [o]]).sum(axis=1)
        dy = self.w * x + 0.2 * y
        dz = 0.2 + z * (x - 5.7)
        out = np.empty_like(s)
        out[:, 0::3], out[:, 1::3], out[:, 2::3] = dx, dy, dz
        return out

    def _x0(self, rng, k):
        s = rng.normal(0.0, 4.0, (k, self.n))
        s[:, 2::3] = rng.uniform(0.0, 1.0, (k, self.m))
        return s


class HyperRossler(DynamicalSystem):
    """The 4-D hyperchaotic Rossler flow: ``x' = -y - z``, ``y' = x + a y + w``, ``z' = b + x z``,
    ``w' = -c z + d w`` (a = 0.25, b = 3, c = 0.5, d = 0.05)."""

    name = "hyper_rossler"

    def __init__(self) -> None:
        self.n = 4
        A = np.zeros((4, 4), dtype=bool)
        A[0, [1, 2]] = A[1, [0, 1, 3]] = A[2, [0, 2]] = A[3, [2, 3]] = True
        self.adjacency = A

    def f(self, s: np.ndarray) -> np.ndarray:
        x, y, z, w = s.T
        return np.stack([-y - z, x + 0.25 * y + w, 3.0 + x * z, -0.5 * z + 0.05 * w], axis=1)

    def _x0(self, rng, k):
        base = np.array([-10.0, -6.0, 0.0, 10.0])
        return base + rng.normal(0.0, 3.0, (k, 4)) * np.array([1, 1, 0.1, 1])


# dysts flows of the benchmark's "dysts" family: 4-6 variables, a sparse true Jacobian, polynomial
# (LorenzCoupled, HyperCai, HyperWang, NuclearQuadrupole, LorenzStenflo, HyperPang) and non-polynomial
# (CellCycle, CircadianRhythm: Michaelis-Menten and Hill terms) interactions.
DYSTS_FLOWS = ("LorenzCoupled", "CellCycle", "CircadianRhythm", "HyperCai", "HyperWang", "NuclearQuadrupole",
               "LorenzStenflo", "HyperPang")


class DystsFlow(DynamicalSystem):
    """A chaotic flow of the ``dysts`` package (Gilpin 2021) with its published parameters.

    ``adjacency`` is the support of the Jacobian measured by central differences at 60 points of the
    attractor (an entry counts when it exceeds ``1e-6`` of the largest); initial states are points of the
    attractor (a long reference run from the package's initial condition, after a transient of 10
    periods), jittered by 1% of each variable's spread. ``span`` is three of the flow's dominant periods.
    Needs ``pip install dysts``."""

    name = "dysts"

    def __init__(self, flow: str) -> None:
        try:
            import dysts.flows
        except ImportError as err:  # pragma: no cover - optional dependency
            raise ImportError("the dysts family needs the dysts package: pip install 'dysts>=0.9'") from err
        if flow not in DYSTS_FLOWS:
            raise ValueError(f"unknown dysts flow {flow!r}; choose from {', '.join(DYSTS_FLOWS)}")
        self.flow = flow
        self._system = getattr(dysts.flows, flow)()
        ic = np.asarray(self._system.ic, dtype=float)
        self.n = len(ic)
        period = float(self._system.metadata["period"])
        self.span = 3.0 * period
        reference = super().simulate(ic[None], np.linspace(0.0, 40 * period, 2000))[0]
        self._attractor = reference[500:]  # past a transient of 10 periods
        self.adjacency = self._jacobian_support(self._attractor[::25])

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.array([self._system.rhs(row, 0.0) for row in x], dtype=float)

    def _jacobian_support(self, points: np.ndarray) -> np.ndarray:
        largest = np.zeros((self.n, self.n))
        for x in points:
            for j in range(self.n):
                h = 1e-5 * (1.0 + abs(x[j]))
                step = np.zeros(self.n)
                step[j] = h
                column = (self.f((x + step)[None]) - self.f((x - step)[None]))[0] / (2 * h)
                largest[:, j] = np.maximum(largest[:, j], np.abs(column))
        return largest > 1e-6 * largest.max()

    def _x0(self, rng, k):
        points = self._attractor[rng.integers(0, len(self._attractor), k)]
        return points + 0.01 * self._attractor.std(axis=0) * rng.standard_normal(points.shape)


GRAPH_SYSTEMS: dict[str, Callable[..., DynamicalSystem]] = {
    cls.name: cls for cls in (HillNetwork, GeneralisedLV, CoupledRossler, HyperRossler)
}
