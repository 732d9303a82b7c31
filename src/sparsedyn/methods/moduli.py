"""Moduli regularization (Mackey et al. 2024): recurrent weights penalised by neuron geometry.

Each recurrent layer's hidden neurons get positions on a manifold (each layer its own seeded
embedding); ``R[j, k] = f(d(p_j, p_k))`` is built once and stored as a buffer on the layer
(tiled per gate for GRU/LSTM), and the penalty is ``lam * reduce(R * |W_hh|^ell)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..geometry import ManifoldEmbedding, inhibitor, parse_manifold, penalty_matrix
from ..nn.rnn import RecurrentLayer, recurrent_layers
from .base import Method, ParamError, StepSize, check_choice, check_nonnegative, zero_like_model

_BUFFER = "moduli_R"
_EMBEDDING = "moduli_embedding"


class Moduli(Method):
    """Geometric penalty on every recurrent layer's ``W_hh``.

    Args:
        manifold: ``circle``, ``torus[:k]``, ``klein``, ``sphere``, ``s3``, ``euclidean[:k]`` or
            ``none`` (``R = 1``: plain L1 on ``W_hh``).
        inhibitor: ``dog`` (default), ``diffusion``, ``ripple``, ``gauss``.
        lam, ell, reduction: ``lam * reduce(R * |W_hh|^ell)``, reduce = ``mean`` (default) or ``sum``.
        trainable: positions are parameters; ``R`` is rebuilt each penalty call and positions are
            retracted onto the manifold after each step.
        permuted, scale_matched: the controls (shuffled ``R``; ``R = mean(R)``).
        seed: seed of the positions (layer ``i`` uses ``seed + i``).
    """

    name = "moduli"
    strength = "lam"
    stackable_params = ("lam",)

    def __init__(self, manifold: str = "torus", inhibitor: str = "dog", lam: float = 0.1, ell: float = 1.0,
                 reduction: str = "mean", trainable: bool = False, permuted: bool = False,
                 scale_matched: bool = False, seed: int = 0) -> None:
        try:
            self.manifold = parse_manifold(manifold).name
        except ValueError as e:
            raise ParamError("manifold", str(e)) from None
        try:
            _check_inhibitor(inhibitor)
        except ValueError as e:
            raise ParamError("inhibitor", str(e)) from None
        self.inhibitor = inhibitor
        self.lam = check_nonnegative("lam", lam)
        self.ell = check_nonnegative("ell", ell)
        if self.ell == 0:
            raise ParamError("ell", f"ell must be > 0, got {ell}")
        self.reduction = check_choice("reduction", reduction, ("mean", "sum"))
        for flag, v in (("trainable", trainable), ("permuted", permuted), ("scale_matched", scale_matched)):
            if not isinstance(v, bool):
                raise ParamError(flag, f"{flag} must be true or false, got {v!r}")  # "False" strings: the fix
        if trainable and (permuted or scale_matched):
            raise ParamError("trainable", "trainable cannot be combined with permuted or scale_matched")
        self.trainable, self.permuted, self.scale_matched = trainable, permuted, scale_matched
        self.seed = int(seed)

    def prepare(self, model: nn.Module) -> nn.Module:
        layers = recurrent_layers(model)
        if not layers:
            raise TypeError(f"Moduli needs recurrent layers; {type(model).__name__} has none")
        for i, layer in enumerate(layers):
            H, device = layer.hidden_size, layer.weight_ih.device
            if self.trainable:
                if not hasattr(layer, _EMBEDDING):
                    layer.add_module(_EMBEDDING, ManifoldEmbedding(self.manifold, H, self.inhibitor,
                                                                   self.seed + i).to(device))
            elif not hasattr(layer, _BUFFER):
                R = penalty_matrix(self.manifold, H, self.inhibitor, self.seed + i, self.permuted,
                                   self.scale_matched)
                layer.register_buffer(_BUFFER, R.repeat(layer.gates, 1).to(device))
        return model

    @staticmethod
    def matrix(layer: RecurrentLayer) -> Tensor:
        """The layer's ``R`` tiled to ``W_hh``'s shape ``(gates*H, H)``."""
        emb = getattr(layer, _EMBEDDING, None)
        if emb is not None:
            return emb.matrix().repeat(layer.gates, 1)
        R = getattr(layer, _BUFFER, None)
        if R is None:
            raise RuntimeError("Moduli: call prepare(model) first")
        return R

    def penalty(self, model: nn.Module) -> Tensor:
        total = zero_like_model(model)
        for layer in recurrent_layers(model):
            term = self.matrix(layer) * layer.weight_hh.abs() ** self.ell
            total = total + (term.mean() if self.reduction == "mean" else term.sum())
        return self.lam * total

    def after_step(self, model: nn.Module, lr: float, step_size: StepSize | None = None) -> None:
        for layer in recurrent_layers(model):
            emb = getattr(layer, _EMBEDDING, None)
            if emb is not None:
                emb.retract()


def _check_inhibitor(name: str) -> None:
    inhibitor(name)
