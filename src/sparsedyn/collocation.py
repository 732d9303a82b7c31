"""The hybrid vector field fitted to derivatives: many members (folds, subsamples) in one batched job.

Member ``m``'s field on standardised states ``z`` (n features) is, for each output ``i``,

    f_i(z) = b_i + sum_j L_ij z_j + sum_{j <= k} Q_i,jk z_j z_k + sum_h a_ih s(sum_j W_ihj z_j + c_ih)

a sparse library part (linear and, with ``poly``, degree-2 terms) plus a per-output neural residual
(universal-differential-equation style), ``s(u) = u / sqrt(1 + u^2)``. Every parameter through which
``f_i`` can depend on ``z_j`` forms the group ``(i, j)``: ``L_ij``, the ``Q_i,jk`` containing ``j`` and
the residual's input column ``W_i:j``. The penalty is ``lam * sum_{i != j} ||group (i, j)||_2``
(self-dependencies are free: every variable of most systems decays). It is applied by proximal steps
composed over the groups, so that a product term is cut when either of its variables is, and a cut
group removes ``z_j`` from ``f_i`` entirely: the support of the groups *is* the graph. Without a
residual the loss is quadratic and :func:`fit_library_path` runs FISTA on Gram matrices; with one,
:func:`fit_path` takes Adam steps, each group's soft-threshold ``lam`` times its mean Adam step (as
:class:`~sparsedyn.methods.GroupLasso` does).

Fitting is collocation: the loss is the mean squared error between ``f(z)`` and the smoothed
derivatives at the observed points, no ODE is solved, and all members train at once (each has its
own 0/1 weights over the data rows, its own parameters and Adam state; nothing is shared).

Periodic variables (phases, angles in radians; ``periodic``, library fields only) enter the library as
``cos z_j`` and ``sin z_j`` instead of ``z_j``: the library's features are then ``p = n + |periodic|``
lifted features, each owned by one variable, and ``z_j``'s group holds every term of either of its
features. Phase-coupled systems (``sin(theta_j - theta_i) = sin_j cos_i - cos_j sin_i``) are degree-2 in
these features, and no polynomial in the phases themselves represents them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PathFit:
    """A strength path of every member: ``lambdas`` (L,), and per stage ``norms`` (L, M, n, n) group
    norms, ``jacobian`` (L, M, n, n) mean |df_i/dz_j| at the data, ``val_mse`` (L, M) error on each
    member's held-out rows (NaN for a member with none), ``train_mse`` (L, M); ``states`` the parameters
    of every member at every stage (for forecasts)."""

    lambdas: Tensor
    norms: Tensor
    jacobian: Tensor
    val_mse: Tensor
    train_mse: Tensor
    states: list[dict[str, Tensor]]

    def select(self, index: slice, field: torch.nn.Module) -> PathFit:
        """The members ``index`` picks, at every stage (``field``: the path's field, whose parameters are the
        states' member-indexed entries; its buffers are shared by all members)."""
        params = {name for name, _ in field.named_parameters()}
        return PathFit(self.lambdas, self.norms[:, index], self.jacobian[:, index], self.val_mse[:, index],
                       self.train_mse[:, index],
                       [{k: v[index] if k in params else v for k, v in state.items()} for state in self.states])


class HybridField(torch.nn.Module):
    """``M`` independent hybrid fields on ``n`` standardised variables (see the module docstring)."""

    pj: Tensor  # buffers: the quadratic terms' feature pairs and their variables, group membership, masks
    pk: Tensor
    gj: Tensor
    gk: Tensor
    owner: Tensor
    lift_groups: Tensor
    membership: Tensor
    eye: Tensor
    off_diagonal: Tensor

    def __init__(self, members: int, n: int, hidden: int = 8, poly: bool = True,
                 generator: torch.Generator | None = None, periodic: tuple[int, ...] = ()) -> None:
        super().__init__()
        if members < 1 or n < 1 or hidden < 0:
            raise ValueError(f"need members >= 1, n >= 1, hidden >= 0; got {members}, {n}, {hidden}")
        self.periodic = tuple(sorted({int(j) for j in periodic}))
        if self.periodic and (hidden or not 0 <= self.periodic[0] <= self.periodic[-1] < n):
            raise ValueError(f"periodic variables need a library field (hidden=0) and indices in [0, {n}); "
                             f"got hidden={hidden}, periodic={periodic}")
        self.n, self.hidden, self.poly = n, hidden, poly
        # feature a is owned by variable owner[a]: z_j (cos z_j where j is periodic), then sin z_j of the periodic
        owner = torch.cat([torch.arange(n), torch.tensor(self.periodic, dtype=torch.long)])
        self.n_lifted = len(owner)
        self.register_buffer("owner", owner)
        self.register_buffer("lift_groups", torch.eye(n)[owner])  # (p, n): feature a belongs to group owner[a]
        j, k = torch.triu_indices(self.n_lifted, self.n_lifted)
        self.register_buffer("pj", j if poly else j[:0])
        self.register_buffer("pk", k if poly else k[:0])
        self.register_buffer("gj", owner[self.pj])  # the variables of each product term's two factors
        self.register_buffer("gk", owner[self.pk])
        member = torch.zeros(len(self.pj), n)  # which groups each product term belongs to
        member[torch.arange(len(self.pj)), self.gj] = 1.0
        member[torch.arange(len(self.pk)), self.gk] = 1.0
        self.register_buffer("membership", member)
        self.register_buffer("eye", torch.eye(n))
        self.register_buffer("off_diagonal", 1.0 - torch.eye(n))

        def randn(*shape: int, scale: float) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.randn(*shape, generator=generator) * scale)

        self.bias = torch.nn.Parameter(torch.zeros(members, n))
        self.linear = randn(members, n, self.n_lifted, scale=0.01)
        self.quad = randn(members, n, len(self.pj), scale=0.01)
        self.w_in = randn(members, n, hidden, n, scale=1.0 / math.sqrt(n))
        self.c_in = randn(members, n, hidden, scale=0.1)
        self.w_out = randn(members, n, hidden, scale=0.1 / math.sqrt(max(hidden, 1)))

    def member(self, m: int) -> HybridField:
        """A one-member copy of member ``m`` (its own parameters, detached): evaluating one fitted field
        need not compute all ``M``."""
        return self.members(slice(m, m + 1))

    def members(self, index: slice) -> HybridField:
        """A copy of the members ``index`` selects (their own parameters, detached)."""
        chosen = HybridField(len(range(*index.indices(len(self.bias)))), self.n, self.hidden, self.poly,
                             periodic=self.periodic)
        chosen.load_state_dict({k: v[index].detach().clone() if k in dict(self.named_parameters()) else v
                                for k, v in self.state_dict().items()})
        return chosen

    def features(self, z: Tensor) -> Tensor:
        """The lifted features (..., p) of states ``z`` (..., n): ``z`` itself without periodic variables."""
        if not self.periodic:
            return z
        angles = z[..., list(self.periodic)]
        lifted = z.clone()
        lifted[..., list(self.periodic)] = torch.cos(angles)
        return torch.cat([lifted, torch.sin(angles)], dim=-1)

    def feature_slopes(self, z: Tensor) -> Tensor:
        """``d feature_a / d z_owner(a)`` at every row (..., p): 1, or ``-sin z_j`` and ``cos z_j``."""
        slopes = torch.ones(*z.shape[:-1], self.n_lifted, dtype=z.dtype)
        if self.periodic:
            angles = z[..., list(self.periodic)]
            slopes[..., list(self.periodic)] = -torch.sin(angles)
            slopes[..., self.n:] = torch.cos(angles)
        return slopes

    def products(self, features: Tensor) -> Tensor:
        """The degree-2 terms of the lifted ``features`` (:meth:`features`; ``z`` without periodic variables)."""
        return features[..., self.pj] * features[..., self.pk]

    def forward(self, z: Tensor) -> Tensor:
        """``z`` (N, n) shared by every member -> (M, N, n); without a residual (``hidden=0``) also ``z``
        (M, N, n), each member at its own states (trajectory matching integrates every member apart)."""
        f = self.features(z)
        out = self.bias[:, None, :] + f @ self.linear.transpose(1, 2)
        if self.poly:
            out = out + self.products(f) @ self.quad.transpose(1, 2)
        if self.hidden:  # sum_h a_ih s_ih as one product with a block-diagonal (n * hidden, n) matrix
            m, n, hid = self.w_in.shape[0], self.n, self.hidden
            block = (self.w_out[..., None] * self.eye[:, None, :]).reshape(m, n * hid, n)
            out = out + self._hidden(z).view(m, len(z), n * hid) @ block
        return out

    def _hidden(self, z: Tensor) -> Tensor:
        """The residual's hidden units (M, N, n, hidden): ``s(u) = u / sqrt(1 + u^2)``, a tanh-like sigmoid
        at a quarter of tanh's CPU cost, computed contiguous (an activation on a strided view is slow)."""
        m, n, hid = self.w_in.shape[0], self.n, self.hidden
        pre = z @ self.w_in.reshape(m, n * hid, n).transpose(1, 2) + self.c_in.reshape(m, 1, n * hid)
        return (pre * torch.rsqrt(1.0 + pre * pre)).view(m, len(z), n, hid)

    def _grouped(self, lin: Tensor, quad: Tensor, w_in: Tensor) -> Tensor:
        """Sum of per-element values over each group (i, j): (M, n, n)."""
        total = (lin @ self.lift_groups if self.periodic else lin) + w_in.sum(dim=2)
        return total + quad @ self.membership if self.poly else total

    def group_norms(self) -> Tensor:
        with torch.no_grad():
            return self._grouped(self.linear**2, self.quad**2, self.w_in**2).sqrt()

    def group_sizes(self) -> Tensor:
        ones = (torch.ones_like(self.linear[:1]), torch.ones_like(self.quad[:1]), torch.ones_like(self.w_in[:1]))
        return self._grouped(*ones)

    def prox(self, thresholds: Tensor) -> None:
        """Group soft-threshold with ``thresholds`` (M, n, n) (zero on the diagonal), composed over the
        groups: a product term ``z_j z_k`` is scaled by both its groups' factors."""
        with torch.no_grad():
            scale, both = self.shrink_factors(self.group_norms(), thresholds)
            self.linear.mul_(scale[:, :, self.owner] if self.periodic else scale)
            self.w_in.mul_(scale[:, :, None, :])
            if self.poly:
                self.quad.mul_(both)

    def shrink_factors(self, norms: Tensor, thresholds: Tensor) -> tuple[Tensor, Tensor]:
        """The composed group soft-threshold's factors: per group ``max(0, 1 - t / norm)`` (M, n, n), and
        per product term ``z_j z_k`` the product of its two groups' factors (one factor for ``z_j^2``, and
        for a product of two features of one periodic variable)."""
        scale = torch.clamp(1.0 - thresholds / norms.clamp_min(1e-30), min=0.0)
        both = scale[:, :, self.gj] * torch.where(self.gj == self.gk, 1.0, scale[:, :, self.gk])
        return scale, both

    def _quadratic_slopes(self, z: Tensor) -> Tensor:
        """``d/dz_j`` of the degree-2 terms at every row: (M, N, i, j), ``z`` the lifted features (j then runs
        over them). With ``C[i, j, k]`` the coefficient of
        ``z_j z_k`` counted from both sides (so ``2 q`` for a square ``q z_j^2``), the slope is
        ``sum_k C[i, j, k] z_k``: one product of (M, n n, n) with ``z'``, a factor n fewer operations than
        lifting each term's slope onto its variable (at 30 variables that lift was 15% of a default fit)."""
        m, n, p = self.quad.shape[0], self.n, self.n_lifted
        both = torch.zeros(m, n, p * p, dtype=self.quad.dtype)
        both.index_add_(2, self.pj * p + self.pk, self.quad)
        both.index_add_(2, self.pk * p + self.pj, self.quad)  # a square's term lands twice: its slope 2 q z_j
        return (both.view(m, n * p, p) @ z.T).view(m, n, p, len(z)).permute(0, 3, 1, 2)

    def jacobian(self, z: Tensor) -> Tensor:
        """Mean ``|df_i/dz_j|`` over the rows of ``z``: (M, n, n), in closed form (for periodic variables by the
        chain rule through their features). A linear library's Jacobian is its coefficients at every row: their
        magnitudes are returned as they are, without the (M, N, n, n) tensor of copies (at 529 variables and
        450 rows, 8 GB of the fit's 12.6 GB peak)."""
        with torch.no_grad():
            if not (self.poly or self.periodic or self.hidden):
                return self.linear.abs()
            jac = self.linear[:, None].expand(-1, len(z), -1, -1)  # (M, N, i, feature): a view, no copies
            if self.poly:
                jac = jac + self._quadratic_slopes(self.features(z))
            if self.periodic:
                jac = (jac * self.feature_slopes(z)[None, :, None, :]) @ self.lift_groups
            if self.hidden:
                h = self._hidden(z)
                slope = (1.0 - h**2) ** 1.5  # s'(u) = (1 + u^2)^(-3/2) = (1 - s(u)^2)^(3/2)
                jac = jac + torch.einsum("msih,mih,mihj->msij", slope, self.w_out, self.w_in)
            return jac.abs().mean(dim=1)


