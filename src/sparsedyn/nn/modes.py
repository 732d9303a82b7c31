"""Module modes used across tasks, analysis and export."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily put ``model`` in eval mode (deterministic gates), restoring it after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
