"""``SparseODE``: a scikit-learn style estimator for a user's own time series.

    from sparsedyn import SparseODE
    model = SparseODE(method="pathreg", strength=1e-3).fit(X, t=t, feature_names=names)
    model.graph_                       # learned dependency matrix (out, in); rows/columns: feature_names_in_
    model.jacobian_scores_             # edge scores: mean |d f_i / d x_j| at the training states
    model.predict(x0, t)               # forecast from an initial state
    model.score(X_test, t=t)           # R^2 of forecasting each trajectory from its first state
    rows = model.path(X, t=t, strengths=[0, 1e-4, 1e-3, 1e-2])   # warm-started regularisation path

``X`` is one (T, n) array, a (B, T, n) array or a list of (T_i, n) arrays; ``t`` one grid or one per
trajectory (see :func:`sparsedyn.tasks.user_data.from_arrays`). Training is the library's own:
the method's sparsification epochs, then fine-tuning with the pattern frozen, the best validation
checkpoint kept (``val_fraction`` of the trajectories held out; with fewer than two trajectories,
or ``val_fraction=0``, the training error chooses). ``get_params`` / ``set_params`` follow
scikit-learn's protocol, so ``sklearn.base.clone`` and ``GridSearchCV`` work (pass ``t`` to ``fit``;
``score`` falls back to the grid seen in ``fit``).

For the wiring of a system (graph recovery), :class:`sparsedyn.SparseGraph` is the self-tuned tool:
it chooses its own strength by cross-validation and gives edge probabilities.
"""

from __future__ import annotations

import inspect
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .methods.base import Compose
from .methods.registry import METHODS, build_method
from .nn.modes import eval_mode
from .path import default_param
from .tasks.user_data import DataError, Series, from_arrays

try:  # scikit-learn (the dev extra) needs its base class for tags; without it the protocol below is enough
    from sklearn.base import BaseEstimator as _Base
except ImportError:  # pragma: no cover - sklearn is optional
    _Base = object