class _Adam:
    """Adam over the field's parameters, exposing each element's step ``lr / (sqrt(v_hat) + eps)``."""

    def __init__(self, params: list[torch.nn.Parameter], lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self) -> list[Tensor]:
        self.t += 1
        b1, b2 = self.betas
        steps = []
        for p, m, v in zip(self.params, self.m, self.v):
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            m.mul_(b1).add_(grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            size = self.lr / ((v / (1 - b2**self.t)).sqrt() + self.eps)
            p.sub_(size * m / (1 - b1**self.t))
            steps.append(size)
        return steps


def lambda_max(field: HybridField, z: Tensor, y: Tensor, weights: Tensor) -> float:
    """The largest gradient norm of an off-diagonal group with every group at zero: the strength from
    which (for a plain proximal gradient) nothing enters; a path starts there."""
    probe = HybridField(field.bias.shape[0], field.n, field.hidden, field.poly, periodic=field.periodic)
    probe.load_state_dict(field.state_dict())
    with torch.no_grad():
        probe.prox(torch.full_like(probe.linear, 1e30) * field.off_diagonal)
    loss = _losses(probe, z, y, weights).sum()
    loss.backward()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in (probe.linear, probe.quad, probe.w_in)]
    grad = probe._grouped(*(g**2 for g in grads)).sqrt()
    return float((grad * field.off_diagonal).max())


