"""Sparsity, dependency graphs and graph-recovery metrics, all on effective weights.

Effective weights are read in eval mode (``mask * deterministic gate * weight``), so the
numbers here never depend on a random gate sample.
"""

from __future__ import annotations

import typing

import numpy as np
import torch
from torch import Tensor, nn

from .nn.modes import eval_mode
from .nn.ode import vector_field
from .nn.prunable import prunable_weights

__all__ = ["effective_weights", "weight_sparsity", "path_scores", "jacobian_scores", "jacobian_recovery",
           "ranking_metrics", "thin", "dependency_matrix", "feature_sparsity", "spurious_feature_sparsity",
           "recovery_metrics"]

def effective_weights(model: nn.Module) -> dict[str, Tensor]:
    """``{name: effective weight}`` for every prunable weight, gates deterministic."""
    with eval_mode(model), torch.no_grad():
        return {name: getattr(m, a).detach().clone() for name, m, a in prunable_weights(model)}


def weight_sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of effective weights exactly zero: ``{"global": s, <tensor name>: s, ...}``."""
    weights = effective_weights(model)
    if not weights:
        raise ValueError(f"{type(model).__name__} has no prunable weights")
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    total = sum(w.numel() for w in weights.values())
    out = {"global": zeros / total}
    out.update({name: float((w == 0).float().mean()) for name, w in weights.items()})
    return out


def path_scores(model: nn.Module) -> Tensor:
    """Continuous dependency score ``|W_L| ... |W_1|`` (+ |skip|) of the vector field, (out, in)."""
    with eval_mode(model), torch.no_grad():
        return _path_weights(model, lambda layer: layer.weight.abs())


def _path_weights(model: nn.Module, transform) -> Tensor:
    owner: typing.Any = model if hasattr(model, "path_weights") else vector_field(model)
    if not hasattr(owner, "path_weights"):
        raise TypeError(f"{type(model).__name__} exposes no layer chain; use kind='jacobian'")
    return owner.path_weights(transform)


def jacobian_scores(model: nn.Module, x: Tensor) -> Tensor:
    """``D_ij = mean over x of |d f_i / d x_j|`` for the vector field at the points ``x`` (N, n_in)."""
    field = vector_field(model)
    if x.dim() != 2:
        raise ValueError(f"x must have shape (points, n_in), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    with eval_mode(model):
        jac = torch.func.vmap(torch.func.jacrev(lambda p: field(p[None])[0]))(x.detach())
    return jac.abs().mean(dim=0).detach()


def jacobian_recovery(model: nn.Module, x: Tensor, truth: Tensor | np.ndarray, max_points: int = 1000
                      ) -> dict[str, float]:
    """AUROC and AUPRC of the mean absolute Jacobian (:func:`jacobian_scores`) against ``truth``,
    with self-loops and (square ``truth``) without them (``auroc_offdiag``, ``auprc_offdiag``).

    The path-weight score ``|W_L| ... |W_1|`` ranks a dense network's dependencies by weight
    magnitudes, which a function can hide (cancelling paths, saturated units); the Jacobian scores
    what the field does at the data. ``x`` is thinned to at most ``max_points`` evenly spaced rows
    (:func:`thin`) to bound the cost. Without self-loops matters where every variable decays
    (``dx_i/dt = ... - x_i``): the true field's diagonal is then nonzero whatever the graph says.
    """
    return ranking_metrics(jacobian_scores(model, thin(x, max_points)), truth)


def ranking_metrics(scores: Tensor | np.ndarray, truth: Tensor | np.ndarray) -> dict[str, float]:
    """The threshold-free part of :func:`recovery_metrics`: AUROC and AUPRC, with self-loops and
    (square ``truth``) without them."""
    rec = recovery_metrics(scores, truth)
    return {k: rec[k] for k in ("auroc", "auprc", "auroc_offdiag", "auprc_offdiag") if k in rec}


def thin(x: Tensor, max_points: int) -> Tensor:
    """At most ``max_points`` evenly spaced rows of ``x`` (deterministic; all of them if fewer)."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    if len(x) > max_points:
        x = x[torch.linspace(0, len(x) - 1, max_points).round().long()]
    return x


def dependency_matrix(
    model: nn.Module, kind: str = "structural", x: Tensor | None = None, threshold: float = 0.0,
) -> Tensor:
    """Which inputs each output of the vector field depends on, as a 0/1 float matrix (out, in).

    ``structural``: boolean product of the effective weights (any open path), plus the
    LassoNet skip; per-output rows for GroupLasso. ``jacobian``: ``mean |df_i/dx_j| > threshold``
    over the points ``x`` (works for any differentiable field).
    """
    if kind == "structural":
        with eval_mode(model), torch.no_grad():
            return (_path_weights(model, lambda layer: (layer.weight != 0).float()) > 0).float()
    if kind == "jacobian":
        if x is None:
            raise ValueError("kind='jacobian' needs points x at which to evaluate the Jacobian")
        return (jacobian_scores(model, x) > threshold).float()
    raise ValueError(f"kind must be 'structural' or 'jacobian', got {kind!r}")


def feature_sparsity(D: Tensor | np.ndarray, threshold: float = 0.0) -> float:
    """``1 - nnz(D) / (n_out * n_in)`` where an entry counts if ``|D| > threshold``."""
    D = torch.as_tensor(np.asarray(D, dtype=np.float64)) if isinstance(D, np.ndarray) else D
    return 1.0 - float((D.abs() > threshold).float().mean())


