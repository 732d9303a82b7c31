"""Adam with heavy-ball SGD groups: the optimizer of proximal methods whose prox must see plain steps.

LassoNet's Hier-Prox couples the skip column ``S[:, k]`` with the first layer's column ``W1[:, k]``.
Under Adam every element moves by about ``lr`` whatever its gradient, so the first-layer columns of
irrelevant inputs random-walk and keep their skip columns alive: no input is ever cut exactly. The
lassonet package trains its path with SGD with momentum 0.9 for this reason; here only the groups a
method flags (``"heavy_ball": True``) take SGD-with-momentum steps, the rest of the model keeps Adam.
"""

from __future__ import annotations

import torch

HEAVY_BALL_MOMENTUM = 0.9


class AdamWithHeavyBall(torch.optim.Adam):
    """``torch.optim.Adam`` for every group, except groups with ``heavy_ball=True``:
    ``b <- momentum b + g;  p <- p - lr b`` (PyTorch's SGD with momentum, no dampening)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        every = self.param_groups
        self.param_groups = [g for g in every if not g.get("heavy_ball")]
        try:
            super().step()
        finally:
            self.param_groups = every
        for group in every:
            if not group.get("heavy_ball"):
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = p.grad.detach().clone()
                    state["step"] = torch.zeros(())  # Adam's load_state_dict expects a step in every state
                else:
                    state["momentum_buffer"].mul_(HEAVY_BALL_MOMENTUM).add_(p.grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
                state["step"] += 1
        return loss
