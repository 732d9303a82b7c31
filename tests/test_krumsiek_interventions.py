"""The boolean-rule ODE of the Krumsiek network and its interventional forecasting task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from sparsedyn.tasks.boolean_ode import BooleanODE
from sparsedyn.tasks.krumsiek_interventions import KrumsiekInterventionsTask, all_interventions


def test_the_graph_is_the_genes_each_rule_reads_and_matches_scanpys_coupling_list():
    net = BooleanODE()
    assert net.adjacency.sum() == 30 and len(net.genes) == 11
    i = net.genes.index
    assert set(np.flatnonzero(net.adjacency[i("Gata2")])) == {i("Gata2"), i("Gata1"), i("Fog1"), i("Pu.1")}
    krumsiek = pytest.importorskip("sparsedyn.tasks.krumsiek")
    try:
        genes, G = krumsiek.parse_couplings(krumsiek.model_file().read_text())
    except ImportError as e:
        print(f"scanpy not installed: {e}")
        pytest.skip("scanpy (the singlecell extra) is not installed: no coupling list to compare with")
    assert genes == net.genes and (net.adjacency == G).all()


def test_fuzzy_logic_and_hill_functions_by_hand():
    net = BooleanODE("a = a and not b\nb = a or b\nc = not (a and b)", hill_n=2.0, hill_k=0.5)
    assert net.hill(np.array([0.0, 1.0])) == pytest.approx([0.0, 1.0])
    x = np.array([0.5, 0.25, 0.9])
    h = x ** 2 / (x ** 2 + 0.25) * 1.25  # normalised Hill, n = 2, k = 0.5
    expected = np.array([h[0] * (1 - h[1]), h[0] + h[1] - h[0] * h[1], 1 - h[0] * h[1]]) - x
    assert net.rhs(x) == pytest.approx(expected)


def test_simulation_matches_an_independent_solver_and_interventions_hold_their_gene():
    net = BooleanODE()
    rng = np.random.default_rng(1)
    x0 = rng.random((3, 11))
    t = np.linspace(0, 3, 7)
    ours = net.simulate(x0, t, substeps=20)
    for b in range(3):
        ref = solve_ivp(lambda _, s: net.rhs(s), (0, 3), x0[b], t_eval=t, rtol=1e-10, atol=1e-12).y.T
        assert np.abs(ours[b] - ref).max() < 1e-6
    held = net.simulate(x0, t, {3: 1.0})
    assert (held[:, :, 3] == 1.0).all() and not np.allclose(held, ours)


def test_the_task_trains_on_some_interventions_and_scores_the_held_out_ones():
    task = KrumsiekInterventionsTask(n_per_condition=4, n_val_per_condition=2, n_test=4, n_test_per_held_out=3,
                                     held_out=5, n_points=5, data_seed=3)
    assert len(task.held_out) == 5 and len(task.trained) == 1 + 22 - 5 and task.trained[0] is None
    assert not any(h in task.trained for h in task.held_out)
    assert sorted(map(str, task.held_out + task.trained[1:])) == sorted(map(str, all_interventions(11)))
    for d, do in zip(task.conditions["test_intervention"], task.held_out):
        (k, c), = do.items()
        assert d.intervention == do and (d.y[:, :, k] == c).all()
    # one condition a batch, the same condition sequence whatever the run's generator (stacked members align)
    seq = [[b.intervention for b in task.train_batches(2, torch.Generator().manual_seed(s))] for s in (0, 1)]
    assert seq[0] == seq[1] and len(seq[0]) == 2 * len(task.trained)
    scores = task.evaluate(_Zero())
    assert set(scores) == {"val_mse", "test_mse", "test_intervention_mse"}
    expected = np.mean([float((d.y ** 2).mean()) for d in task.conditions["test_intervention"]])
    assert scores["test_intervention_mse"] == pytest.approx(expected, rel=1e-5)


class _Zero(torch.nn.Module):
    def forward(self, x0, t, intervention=None):
        return torch.zeros(x0.shape[0], len(t), x0.shape[1])


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="held_out\n.*less than or equal to 21"):
        KrumsiekInterventionsTask(held_out=22)
    with pytest.raises(ValueError, match=r"rule 1 \(a\)"):
        BooleanODE("a = b +")
    with pytest.raises(ValueError, match="only gene names"):
        BooleanODE("a = a + a")
    with pytest.raises(ValueError, match="'b' is not a gene with a rule"):
        BooleanODE("a = a and b")


def test_the_true_jacobian_by_hand_and_the_ceiling_of_the_jacobian_read_out():
    net = BooleanODE("a = a and not b\nb = a or b\nc = not (a and b)", hill_n=2.0, hill_k=0.5)
    x = np.array([0.5, 0.25, 0.9])
    h = x ** 2 / (x ** 2 + 0.25) * 1.25
    dh = 1.25 * 2 * x * 0.25 / (x ** 2 + 0.25) ** 2
    expected = np.array([
        [dh[0] * (1 - h[1]) - 1, -h[0] * dh[1], 0.0],
        [dh[0] * (1 - h[1]), dh[1] * (1 - h[0]) - 1, 0.0],
        [-dh[0] * h[1], -h[0] * dh[1], -1.0],
    ])
    assert net.jacobian(x) == pytest.approx(expected, abs=1e-8)
    assert net.jacobian(np.stack([x, x])).shape == (2, 3, 3)
    task = KrumsiekInterventionsTask(n_per_condition=4, n_val_per_condition=2, n_test=4, n_test_per_held_out=2)
    ceiling = task.true_jacobian_recovery()
    # off the diagonal the true field depends on exactly the graph's edges: a perfect ranking
    assert ceiling["auroc_offdiag"] == 1.0 and ceiling["auprc_offdiag"] == 1.0
    # every gene decays, so all 11 diagonal entries score high while only 4 are edges of the graph
    assert int(np.trace(task.truth)) == 4 and ceiling["auroc"] < 0.95
