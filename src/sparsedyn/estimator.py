"""``SparseODE``: a scikit-learn style estimator for a user's own time series.

    from sparsedyn import SparseODE
    model = SparseODE(method="pathreg", strength=0.01).fit(X, t=t, feature_names=names)  # relative strength
    model.graph_                       # learned dependency matrix (out, in); rows/columns: feature_names_in_
    model.jacobian_scores_             # edge scores: mean |d f_i / d x_j| at the training states
    model.simulate(x0, t)              # forecast from an initial state
    model.predict(X)                   # the field's derivatives dx/dt at states X (as pysindy)
    model.score(X_test, t=t)           # R^2 of forecasting each trajectory from its first state
    model.train_score_                 # the same on the training data (a warning when <= 0: worse than their mean)
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
import sys
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
from .nn.ode import vector_field
from .path import default_param
from .series_scaling import SeriesScaling
from .tasks.user_data import DataError, Series, _numeric, forecast_times, from_arrays

try:  # scikit-learn (the dev extra) needs its base class for tags; without it the protocol below is enough
    from sklearn.base import BaseEstimator as _Base
except ImportError:  # pragma: no cover - sklearn is optional
    _Base = object


RELATIVE_PATH = (0.0, 0.01, 0.1, 1.0, 10.0)  # SparseODE.path's default strengths, relative to the data loss
ABSOLUTE_PATH = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)  # ... and with relative_strength=False (the methods' own scale)


class SparseODE(_Base):
    """A sparse neural ODE ``dx/dt = f(x)`` fitted to trajectories, with a readable dependency graph.

    Parameters: ``method`` (a registered method name, or ``"vanilla"``) at ``strength`` (its
    ``lam``, PathReg's ``lambda_paths`` or pruning's ``sparsity``), ``method_params`` its other
    settings; ``relative_strength`` (the default) puts ``strength`` in units of the initial data loss
    (:mod:`sparsedyn.methods.strength`: at initialisation the penalty is ``strength`` times the data loss,
    ``strengths_`` the absolute value it became), so that one strength means the same for every method and
    network size; ``relative_strength=False`` takes ``strength`` as the method's own absolute value (PathReg's
    penalty counts input-output paths, so an absolute 1e-3 that suits 4 variables pruned 88-97% of the
    weights of a 10-15 variable field and left it worse than the data's mean: ``docs/results-graph-recovery.md``,
    2026-12-07). The default 0.01 is a light penalty. ``hidden``/``activation`` the MLP field, ``solver`` and
    ``step_size`` (None: the data's grid) the ODE solver; ``epochs``, ``finetune_epochs`` (None: a
    quarter), ``lr``, ``batch_size`` training; ``window`` cuts trajectories into pieces first;
    ``seed`` fixes every random choice; ``progress`` a bar over the epochs on stderr (None, the default: on an
    interactive terminal only); ``standardize`` fits in scaled coordinates (each feature by its
    mean and spread, time by the trajectories' median span: :mod:`sparsedyn.series_scaling`, ``scaling_``)
    and maps forecasts and derivatives back, so that a strength means the same whatever the data's units;
    ``jacobian_scores_`` are then in those scaled units (comparable across edges); ``derivative_steps``
    full-batch Adam steps fitting the field to the training runs' smoothed derivatives before it is trained on
    trajectories (:mod:`sparsedyn.derivative_start`; 0: none; skipped with a ``warm_start``); ``missing``
    what to do with time points where only some features are missing (``"error"`` or ``"interpolate"``, as
    :class:`~sparsedyn.graph.SparseGraph` takes it: :func:`~sparsedyn.tasks.user_data.interpolate_gaps`).
    """

    def __init__(self, method: str = "pathreg", strength: float = 0.01, method_params: dict | None = None,
                 relative_strength: bool = True, hidden: Sequence[int] = (32, 32), activation: str = "tanh",
                 solver: str = "rk4", step_size: float | None = None, epochs: int = 200,
                 finetune_epochs: int | None = None, lr: float = 1e-2, batch_size: int = 16,
                 window: int | None = None, val_fraction: float = 0.2, seed: int = 0,
                 progress: bool | None = None, standardize: bool = True, derivative_steps: int = 500,
                 missing: str = "error") -> None:
        self.method, self.strength, self.method_params = method, strength, method_params
        self.relative_strength, self.hidden, self.activation = relative_strength, hidden, activation
        self.solver, self.step_size, self.epochs, self.finetune_epochs = solver, step_size, epochs, finetune_epochs
        self.lr, self.batch_size, self.window, self.val_fraction = lr, batch_size, window, val_fraction
        self.seed, self.progress, self.standardize = seed, progress, standardize
        self.derivative_steps, self.missing = derivative_steps, missing

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
        return TrajectoriesTask.from_series(pieces, val_fraction=self.val_fraction if len(pieces) >= 2 else 0.0,
                                            test_fraction=0.0, split_seed=self.seed,
                                            standardize=False)  # SparseODE scaled them itself (scaling_)

    def _shows_progress(self) -> bool:
        """``progress``, or with None (the default) whether stderr is an interactive terminal, as tqdm's
        ``disable=None`` decides: a bar for a person watching a fit, none in logs and tests."""
        if self.progress not in (None, True, False):
            raise ValueError(f"SparseODE: progress must be True, False or None, got {self.progress!r}")
        return bool(self.progress) if self.progress is not None else sys.stderr.isatty()

    def _model_config(self):
        from .config import ModelConfig

        step = None if self.step_size is None else self.step_size / self.scaling_.t_scale
        return ModelConfig(kind="node", hidden=list(self.hidden), activation=self.activation, solver=self.solver,
                           step_size=step)

    def fit(self, X: Any, y: Any = None, t: Any = None, masks: Any = None,
            feature_names: Sequence[str] | None = None, warm_start: str | Path | dict | None = None) -> SparseODE:
        """Fit to trajectories ``X`` observed at times ``t`` (``y`` is ignored: scikit-learn's slot);
        ``warm_start``: a checkpoint file or a loaded one (``{"model": state_dict}``) to start from."""
        from pydantic import ValidationError

        from .runner import assemble, load_warm_start
        from .train import Trainer, TrainSettings

        if not (isinstance(self.derivative_steps, int) and self.derivative_steps >= 0):
            raise ValueError(f"SparseODE: derivative_steps must be an integer >= 0, got {self.derivative_steps!r}")
        series = from_arrays(X, t, masks, feature_names, self.missing)
        self.scaling_ = SeriesScaling.fit(series) if self.standardize else SeriesScaling.identity(series.n_features)
        try:  # the task's, the model's and the trainer's settings, each checked by its configuration class
            task = self._task(self.scaling_.series(series))
            settings = TrainSettings(epochs=self.epochs, lr=self.lr, batch_size=min(self.batch_size,
                                                                                    len(task.splits["train"])),
                                     lr_schedule="cosine", finetune_epochs=self.finetune_epochs,
                                     eval_every=max(1, self.epochs // 20), progress=self._shows_progress(),
                                     strength="relative" if self.relative_strength else "absolute")
            model_config = self._model_config()
        except ValidationError as e:  # name the estimator's parameter, not the internal configuration class
            err = e.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else "settings"
            message = err["msg"].removeprefix("Value error, ")
            raise ValueError(f"SparseODE: {name}: {message[:1].lower() + message[1:]}, got "
                             f"{getattr(self, name, err.get('input'))!r}") from None
        model, method, self.strengths_ = assemble(task, model_config, self._method_spec(), self.seed, settings)
        if isinstance(warm_start, dict):
            model.load_state_dict(warm_start["model"])
        elif warm_start is not None:
            load_warm_start(model, warm_start)
        elif self.derivative_steps:  # the field first fitted to the training runs' smoothed derivatives
            from .derivative_start import fit_to_derivatives

            pieces = task.series  # the scaled trajectories (or their windows) the task split
            train = pieces.subset([pieces.names.index(name) for name in task.splits["train"].meta["names"]])
            torch.manual_seed(self.seed)
            self.derivative_error_ = fit_to_derivatives(model, train, self.derivative_steps)
        with tempfile.TemporaryDirectory() as tmp:
            result = Trainer(model, method, task, settings, Path(tmp), seed=self.seed).fit()
            self._sparsified_state = torch.load(Path(tmp) / "sparsified.pt", weights_only=False) \
                if (Path(tmp) / "sparsified.pt").exists() else None
        if result.status != "completed":
            raise RuntimeError(f"training {result.status}: {result.message}")
        self.model_, self.task_, self.method_ = model, task, method
        self.feature_names_in_ = list(series.features)
        self.n_features_in_ = series.n_features
        self.t_ = task.splits["train"].t.numpy() * self.scaling_.t_scale
        self.history_, self.phase_ = result.history, result.phase
        train = task.splits["train"]
        self._read_off(train.y[train.mask])
        # as the model was trained: with a window, each piece forecast from its own first state
        from .tasks.trajectories_task import cut_windows

        pieces = cut_windows(series, self.window) if self.window is not None else series
        self.train_score_ = self.score(pieces.values, t=pieces.times)
        if not self.train_score_ > 0:
            from .graph import GraphWarning

            what = "vanilla" if self.method == "vanilla" else f"{self.method!r} at strength {self.strength:g}"
            warnings.warn(f"SparseODE: forecasting the training trajectories from their first states scores R^2 = "
                          f"{self.train_score_:.3g}, no better than their mean: the fit ({what}, {self.epochs} epochs) "
                          "is not supported by the data; lower the strength, train longer, or use "
                          "sparsedyn.SparseGraph", GraphWarning, stacklevel=2)
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
            off = np.eye(*self.graph_.shape) == 0
            if off.any() and not self.graph_[off].any():  # one variable has no edge to miss
                warnings.warn(f"SparseODE: the fitted graph has no edge between variables (method {self.method!r} "
                              f"at strength {self.strength:g} cut every input); lower the strength, use "
                              "relative_strength=True, or sparsedyn.SparseGraph (self-tuned)", GraphWarning,
                              stacklevel=3)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            from .graph import NotFittedError

            raise NotFittedError("this SparseODE is not fitted yet: call fit(X, t=...) first")

    # -- using the fitted model ------------------------------------------------------------
    def predict(self, X: Any, t: Any = None) -> np.ndarray:
        """The fitted vector field at states ``X`` (N, n): ``dx/dt`` (N, n).

        As in pysindy, ``predict`` gives derivatives and :meth:`simulate` forecasts. (The old call
        ``predict(x0, t)`` still forecasts, with a ``FutureWarning``; use ``simulate(x0, t)``.)"""
        if t is not None:
            warnings.warn("SparseODE.predict(x0, t) forecasting is deprecated: use simulate(x0, t); "
                          "predict(X) gives the field's derivatives at states X", FutureWarning, stacklevel=2)
            return self.simulate(X, t)
        if np.ndim(X) == 1:
            raise DataError(f"X must be (N, {self.n_features_in_}) states; got one 1-d array (Reshape your data: "
                            "X[None] for one state)")
        x, _ = self._states(X, "X")
        z = torch.as_tensor(self.scaling_.states(x), dtype=torch.float32)
        with eval_mode(self.model_), torch.no_grad():
            return self.scaling_.derivatives(vector_field(self.model_)(z).numpy().astype(float))

    def simulate(self, x0: Any, t: Any) -> np.ndarray:
        """Forecast from initial state(s) ``x0`` ((n,) or (B, n)) at times ``t`` ((T,), starting at x0's
        time; decreasing times forecast backwards): (T, n) or (B, T, n). The field is autonomous: only the times
        since ``t[0]`` matter (counted in float64 before the float32 solve, so a clock of 1e9 seconds keeps its
        steps)."""
        x, single = self._states(x0, "x0")
        since = forecast_times(t)
        since = since - since[0]
        grid = torch.as_tensor(since / self.scaling_.t_scale, dtype=torch.float32)
        z = torch.as_tensor(self.scaling_.states(x), dtype=torch.float32)
        with eval_mode(self.model_), torch.no_grad():
            out = self.scaling_.unstates(self.model_(z, grid).numpy().astype(float))
        return out[0] if single else out

    def _states(self, values: Any, what: str) -> tuple[np.ndarray, bool]:
        """Checked states (B, n) and whether one (n,) state was given."""
        self._check_fitted()
        x = _numeric(values, what)
        single = x.ndim == 1
        x = x[None] if single else x
        n = self.n_features_in_
        if x.ndim != 2:
            raise DataError(f"{what} must be ({n},) or (B, {n}), got shape {np.shape(values)}")
        if x.shape[1] != n:
            raise DataError(f"{what} has {x.shape[1]} features, but SparseODE is expecting {n} features as input")
        if not np.isfinite(x).all():
            raise DataError(f"{what} contains NaN or inf")
        return x, single

    def score(self, X: Any, y: Any = None, t: Any = None, masks: Any = None) -> float:
        """R^2 of forecasting every trajectory of ``X`` from its first state, over the observed points
        (1 is perfect, 0 is predicting the data's mean); ``t`` defaults to the grid seen in ``fit``."""
        self._check_fitted()
        series = from_arrays(X, self.t_ if t is None else t, masks, missing=getattr(self, "missing", "error"))
        if series.n_features != self.n_features_in_:
            raise DataError(f"X has {series.n_features} features, but SparseODE is expecting "
                            f"{self.n_features_in_} features as input")
        sse, values = 0.0, []
        for ti, xi in zip(series.times, series.values):
            observed = ~np.isnan(xi).any(axis=1)
            pred = self.simulate(xi[0], ti)
            sse += float(((pred[observed] - xi[observed]) ** 2).sum())
            values.append(xi[observed])
        allv = np.concatenate(values)
        sst = float(((allv - allv.mean(axis=0)) ** 2).sum())
        return 1.0 - sse / sst if sst > 0 else float("nan")

    def path(self, X: Any, t: Any = None, strengths: Sequence[float] | None = None,
             **fit_kw: Any) -> list[dict[str, Any]]:
        """A regularisation path: ``strengths`` increasing, each fit warm-started from the previous one's
        weights at the end of its sparsification epochs; one row per strength (R^2 on ``X``, sparsity,
        graph, path scores). The estimator ends fitted at the last strength. Default strengths:
        :data:`RELATIVE_PATH` with ``relative_strength`` (from no penalty to one 10x the data loss: on the
        benchmark's Hill and gLV networks 0.1 pruned ~57% of the weights and 1 ~80%), else
        :data:`ABSOLUTE_PATH`."""
        if strengths is None:
            strengths = RELATIVE_PATH if self.relative_strength else ABSOLUTE_PATH
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
    def _checkpoint(self) -> dict[str, Any]:
        return {"params": self.get_params(), "model": self.model_.state_dict(), "phase": self.phase_,
                "feature_names": self.feature_names_in_, "t": self.t_, "scaling": self.scaling_.as_dict()}

    def save(self, path: str | Path) -> Path:
        """Write the parameters, the fitted weights and what was read off them to one file."""
        self._check_fitted()
        from . import io

        io.save_torch(Path(path), self._checkpoint())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> SparseODE:
        """An estimator as :meth:`save` wrote it, ready to predict and score (no refit)."""
        try:
            state = torch.load(path, weights_only=False)
        except FileNotFoundError:
            raise
        except Exception as e:  # not a torch file at all (unpickling, zip or EOF errors)
            raise DataError(f"{path}: not a file written by SparseODE.save ({type(e).__name__}: {e})") from None
        if not isinstance(state, dict) or not {"params", "model", "phase", "feature_names"} <= set(state):
            raise DataError(f"{path}: not a file written by SparseODE.save (a torch file without its keys)")
        est = cls(**state["params"])
        est._restore(state)
        return est

    def _restore(self, state: dict[str, Any]) -> None:
        """Rebuild the fitted model from a checkpoint dict (the method's parametrizations included)."""
        from .tasks.forecast import node_model

        method = Compose(build_method(spec) for spec in self._method_spec())
        n = len(state["feature_names"])
        # files written before the scaling: fitted in the data's own units
        self.scaling_ = SeriesScaling.from_dict(state["scaling"]) if "scaling" in state else SeriesScaling.identity(n)
        model = method.prepare(node_model(n, self._model_config()))
        if state["phase"] == 2:  # saved after fine-tuning began: its pattern is frozen
            method.finalize(model)
        model.load_state_dict(state["model"])
        self.model_, self.method_, self.phase_ = model, method, state["phase"]
        self.feature_names_in_, self.n_features_in_, self.t_ = state["feature_names"], n, state["t"]
        self._read_off()

    def __getstate__(self) -> dict[str, Any]:
        """Pickling: torch refuses parametrized modules, so a fitted model travels as its checkpoint
        (state dict and phase) and is rebuilt on unpickling; everything read off it is kept as is."""
        state = self.__dict__.copy()
        if "model_" in state:
            state["_pickled_checkpoint"] = self._checkpoint()
            for key in ("model_", "method_"):
                state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        checkpoint = state.pop("_pickled_checkpoint", None)
        self.__dict__.update(state)
        if checkpoint is not None:
            kept = {k: v for k, v in state.items() if k.endswith("_") and not k.startswith("_")}
            self._restore(checkpoint)
            self.__dict__.update(kept)  # the read-outs of the fit (jacobian_scores_, history_, ...) as they were