def _losses(field: HybridField, z: Tensor, y: Tensor, weights: Tensor) -> Tensor:
    """Each member's mean squared error over its rows (``weights`` (M, N) 0/1): (M,)."""
    err = ((field(z) - y) ** 2).mean(dim=2)  # (M, N)
    return (err * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1)


def _stage(field: HybridField, z: Tensor, y: Tensor, weights: Tensor) -> tuple:
    """Every member's read-out at the end of a path stage: group norms, mean |Jacobian|, error on its
    held-out rows (NaN where it has none), error on its training rows, and its parameters."""
    with torch.no_grad():
        held_out = 1.0 - weights
        val = _losses(field, z, y, held_out)
        val = torch.where(held_out.sum(dim=1) > 0, val, torch.full_like(val, math.nan))
        train = _losses(field, z, y, weights)
    state = {k: v.detach().clone() for k, v in field.state_dict().items()}
    return field.group_norms(), field.jacobian(z), val, train, state


def _path_fit(lambdas: Tensor, stages: list[tuple]) -> PathFit:
    norms, jacs, vals, trains, states = zip(*stages)
    return PathFit(lambdas, torch.stack(norms), torch.stack(jacs), torch.stack(vals), torch.stack(trains),
                   list(states))


def fit_path(field: HybridField, z: Tensor, y: Tensor, weights: Tensor, lambdas: Tensor, steps: int = 150,
             lr: float = 0.02, on_stage: Callable[[], object] | None = None) -> PathFit:
    """Fit every member along ``lambdas`` (decreasing: from few edges to many), warm-started stage to
    stage, ``steps`` Adam + proximal steps per stage. ``weights`` (M, N) selects each member's training
    rows; its other rows are its validation rows. ``on_stage`` is called after each stage (a progress bar)."""
    params = [p for p in (field.bias, field.linear, field.quad, field.w_in, field.c_in, field.w_out) if p.numel()]
    opt = _Adam(params, lr)
    sizes = field.group_sizes()
    stages = []
    for lam in lambdas.tolist():
        for _ in range(steps):
            for p in params:
                p.grad = None
            _losses(field, z, y, weights).sum().backward()
            step = dict(zip([id(p) for p in params], opt.step()))
            mean_step = field._grouped(step[id(field.linear)],
                                       step.get(id(field.quad), torch.zeros_like(field.quad)),
                                       step.get(id(field.w_in), torch.zeros_like(field.w_in))) / sizes
            field.prox(lam * mean_step * field.off_diagonal)
        stages.append(_stage(field, z, y, weights))
        if on_stage is not None:
            on_stage()
    return _path_fit(lambdas, stages)

