"""Boolean gene-regulatory rules as a continuous ODE (Odefy's normalised HillCubes), with interventions.

Krumsiek et al. (2011) give the myeloid progenitor network as boolean update rules; Odefy
(Krumsiek et al. 2010), the tool they simulated it with, turns each rule into an ODE

    dx_i/dt = (B_i(h(x)) - x_i) / tau,

where every input passes a normalised Hill function ``h(x) = (x^n / (x^n + k^n)) / (1 / (1 + k^n))``
(``h(0) = 0``, ``h(1) = 1``) and the rule is evaluated in fuzzy logic: ``a and b -> a b``,
``a or b -> a + b - a b``, ``not a -> 1 - a``. The dependency graph is exact by construction:
``G[i, j] = 1`` iff gene ``j`` appears in gene ``i``'s rule. An intervention ``do(x_k = c)``
(a knockout ``c = 0`` or an over-expression ``c = 1``) holds ``x_k`` at ``c`` throughout.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping

import numpy as np

# Krumsiek et al. (2011), Table 1: the 11-factor myeloid progenitor network (the rules scanpy also ships).
KRUMSIEK11 = """
Gata2 = Gata2 and not (Gata1 and Fog1) and not Pu.1
Gata1 = (Gata1 or Gata2 or Fli1) and not Pu.1
Fog1 = Gata1
EKLF = Gata1 and not Fli1
Fli1 = Gata1 and not EKLF
SCL = Gata1 and not Pu.1
Cebpa = Cebpa and not (Gata1 and Fog1 and SCL)
Pu.1 = (Cebpa or Pu.1) and not (Gata1 or Gata2)
cJun = Pu.1 and not Gfi1
EgrNab = (Pu.1 and cJun) and not Gfi1
Gfi1 = Cebpa and not EgrNab
"""

Rule = Callable[[list[np.ndarray]], np.ndarray]


def _compile(expr: str, index: Mapping[str, int], where: str) -> tuple[Rule, set[int]]:
    """A fuzzy-logic function of the inputs' activations, and the inputs it reads."""
    def token(m: re.Match) -> str:  # whole words only; gene names may hold dots (Pu.1)
        word = m.group(0)
        if word in ("and", "or", "not"):
            return word
        if word not in index:
            raise ValueError(f"{where}: {word!r} is not a gene with a rule")
        return f"__g{index[word]}__"

    text = re.sub(r"[A-Za-z_][A-Za-z0-9_.]*", token, expr)
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(f"{where}: cannot parse rule {expr!r}") from None
    used: set[int] = set()

    def build(node) -> Rule:
        if isinstance(node, ast.Name) and node.id.startswith("__g"):
            k = int(node.id[3:-2])
            used.add(k)
            return lambda a: a[k]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = build(node.operand)
            return lambda a: 1.0 - inner(a)
        if isinstance(node, ast.BoolOp):
            parts = [build(v) for v in node.values]
            if isinstance(node.op, ast.And):
                def conj(a):
                    out = parts[0](a)
                    for p in parts[1:]:
                        out = out * p(a)
                    return out
                return conj

            def disj(a):
                out = parts[0](a)
                for p in parts[1:]:
                    q = p(a)
                    out = out + q - out * q
                return out
            return disj
        raise ValueError(f"{where}: only gene names, 'and', 'or', 'not' and parentheses are allowed in {expr!r}")

    return build(tree), used


class BooleanODE:
    """The continuous (normalised-HillCube) form of a set of boolean rules ``gene = expression``."""

    def __init__(self, rules: str = KRUMSIEK11, hill_n: float = 4.0, hill_k: float = 0.5, tau: float = 1.0) -> None:
        lines = [ln.strip() for ln in rules.strip().splitlines() if ln.strip() and not ln.strip().startswith("#")]
        if not lines:
            raise ValueError("no rules given")
        self.genes = [ln.split("=", 1)[0].strip() for ln in lines]
        if len(set(self.genes)) != len(self.genes):
            raise ValueError("a gene has two rules")
        index = {g: i for i, g in enumerate(self.genes)}
        self.rules, n = [], len(self.genes)
        self.adjacency = np.zeros((n, n), dtype=bool)
        for i, ln in enumerate(lines):
            if "=" not in ln:
                raise ValueError(f"rule {i + 1}: expected 'gene = expression', got {ln!r}")
            fn, used = _compile(ln.split("=", 1)[1], index, f"rule {i + 1} ({self.genes[i]})")
            self.rules.append(fn)
            self.adjacency[i, sorted(used)] = True
        if not (hill_n > 0 and hill_k > 0 and tau > 0):
            raise ValueError(f"need hill_n > 0, hill_k > 0, tau > 0; got {hill_n}, {hill_k}, {tau}")
        self.hill_n, self.hill_k, self.tau = float(hill_n), float(hill_k), float(tau)

    @property
    def n(self) -> int:
        return len(self.genes)

    def hill(self, x: np.ndarray) -> np.ndarray:
        """Normalised Hill activation: 0 at 0, 1 at 1, steepest near ``k``."""
        xn = np.clip(x, 0.0, None) ** self.hill_n
        return xn / (xn + self.hill_k ** self.hill_n) * (1.0 + self.hill_k ** self.hill_n)

    def rhs(self, x: np.ndarray) -> np.ndarray:
        """``dx/dt`` for states ``x (..., n)``."""
        a = [self.hill(x[..., j]) for j in range(self.n)]
        target = np.stack([rule(a) for rule in self.rules], axis=-1)
        return (target - x) / self.tau

    def jacobian(self, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
        """``J[..., i, j] = d(dx_i/dt) / dx_j`` at states ``x (..., n)``, by central differences (the
        field is smooth; the error is O(eps^2))."""
        x = np.asarray(x, dtype=np.float64)
        cols = []
        for j in range(self.n):
            step = np.zeros(self.n)
            step[j] = eps
            cols.append((self.rhs(x + step) - self.rhs(x - step)) / (2 * eps))
        return np.stack(cols, axis=-1)

    def simulate(self, x0: np.ndarray, t: np.ndarray, intervention: Mapping[int, float] | None = None,
                 substeps: int = 10) -> np.ndarray:
        """Trajectories ``(B, T, n)`` from ``x0 (B, n)`` at times ``t`` (classical RK4, ``substeps`` steps
        between saved times), with ``do(x_k = c)`` for each ``k: c`` of ``intervention``."""
        x = np.array(x0, dtype=np.float64)
        keep = np.ones(self.n)
        for k, c in (intervention or {}).items():
            x[:, int(k)] = float(c)
            keep[int(k)] = 0.0
        out = [x.copy()]
        for t0, t1 in zip(t[:-1], t[1:]):
            h = (t1 - t0) / substeps
            for _ in range(substeps):
                k1 = self.rhs(x) * keep
                k2 = self.rhs(x + h / 2 * k1) * keep
                k3 = self.rhs(x + h / 2 * k2) * keep
                k4 = self.rhs(x + h * k3) * keep
                x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            out.append(x.copy())
        return np.stack(out, axis=1)
