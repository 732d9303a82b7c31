"""External baselines (optional dependencies)."""

from .sindy import SindyModel, fit_sindy

__all__ = ["SindyModel", "fit_sindy"]