def library_features(field: HybridField, z: Tensor) -> Tensor:
    """The library features ``[1, z, z_j z_k]`` (N, F) of a field without residual (of its lifted features
    where it has periodic variables)."""
    f = field.features(z)
    parts = [torch.ones(len(z), 1), f] + ([field.products(f)] if field.poly else [])
    return torch.cat(parts, dim=1)


def feature_groups(field: HybridField) -> Tensor:
    """(F, n) 0/1: library feature f contains variable j (the bias row contains none)."""
    return torch.cat([torch.zeros(1, field.n), field.lift_groups] + ([field.membership] if field.poly else []))


@dataclass
class LibrarySystem:
    """The quadratic problem of every member of a library field (``hidden=0``): each member's loss gradient
    is ``gram @ theta - rhs`` with ``gram`` (M, F, F) = ``Phi' W Phi`` scaled and ``rhs`` (M, F, n), and
    ``step`` (M,) is one over the gradient's Lipschitz constant (FISTA's step)."""

    gram: Tensor
    rhs: Tensor
    step: Tensor

    @classmethod
    def of(cls, field: HybridField, z: Tensor, y: Tensor, weights: Tensor) -> LibrarySystem:
        phi = library_features(field, z)
        count = weights.sum(dim=1).clamp_min(1)  # (M,)
        scale = (2.0 / (count * field.n))[:, None, None]
        gram = scale * torch.einsum("mn,nf,ng->mfg", weights, phi, phi)
        rhs = scale * torch.einsum("mn,nf,ni->mfi", weights, phi, y)
        return cls(gram, rhs, 1.0 / torch.linalg.eigvalsh(gram)[:, -1].clamp_min(1e-12))

    def select(self, index: slice) -> LibrarySystem:
        """The members ``index`` picks. einsum's contraction order depends on the member count, so a subset's
        system is sliced from the whole one's (the same numbers as fitting every member at once) rather than
        formed anew."""
        return LibrarySystem(self.gram[index], self.rhs[index], self.step[index])


