import numpy as np
import pytest
import torch

from conftest import require_shared
from sparsedyn.nn.fields import MLP
from sparsedyn.nn.masks import add_mask
from sparsedyn.nn.ode import NeuralODE
from sparsedyn.tasks.hematopoiesis import Lineage, load_lineage
from sparsedyn.tasks.hematopoiesis_task import (
    HematopoiesisTask,
    interpolate,
    lineage_trajectories,
    summed_lineage_mse,
)


@pytest.fixture(scope="module")
def data():
    return require_shared("hematopoiesis")


@pytest.fixture(scope="module")
def task(data):
    return HematopoiesisTask(data_dir=data)


def test_interpolation_matches_numpy():
    grid = torch.linspace(0, 1, 6, dtype=torch.float64)
    values = torch.randn(2, 6, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 0.13, 0.5, 0.77, 1.0], dtype=torch.float64)
    got = interpolate(grid, values, t)
    for b in range(2):
        for k in range(3):
            assert np.allclose(got[b, :, k].numpy(), np.interp(t.numpy(), grid.numpy(), values[b, :, k].numpy()))
    with pytest.raises(ValueError, match="times must lie"):
        interpolate(grid, values, torch.tensor([1.5], dtype=torch.float64))


def test_lineages_on_a_union_grid_are_scored_at_their_own_cells_and_summed():
    a = Lineage(np.array([0.0, 0.5, 1.0]), np.array([[1.0], [2.0], [3.0]]), np.array([1.0]), ["g"])
    b = Lineage(np.array([0.0, 0.25, 1.0]), np.array([[0.0], [4.0], [0.0]]), np.array([0.0]), ["g"])
    data = lineage_trajectories([a, b])
    assert data.t.tolist() == [0.0, 0.25, 0.5, 1.0]
    assert data.mask.tolist() == [[True, False, True, True], [True, True, False, True]]
    pred = torch.zeros(2, 4, 1)
    # lineage a: (1 + 4 + 9) / 3; lineage b: (0 + 16 + 0) / 3; their sum
    assert float(summed_lineage_mse(pred, data)) == pytest.approx(14 / 3 + 16 / 3)
    assert data.meta["x0"].tolist() == [[1.0], [0.0]]


def test_constant_model_scores_equal_a_hand_computation(data, task):
    model = NeuralODE(MLP(529, 529, [4]), solver="rk4", step_size=0.02)
    for p in model.parameters():
        torch.nn.init.zeros_(p)  # x(t) = x0: each lineage predicted by its initial state
    got = task.evaluate(model)
    donors = {"12": ("eryth", "mono", "B"), "24": ("mono", "B")}
    for donor, lineages in donors.items():
        hand = 0.0
        for name in lineages:
            lin = load_lineage(data, name, donor)
            hand += np.mean((lin.X - lin.x0) ** 2)
        key = "train_mse" if donor == "12" else f"test_{donor}_mse"
        assert got[key] == pytest.approx(hand, rel=1e-4)
    assert got["test_mse"] == pytest.approx(np.mean([got[f"test_{d}_mse"] for d in ("11", "21", "24", "36")]))
    assert task.splits["test_24"].y.shape[0] == 2  # the data set has no erythroid lineage for donor 24


def test_spurious_sparsity_counts_zero_dependencies_on_non_tfs(task):
    field = MLP(529, 529, [3])
    model = NeuralODE(field)
    non_tf = torch.tensor(~task.tf_mask)
    mask = add_mask(field.layers[0], "weight").mask  # (hidden, inputs)
    mask[:, non_tf] = 0.0  # no path from any non-TF gene
    assert task.analyse(model)["spurious_feature_sparsity"] == 1.0
    mask[0, int(torch.nonzero(non_tf)[0])] = 1.0  # one non-TF gene now reaches every output
    expected = 1 - 529 / (529 * int(non_tf.sum()))
    assert task.analyse(model)["spurious_feature_sparsity"] == pytest.approx(expected)


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="hematopoiesis file not found"):
        HematopoiesisTask(data_dir=tmp_path)


def test_initial_state_noise_perturbs_only_the_training_starts_repeatably(data, task):
    noisy_task = HematopoiesisTask(data_dir=data, test_donors=["24"], steps_per_epoch=3, x0_noise=0.05)
    train = noisy_task.splits["train"]
    batches = list(noisy_task.train_batches(3, torch.Generator().manual_seed(7)))
    again = list(noisy_task.train_batches(3, torch.Generator().manual_seed(7)))
    assert len(batches) == 3
    for b, a in zip(batches, again):
        assert torch.equal(b.meta["x0"], a.meta["x0"])  # same seed, same starts
        assert torch.equal(b.y, train.y) and torch.equal(b.mask, train.mask)
        noise = b.meta["x0"] - train.meta["x0"]
        assert abs(float(noise.std()) - 0.05) < 0.005 and abs(float(noise.mean())) < 0.005
    assert not torch.equal(batches[0].meta["x0"], batches[1].meta["x0"])  # fresh noise each step
    assert torch.equal(train.meta["x0"], task.splits["train"].meta["x0"])  # the split itself is untouched
    plain = list(task.train_batches(3, torch.Generator().manual_seed(7)))
    assert all(b is task.splits["train"] for b in plain)
    with pytest.raises(ValueError, match="x0_noise"):
        HematopoiesisTask(data_dir=data, test_donors=["24"], x0_noise=-0.1)
