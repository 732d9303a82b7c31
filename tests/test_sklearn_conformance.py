"""scikit-learn's own estimator checks on both estimators, with tiny training budgets.

Every check of ``check_estimator`` runs (none is marked as an expected failure): cloning, parameters
unchanged by ``fit``, idempotent fits, pickling, NaN/inf/sparse/complex/empty input refused with the
conventional messages, feature-count checks in ``predict``/``score``, not-fitted errors. The checks feed
plain (samples, features) arrays: both estimators read one 2-D array as one trajectory on unit time steps.
"""

import warnings

from sklearn.utils.estimator_checks import parametrize_with_checks

from sparsedyn import SparseODE
from sparsedyn.graph import SparseGraph

TINY = [
    SparseGraph(n_stages=3, steps=5, n_subsamples=2, poly=False),
    SparseODE(method="pathreg", epochs=2, finetune_epochs=1, hidden=(4,), solver="euler"),
]


@parametrize_with_checks(TINY)
def test_scikit_learn_conformance(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random data: the estimators' own fit warnings are expected
        check(estimator)