def fit_library_path(field: HybridField, z: Tensor, y: Tensor, weights: Tensor, lambdas: Tensor, steps: int = 300,
                     penalty_scale: Tensor | None = None, on_stage: Callable[[], object] | None = None,
                     system: LibrarySystem | None = None) -> PathFit:
    """:func:`fit_path` for a field without residual (``hidden=0``): the loss is then quadratic in the
    library coefficients ``Theta`` (F, n) per member, so each member's Gram matrix ``Phi' W Phi`` is formed
    once (:class:`LibrarySystem`, or ``system`` where given: its rows for these members) and the path runs
    FISTA (accelerated proximal gradient, step ``1 / L`` with ``L`` the loss gradient's Lipschitz constant),
    with the same composed group soft-threshold, at the cost of small (F x F) products per step whatever the
    number of data rows. ``penalty_scale`` (M, n, n): each member's factor on each group's penalty (the
    randomised lasso of stability selection); ``on_stage`` is called after each stage (a progress bar)."""
    if field.hidden:
        raise ValueError("fit_library_path needs a field without residual (hidden=0)")
    groups = feature_groups(field)  # (F, n)
    system = system if system is not None else LibrarySystem.of(field, z, y, weights)
    gram, rhs, step = system.gram, system.rhs, system.step
    theta = torch.cat([field.bias[:, None], field.linear.transpose(1, 2), field.quad.transpose(1, 2)], dim=1).detach()
    theta = theta.clone()
    previous, momentum = theta.clone(), theta.clone()
    n, stages = field.n_lifted, []
    partner = square_partners(field)
    with torch.no_grad():
        for lam in lambdas.tolist():
            thresholds = (lam * step)[:, None, None] * field.off_diagonal
            if penalty_scale is not None:
                thresholds = thresholds * penalty_scale
            t_k = 1.0
            for _ in range(steps):
                grad = gram @ momentum - rhs
                theta = stacked_prox(field, groups, partner, momentum - step[:, None, None] * grad, thresholds)
                t_next = (1 + math.sqrt(1 + 4 * t_k * t_k)) / 2
                momentum = theta + ((t_k - 1) / t_next) * (theta - previous)
                previous, t_k = theta, t_next
            momentum = theta.clone()  # restart the momentum at each stage
            field.bias.copy_(theta[:, 0])
            field.linear.copy_(theta[:, 1:1 + n].transpose(1, 2))
            field.quad.copy_(theta[:, 1 + n:].transpose(1, 2))
            stages.append(_stage(field, z, y, weights))
            if on_stage is not None:
                on_stage()
    return _path_fit(lambdas, stages)