class SparseODE(_Base):
    """A sparse neural ODE ``dx/dt = f(x)`` fitted to trajectories, with a readable dependency graph.

    Parameters: ``method`` (a registered method name, or ``"vanilla"``) at ``strength`` (its
    ``lam``, PathReg's ``lambda_paths`` or pruning's ``sparsity``), ``method_params`` its other
    settings; ``relative_strength`` puts ``strength`` in units of the initial data loss
    (:mod:`sparsedyn.methods.strength`). ``hidden``/``activation`` the MLP field, ``solver`` and
    ``step_size`` (None: the data's grid) the ODE solver; ``epochs``, ``finetune_epochs`` (None: a
    quarter), ``lr``, ``batch_size`` training; ``window`` cuts trajectories into pieces first;
    ``seed`` fixes every random choice.
    """

    def __init__(self, method: str = "pathreg", strength: float = 1e-3, method_params: dict | None = None,
                 relative_strength: bool = False, hidden: Sequence[int] = (32, 32), activation: str = "tanh",
                 solver: str = "rk4", step_size: float | None = None, epochs: int = 200,
                 finetune_epochs: int | None = None, lr: float = 1e-2, batch_size: int = 16,
                 window: int | None = None, val_fraction: float = 0.2, seed: int = 0,
                 progress: bool = False) -> None:
        self.method, self.strength, self.method_params = method, strength, method_params
        self.relative_strength, self.hidden, self.activation = relative_strength, hidden, activation
        self.solver, self.step_size, self.epochs, self.finetune_epochs = solver, step_size, epochs, finetune_epochs
        self.lr, self.batch_size, self.window, self.val_fraction = lr, batch_size, window, val_fraction
        self.seed, self.progress = seed, progress

    # -- scikit-learn protocol -----------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> SparseODE:
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"SparseODE has no parameter {name!r}; parameters: {', '.join(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = {k: v for k, v in self.get_params().items() if defaults.get(k) != v}
        return f"SparseODE({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # -- fitting ---------------------------------------------------------------------------
    def _method_spec(self) -> list[dict[str, Any]]:
        if self.method == "vanilla":
            return []
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from vanilla, {', '.join(sorted(METHODS))}")
        if not self.strength >= 0:
            raise ValueError(f"strength must be >= 0, got {self.strength}")
        spec = {"name": self.method, **(self.method_params or {})}
        return [{**spec, default_param(spec): float(self.strength)}]

    def _task(self, series: Series):
        """Train / val split of the trajectories (pieces, with ``window``); one alone trains and validates."""
        from .tasks.trajectories_task import TrajectoriesTask, cut_windows

        pieces = cut_windows(series, self.window) if self.window is not None else series
        return TrajectoriesTask(pieces, None, self.val_fraction if len(pieces) >= 2 else 0.0, 0.0, self.seed)

    def _model_config(self):
        from .config import ModelConfig

        return ModelConfig(kind="node", hidden=list(self.hidden), activation=self.activation, solver=self.solver,
                           step_size=self.step_size)

    def fit(self, X: Any, y: Any = None, t: Any = None, masks: Any = None,
            feature_names: Sequence[str] | None = None, warm_start: str | Path | dict | None = None) -> SparseODE:
        """Fit to trajectories ``X`` observed at times ``t`` (``y`` is ignored: scikit-learn's slot);
        ``warm_start``: a checkpoint file or a loaded one (``{"model": state_dict}``) to start from."""
        from pydantic import ValidationError

        from .runner import assemble, load_warm_start
        from .train import Trainer, TrainSettings

        series = from_arrays(X, t, masks, feature_names)
        task = self._task(series)
        batch = min(self.batch_size, len(task.splits["train"]))
        try:
            settings = TrainSettings(epochs=self.epochs, lr=self.lr, batch_size=batch,
                                     lr_schedule="cosine", finetune_epochs=self.finetune_epochs,
                                     eval_every=max(1, self.epochs // 20), progress=self.progress,
                                     strength="relative" if self.relative_strength else "absolute")
        except ValidationError as e:  # name the estimator's parameter, not the trainer's internal class
            err = e.errors()[0]
            name = str(err["loc"][0])
            raise ValueError(f"SparseODE: {name} {err['msg'].lower()}, got {getattr(self, name, err['input'])!r}"
                             ) from None
        model, method, self.strengths_ = assemble(task, self._model_config(), self._method_spec(), self.seed,
                                                  settings)
        if isinstance(warm_start, dict):
            model.load_state_dict(warm_start["model"])
        elif warm_start is not None:
            load_warm_start(model, warm_start)
        with tempfile.TemporaryDirectory() as tmp:
            result = Trainer(model, method, task, settings, Path(tmp), seed=self.seed).fit()
            self._sparsified_state = torch.load(Path(tmp) / "sparsified.pt", weights_only=False) \
                if (Path(tmp) / "sparsified.pt").exists() else None
        if result.status != "completed":
            raise RuntimeError(f"training {result.status}: {result.message}")
        self.model_, self.task_, self.method_ = model, task, method
        self.feature_names_in_ = list(series.features)
        self.n_features_in_ = series.n_features
        self.t_ = task.splits["train"].t.numpy()
        self.history_, self.phase_ = result.history, result.phase
        train = task.splits["train"]
        self._read_off(train.y[train.mask])
        return self

    def _read_off(self, states: torch.Tensor | None = None) -> None:
        """The structural graph, path scores and sparsity; with the training ``states`` also the Jacobian
        read-out (the recommended edge score: path weights rank a dense fit's edges near chance) and a
        :class:`~sparsedyn.graph.GraphWarning` when the structural graph has no edge between variables."""
        from .analysis import dependency_matrix, feature_sparsity, jacobian_scores, path_scores, thin, weight_sparsity
        from .graph import GraphWarning

        self.graph_ = dependency_matrix(self.model_).numpy()
        self.path_scores_ = path_scores(self.model_).detach().numpy()
        self.feature_sparsity_ = float(feature_sparsity(torch.as_tensor(self.graph_)))
        self.weight_sparsity_ = float(weight_sparsity(self.model_)["global"])
        if states is not None:
            self.jacobian_scores_ = jacobian_scores(self.model_, thin(states, 1000)).numpy()
            off = ~np.eye(*self.graph_.shape, dtype=bool)
            if not self.graph_[off].any():
                warnings.warn(f"SparseODE: the fitted graph has no edge between variables (method {self.method!r} "
                              f"at strength {self.strength:g} cut every input); lower the strength, use "
                              "relative_strength=True, or sparsedyn.SparseGraph (self-tuned)", GraphWarning,
                              stacklevel=3)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("this SparseODE is not fitted yet: call fit(X, t=...) first")

    # -- using the fitted model ------------------------------------------------------------
    def predict(self, x0: Any, t: Any) -> np.ndarray:
        """Forecast from initial state(s) ``x0`` ((n,) or (B, n)) at times ``t`` ((T,), starting at x0's
        time): (T, n) or (B, T, n)."""
        self._check_fitted()
        x = np.asarray(x0, dtype=float)
        single = x.ndim == 1
        x = x[None] if single else x
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            n = self.n_features_in_
            raise DataError(f"x0 must be ({n},) or (B, {n}), got shape {np.shape(x0)}")
        if not np.isfinite(x).all():
            raise DataError("x0 contains NaN or inf")
        grid = torch.as_tensor(np.asarray(t, dtype=float), dtype=torch.float32)
        with eval_mode(self.model_), torch.no_grad():
            out = self.model_(torch.as_tensor(x, dtype=torch.float32), grid).numpy()
        return out[0] if single else out

    def score(self, X: Any, y: Any = None, t: Any = None, masks: Any = None) -> float:
        """R^2 of forecasting every trajectory of ``X`` from its first state, over the observed points
        (1 is perfect, 0 is predicting the data's mean); ``t`` defaults to the grid seen in ``fit``."""
        self._check_fitted()
        series = from_arrays(X, self.t_ if t is None else t, masks, self.feature_names_in_)
        sse, values = 0.0, []
        for ti, xi in zip(series.times, series.values):
            observed = ~np.isnan(xi).any(axis=1)
            pred = self.predict(xi[0], ti)
            sse += float(((pred[observed] - xi[observed]) ** 2).sum())
            values.append(xi[observed])
        allv = np.concatenate(values)
        sst = float(((allv - allv.mean(axis=0)) ** 2).sum())
        return 1.0 - sse / sst if sst > 0 else float("nan")

    def path(self, X: Any, t: Any = None, strengths: Sequence[float] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1),
             **fit_kw: Any) -> list[dict[str, Any]]:
        """A regularisation path: ``strengths`` increasing, each fit warm-started from the previous one's
        weights at the end of its sparsification epochs; one row per strength (R^2 on ``X``, sparsity,
        graph, path scores). The estimator ends fitted at the last strength."""
        values = [float(s) for s in strengths]
        if not values:
            raise ValueError("path needs at least one strength, got an empty list")
        if values != sorted(values) or any(v < 0 for v in values):
            raise ValueError(f"path strengths must be >= 0 and increasing, got {values}")
        rows, warm = [], None
        original = self.strength
        try:
            for value in values:
                self.strength = value
                self.fit(X, t=t, warm_start=warm, **fit_kw)
                rows.append({"strength": value, "score": self.score(X, t=t),
                             "feature_sparsity": self.feature_sparsity_, "weight_sparsity": self.weight_sparsity_,
                             "graph": self.graph_.copy(), "scores": self.path_scores_.copy()})
                warm = self._sparsified_state or warm
        finally:
            self.strength = original if not rows else values[-1]
        return rows

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the parameters, the fitted weights and what was read off them to one file."""
        self._check_fitted()
        from . import io

        state = {"params": self.get_params(), "model": self.model_.state_dict(), "phase": self.phase_,
                 "feature_names": self.feature_names_in_, "t": self.t_}
        io.save_torch(Path(path), state)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> SparseODE:
        """An estimator as :meth:`save` wrote it, ready to predict and score (no refit)."""
        from .tasks.forecast import node_model

        try:
            state = torch.load(path, weights_only=False)
        except FileNotFoundError:
            raise
        except Exception as e:  # not a torch file at all (unpickling, zip or EOF errors)
            raise DataError(f"{path}: not a file written by SparseODE.save ({type(e).__name__}: {e})") from None
        if not isinstance(state, dict) or not {"params", "model", "phase", "feature_names"} <= set(state):
            raise DataError(f"{path}: not a file written by SparseODE.save (a torch file without its keys)")
        est = cls(**state["params"])
        method = Compose(build_method(spec) for spec in est._method_spec())
        n = len(state["feature_names"])
        model = method.prepare(node_model(n, est._model_config()))
        if state["phase"] == 2:  # saved after fine-tuning began: its pattern is frozen
            method.finalize(model)
        model.load_state_dict(state["model"])
        est.model_, est.method_, est.phase_ = model, method, state["phase"]
        est.feature_names_in_, est.n_features_in_, est.t_ = state["feature_names"], n, state["t"]
        est._read_off()
        return est
