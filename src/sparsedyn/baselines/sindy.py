"""SINDy (pysindy) as a graph-recovery and forecasting baseline.

The learned graph is the coefficient support: ``score[i, j]`` is the sum of ``|coef|`` over
the library terms of equation ``i`` that involve ``x_j``. Forecasts integrate the fitted
equations with scipy, so SINDy is scored on the same splits as the neural ODEs.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor, nn

from ..tasks.trajectories import Trajectories


def fit_sindy(data: Trajectories, degree: int = 2, threshold: float = 0.05):
    """Fit pysindy's SINDy (polynomial library, STLSQ) on regularly sampled trajectories."""
    try:
        import pysindy as ps
    except ImportError:
        raise ImportError("the SINDy baseline needs pysindy: pip install 'sparsedyn[dev]'") from None
    if not bool(data.mask.all()):
        raise ValueError("the SINDy baseline needs regularly sampled training data (no irregular masks)")
    t = data.t.double().numpy()
    xs = [y for y in data.y.double().numpy()]
    model = ps.SINDy(optimizer=ps.STLSQ(threshold=threshold), feature_library=ps.PolynomialLibrary(degree=degree))
    model.fit(xs, t=t)
    return model


class SindyModel(nn.Module):
    """A fitted SINDy model behind the continuous-depth model interface ``(x0, t) -> (B, T, n)``."""

    def __init__(self, sindy) -> None:
        super().__init__()
        self.sindy = sindy
        self.n = sindy.coefficients().shape[0]

    def scores(self) -> np.ndarray:
        coef = np.abs(self.sindy.coefficients())  # (n, features)
        involves = self.sindy.feature_library.powers_ > 0  # (features, n)
        return coef @ involves.astype(float)

    def rhs(self, s: np.ndarray) -> np.ndarray:
        """``coef @ Theta(s)`` with the polynomial library evaluated directly (no sklearn per call)."""
        powers = self.sindy.feature_library.powers_  # (features, n)
        with np.errstate(over="ignore", invalid="ignore"):
            theta = np.prod(s[None, :] ** powers, axis=1)
            return self.sindy.coefficients() @ theta

    def forward(self, x0: Tensor, t: Tensor, intervention=None) -> Tensor:
        held = [int(k) for k in (intervention or {})]
        tt = t.double().numpy()
        out = []

        def rhs(_, s):
            ds = self.rhs(s)
            ds[held] = 0.0
            return ds

        def blow_up(_, s):  # stop when the fitted equations diverge
            return 1e6 - np.max(np.abs(s))

        blow_up.terminal = True  # type: ignore[attr-defined]  # scipy's event flag
        for x in x0.double().numpy():
            x = x.copy()
            for k, c in (intervention or {}).items():
                x[int(k)] = c
            sol = solve_ivp(rhs, (tt[0], tt[-1]), x, t_eval=tt, rtol=1e-6, atol=1e-8, method="LSODA",
                            events=blow_up)
            y = np.full((len(tt), self.n), 1e6)  # a diverged forecast scores as a huge error, not NaN
            y[: sol.y.shape[1]] = np.nan_to_num(sol.y.T, nan=1e6, posinf=1e6, neginf=-1e6)
            out.append(y)
        return torch.tensor(np.stack(out), dtype=x0.dtype)
