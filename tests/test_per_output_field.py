"""``model.field: per_output``: one network per output variable for every NODE method, so that the
architecture's effect can be measured apart from a penalty's (issue 25)."""

import pytest
import torch

from sparsedyn.analysis import dependency_matrix, path_scores
from sparsedyn.config import parse_config
from sparsedyn.nn.fields import GroupedMLP
from sparsedyn.nn.ode import vector_field
from sparsedyn.runner import train_experiment

SPECS = {
    "vanilla": [],
    "l1": [{"name": "l1", "lam": 1e-2}],
    "l0": [{"name": "l0", "lam": 1e-2, "init_drop": 0.1}],
    "pathreg": [{"name": "pathreg", "lambda_paths": 1e-2, "init_drop": 0.1}],
    "cnode": [{"name": "cnode", "lam": 1e-2}],
    "group_lasso": [{"name": "group_lasso", "lam": 1e-1}],
    "lassonet_inner": [{"name": "lassonet", "lam": 0.1, "mode": "inner"}],
    "lassonet_outer": [{"name": "lassonet", "lam": 0.1, "mode": "outer"}],
    "magnitude": [{"name": "magnitude", "sparsity": 0.5, "schedule": "cubic", "start": 1, "end": 3}],
}


def _cfg(methods, field="per_output", kind="node"):
    system = "oscillators" if kind == "sonode" else "sparse_tanh"
    params = {} if kind == "sonode" else {"n": 3, "parents": 1}
    return parse_config({
        "seed": 0, "methods": methods,
        "task": {"system": system, "system_params": params, "n_train": 6, "n_val": 2, "n_test": 2,
                 "t_end": 1.0, "n_points": 6},
        "model": {"kind": kind, "hidden": [6], "solver": "rk4", "step_size": 0.25, "field": field},
        "trainer": {"epochs": 4, "finetune_epochs": 1, "batch_size": 6, "eval_every": 1, "progress": False}})


def test_every_registered_node_method_is_covered_here():
    from sparsedyn.methods import METHODS

    assert {spec[0]["name"] for spec in SPECS.values() if spec} == set(METHODS) - {"moduli"}  # moduli: RNNs


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_node_method_trains_on_a_per_output_field_and_reads_out_a_graph(name):
    outcome = train_experiment(_cfg(SPECS[name]))
    model = outcome.experiment.model
    field = vector_field(model)
    net = field.net if hasattr(field, "net") else field  # LassoNet inner wraps the field with its skip
    assert isinstance(net, GroupedMLP) and net.hidden == (6,)
    assert outcome.record["status"] == "completed"
    scores = path_scores(model)
    assert scores.shape == (3, 3) and torch.isfinite(scores).all()
    # per-output structure: row i of the dependency matrix comes from network i alone
    assert dependency_matrix(model).shape == (3, 3)


def test_a_per_output_sonode_field_maps_positions_and_velocities_per_output():
    outcome = train_experiment(_cfg([], kind="sonode"))
    field = vector_field(outcome.experiment.model)
    assert isinstance(field, GroupedMLP) and (field.n_in, field.n_out) == (2 * field.n_out, field.n_out)
    assert outcome.record["status"] == "completed"


def test_the_shared_field_stays_the_default():
    from sparsedyn.nn.fields import MLP

    assert isinstance(vector_field(train_experiment(_cfg([], field="shared")).experiment.model), MLP)
    assert parse_config({}).model.field == "shared"
