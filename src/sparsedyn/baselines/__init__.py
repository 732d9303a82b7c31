"""External baselines (optional dependencies: scikit-learn, pysindy)."""

from .edges import (
           BASELINES,
           EdgeEstimate,
           Standardiser,
           cv_units,
           lasso_linear,
           lasso_poly,
           simulate,
           sindy,
           trajectory_folds,
           trees,
)
from .sindy import SindyModel, fit_sindy

__all__ = ["BASELINES", "EdgeEstimate", "SindyModel", "Standardiser", "cv_units", "fit_sindy", "lasso_linear",
           "lasso_poly", "simulate", "sindy", "trajectory_folds", "trees"]
