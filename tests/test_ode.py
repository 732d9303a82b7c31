import pytest
import torch

from sparsedyn.config import parse_config
from sparsedyn.nn import MLP, NeuralODE, SecondOrderODE
from sparsedyn.runner import RunOutcome, train_experiment


class _Linear(torch.nn.Module):
    n_in = n_out = 2

    def __init__(self, A):
        super().__init__()
        self.A = torch.nn.Parameter(A)

    def forward(self, x):
        return x @ self.A.T


def test_neural_ode_matches_the_analytic_solution_of_a_linear_field():
    A = torch.tensor([[-0.5, 1.0], [-1.0, -0.2]], dtype=torch.float64)
    model = NeuralODE(_Linear(A), solver="dopri5", rtol=1e-9, atol=1e-10)
    x0 = torch.tensor([[1.0, 0.0], [0.3, -0.7]], dtype=torch.float64)
    t = torch.linspace(0, 3, 7, dtype=torch.float64)
    out = model(x0, t)
    exact = torch.stack([x0 @ torch.linalg.matrix_exp(A * tk).T for tk in t], dim=1)
    assert torch.allclose(out, exact, atol=1e-7)


def test_neural_ode_gradcheck():
    A = torch.tensor([[-0.5, 0.3], [0.2, -0.4]], dtype=torch.float64)
    model = NeuralODE(_Linear(A), solver="rk4", step_size=0.05)
    x0 = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 1, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: model(x, t), (x0,))


def test_intervention_holds_the_variable_in_the_model():
    model = NeuralODE(MLP(3, 3, (8,)), solver="rk4", step_size=0.1)
    out = model(torch.randn(4, 3), torch.linspace(0, 1, 6), intervention={1: 0.5})
    assert torch.allclose(out[:, :, 1], torch.full_like(out[:, :, 1], 0.5))
    with pytest.raises(ValueError, match="intervention"):
        model(torch.randn(4, 3), torch.linspace(0, 1, 6), intervention={5: 0.5})


@pytest.mark.parametrize("kind", ["node", "sonode"])
def test_intervention_holds_the_variable_with_lassonet_outer_skip(kind):
    """The bug: SONODE's outer skip was not masked, so a variable held at 1.0 read 1.59."""
    from sparsedyn.methods import LassoNet

    model = NeuralODE(MLP(3, 3, (8,)), solver="rk4", step_size=0.1) if kind == "node" else \
        SecondOrderODE(MLP(6, 3, (8,)), MLP(3, 3, (4,)), solver="rk4", step_size=0.1)
    model = LassoNet(lam=0.1, mode="outer").prepare(model)
    with torch.no_grad():
        model.outer_skip.weight.fill_(0.3)  # a skip that would move the held variable
    out = model(torch.randn(4, 3), torch.linspace(0, 1, 6), intervention={0: 1.0})
    assert torch.allclose(out[:, :, 0], torch.ones_like(out[:, :, 0]), atol=1e-6)
    assert not torch.allclose(out[:, -1, 1], out[:, 0, 1])  # the others still move


def test_bad_shapes_and_solver_are_rejected():
    model = NeuralODE(MLP(3, 3))
    with pytest.raises(ValueError, match="x0"):
        model(torch.randn(4, 2), torch.linspace(0, 1, 3))
    with pytest.raises(ValueError, match="t must"):
        model(torch.randn(4, 3), torch.tensor(0.0))
    with pytest.raises(ValueError, match="solver"):
        NeuralODE(MLP(3, 3), solver="leapfrog")
    with pytest.raises(ValueError, match="2n -> n"):
        SecondOrderODE(MLP(3, 3), MLP(3, 3))


@pytest.mark.parametrize("options,match", [
    ({"solver": "rk4", "step_size": 0.0}, "step_size"), ({"solver": "rk4", "step_size": -0.1}, "step_size"),
    ({"solver": "euler", "step_size": float("nan")}, "step_size"), ({"rtol": float("nan")}, "rtol"),
])
def test_solver_settings_that_cannot_integrate_are_refused_when_built(options, match):
    # step_size 0 used to surface at the first solve as torch's "unsupported range: 0 -> inf"
    with pytest.raises(ValueError, match=match):
        NeuralODE(MLP(3, 3), **options)


def test_an_initial_state_of_another_dtype_is_named():
    model = NeuralODE(MLP(3, 3), solver="rk4", step_size=0.25)
    with pytest.raises(ValueError, match="float64 but the model's parameters are torch.float32"):
        model(torch.zeros(2, 3, dtype=torch.float64), torch.linspace(0, 1, 3))
    assert model.double()(torch.zeros(2, 3, dtype=torch.float64), torch.linspace(0, 1, 3)).dtype == torch.float64


def _oscillator_run(kind: str, seed: int = 0) -> RunOutcome:
    cfg = parse_config({
        "name": f"osc-{kind}", "seed": seed,
        "task": {"system": "oscillators", "system_params": {"observe_velocities": kind == "node"},
                 "n_train": 8, "n_val": 4, "n_test": 4, "t_end": 5.0, "n_points": 26, "data_seed": 0},
        "model": {"kind": kind, "hidden": [32], "activation": "relu", "solver": "rk4", "step_size": 0.2},
        "trainer": {"epochs": 150, "lr": 0.02, "batch_size": 8, "lr_schedule": "cosine",
                    "eval_every": 150, "progress": False},
    })
    return train_experiment(cfg)


def test_sonode_and_node_fit_the_coupled_oscillators_with_fixed_seeds():
    """SONODE sees positions only; the NODE sees the full first-order state [X, V]."""
    so, node = _oscillator_run("sonode"), _oscillator_run("node")
    for outcome in (so, node):
        res = outcome.record
        zero = outcome.experiment.task.splits["test"].y.pow(2).mean().item()  # predicting 0
        assert res["metrics"]["test_mse"] < 0.2 * zero
        assert res["status"] == "completed"
    again = _oscillator_run("sonode")
    assert again.record["metrics"] == so.record["metrics"]  # same seed, same numbers