def square_partners(field: HybridField) -> Tensor:
    """Per degree-2 term ``z_j z_k``, the row of its second group's factor in :func:`stacked_prox`'s padded
    factors: ``k``, or ``n`` (a row of ones) for a square, whose one group is counted once (and for a product
    of two features of one periodic variable)."""
    return torch.where(field.gj == field.gk, field.n, field.gk)


def stacked_prox(field: HybridField, groups: Tensor, partner: Tensor, th: Tensor, thresholds: Tensor) -> Tensor:
    """:meth:`HybridField.prox` on the stacked coefficients ``[bias; L'; Q']`` (M, F, n), with ``groups``
    :func:`feature_groups` and ``partner`` :func:`square_partners`: each group's factor ``max(0, 1 - t / norm)``
    scales its linear term, a product term ``z_j z_k`` the product of its two groups' factors. The same
    numbers as :meth:`HybridField.shrink_factors`, built in the coefficients' (feature, output) layout by
    gathering rows: the column gathers of the (output, feature) layout took ~70% of a degree-2 FISTA step's
    prox at 30 variables (``bench/fista_step.py``)."""
    p = field.n_lifted
    if field.poly or field.periodic:
        norms = ((th**2).transpose(1, 2) @ groups).sqrt()  # (M, i, j)
    else:  # one coefficient per group: its magnitude (sqrt(x^2) is |x| in binary floating point), no product
        norms = th[:, 1:].abs().transpose(1, 2)
    factor = torch.clamp(1.0 - thresholds / norms.clamp_min(1e-30), min=0.0)
    factor = factor.transpose(1, 2).contiguous()  # (M, j, i): rows by input, as the coefficients
    out = th.clone()
    out[:, 1:1 + p] *= factor.index_select(1, field.owner) if field.periodic else factor
    if field.poly:
        padded = torch.cat([factor, torch.ones_like(factor[:, :1])], dim=1)
        out[:, 1 + p:] *= factor.index_select(1, field.gj) * padded.index_select(1, partner)
    return out


def adaptive_penalty_scale(norms: Tensor, off_diagonal: Tensor, gamma: float, floor: float = 1e-3) -> Tensor:
    """The adaptive group lasso's penalty factors (Zou 2006; Wang & Leng 2008 for groups): each member's
    group norms ``norms`` (M, n, n) of a first fit, relative to their off-diagonal mean, to the power
    ``-gamma`` (relative norms below ``floor`` count as ``floor``). A group that was strong is penalised
    less in the second fit and a weak one more, which undoes the plain group lasso's shrinkage of the true
    edges and its pull towards their correlated stand-ins. Each member's factors come from its own first fit
    (no fold sees a fit to its held-out rows)."""
    off = off_diagonal.bool()
    relative = norms / norms[:, off].mean(dim=1).clamp_min(1e-30)[:, None, None]
    return relative.clamp_min(floor) ** (-gamma)


def library_lambda_max(field: HybridField, z: Tensor, y: Tensor, weights: Tensor,
                       penalty_scale: Tensor | None = None) -> float:
    """:func:`lambda_max` for :func:`fit_library_path`'s loss: the largest off-diagonal group gradient norm
    with only the biases fitted (each member's weighted mean derivative), each divided by its
    ``penalty_scale`` (M, n, n) where given."""
    phi = library_features(field, z)
    count = weights.sum(dim=1).clamp_min(1)
    mean = (weights @ y) / count[:, None]  # (M, n): the bias-only fit
    resid = mean[:, None, :] - y[None]  # (M, N, n)
    grad = (2.0 / (count * field.n))[:, None, None] * torch.einsum("mn,nf,mni->mfi", weights, phi, resid)
    norms = ((grad**2).transpose(1, 2) @ feature_groups(field)).sqrt()
    if penalty_scale is not None:
        norms = norms / penalty_scale
    off = norms[:, field.off_diagonal.bool()]
    return float(off.max()) if off.numel() else 0.0  # one variable: no edge to enter