def spurious_feature_sparsity(D: Tensor | np.ndarray, can_be_parent: np.ndarray | list[bool]) -> float:
    """Fraction of zero entries of ``D`` (out, in) in the columns of inputs that cannot be parents.

    Higher is better: a dependency on a non-transcription-factor gene is spurious.
    """
    D = np.asarray(torch.as_tensor(D).detach().cpu())
    mask = np.asarray(can_be_parent, dtype=bool)
    if mask.shape != (D.shape[1],):
        raise ValueError(f"can_be_parent must have one entry per input ({D.shape[1]}), got shape {mask.shape}")
    if mask.all():
        raise ValueError("every input can be a parent: no spurious columns to score")
    return float((D[:, ~mask] == 0).mean())


def parent_selectivity(D: Tensor | np.ndarray, can_be_parent: np.ndarray | list[bool],
                       variances: np.ndarray | list[float]) -> dict[str, float]:
    """How selectively the model cut dependencies on inputs that cannot be parents, beside a null.

    ``spurious_cut`` / ``parent_cut``: fraction of zero entries of ``D`` (out, in) in the columns of
    inputs that cannot / can be parents; ``selectivity`` = their difference (0: no preference).
    The **variance-matched null** cuts the same number of entries by removing whole input columns
    from the lowest data variance up (the last one partly), the cheapest explanation of a
    "spurious" reading: a model that only drops near-constant genes scores ``null_selectivity``.
    """
    D = np.asarray(torch.as_tensor(D).detach().cpu())
    mask = np.asarray(can_be_parent, dtype=bool)
    var = np.asarray(variances, dtype=float)
    if mask.shape != (D.shape[1],) or var.shape != (D.shape[1],):
        raise ValueError(f"can_be_parent and variances need one entry per input ({D.shape[1]}), "
                         f"got {mask.shape} and {var.shape}")
    if mask.all() or not mask.any():
        raise ValueError("selectivity needs inputs that can and inputs that cannot be parents")
    zero = D == 0
    spurious, parent = float(zero[:, ~mask].mean()), float(zero[:, mask].mean())
    n_out, cut = D.shape[0], float(zero.sum())
    removed = np.zeros(D.shape[1])  # fraction of each column the null removes
    for j in np.argsort(var, kind="stable"):
        take = min(1.0, cut / n_out)
        removed[j], cut = take, cut - take * n_out
        if cut <= 0:
            break
    null_spurious, null_parent = float(removed[~mask].mean()), float(removed[mask].mean())
    return {"spurious_cut": spurious, "parent_cut": parent, "selectivity": spurious - parent,
            "null_spurious_cut": null_spurious, "null_parent_cut": null_parent,
            "null_selectivity": null_spurious - null_parent}


def _auroc(score: np.ndarray, label: np.ndarray) -> float:
    pos, neg = label.sum(), (~label).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(score)  # average ranks handle ties
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _auprc(score: np.ndarray, label: np.ndarray) -> float:
    """Average precision: ``sum_k (R_k - R_{k-1}) P_k`` over distinct score thresholds."""
    pos = label.sum()
    if pos == 0:
        return float("nan")
    order = np.argsort(-score, kind="stable")
    s, y = score[order], label[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    precision = tp[last] / (tp[last] + fp[last])
    recall = tp[last] / pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _shd(pred: np.ndarray, truth: np.ndarray) -> int:
    """Structural Hamming distance: differing entries, a reversed edge counted once."""
    diff = int((pred != truth).sum())
    off = ~np.eye(pred.shape[0], dtype=bool) if pred.shape[0] == pred.shape[1] else None
    if off is None:
        return diff
    reversed_pairs = pred & ~truth & truth.T & ~pred.T & off  # marks (i, j) only
    return diff - int(reversed_pairs.sum())


def recovery_metrics(
    score: Tensor | np.ndarray, truth: Tensor | np.ndarray, threshold: float = 0.0,
) -> dict[str, float]:
    """Graph recovery of a score matrix against a true adjacency ``truth[i, j] = x_j -> dx_i``.

    Returns AUROC and AUPRC of the continuous ``score``, and precision, recall, F1 and SHD of
    the structure ``|score| > threshold``; each with self-loops (keys as named) and without
    (suffix ``_offdiag``, square matrices only).
    """
    score = np.abs(np.asarray(torch.as_tensor(score).detach().cpu(), dtype=np.float64))
    truth = np.asarray(torch.as_tensor(truth).detach().cpu()).astype(bool)
    if score.shape != truth.shape:
        raise ValueError(f"score has shape {score.shape} but truth has shape {truth.shape}")
    if not np.isfinite(score).all():
        raise ValueError("score contains NaN or inf")
    pred = score > threshold
    sets = {"": np.ones_like(truth, dtype=bool)}
    if truth.shape[0] == truth.shape[1]:
        sets["_offdiag"] = ~np.eye(truth.shape[0], dtype=bool)
    out: dict[str, float] = {}
    for suffix, sel in sets.items():
        s, t, p = score[sel], truth[sel], pred[sel]
        tp = int((p & t).sum())
        precision = tp / p.sum() if p.sum() else 0.0
        recall = tp / t.sum() if t.sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[f"auroc{suffix}"] = _auroc(s, t)
        out[f"auprc{suffix}"] = _auprc(s, t)
        out[f"precision{suffix}"] = float(precision)
        out[f"recall{suffix}"] = float(recall)
        out[f"f1{suffix}"] = float(f1)
        if suffix:
            p_off, t_off = pred & sel, truth & sel
            out[f"shd{suffix}"] = float(_shd(p_off, t_off))
        else:
            out["shd"] = float(_shd(pred, truth))
    return out
