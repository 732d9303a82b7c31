import numpy as np
import pytest

from sparsedyn.tasks.krumsiek import parse_couplings

HAND = """# modelType = hill
a = a and not b
b = a
c = b or c
# coupling list:
a   a    1.0
a   b   -1.0
b   a    1.0
c   b    0.5
c   c    1.0
"""


def test_couplings_give_the_target_by_source_adjacency():
    genes, G = parse_couplings(HAND)
    assert genes == ["a", "b", "c"]
    assert G.astype(int).tolist() == [[1, 1, 0], [1, 0, 0], [0, 1, 1]]
    with pytest.raises(ValueError, match="without a rule"):
        parse_couplings(HAND + "d   a   1.0\n")
    with pytest.raises(ValueError, match="target source weight"):
        parse_couplings(HAND + "c a\n")


@pytest.fixture(scope="module")
def scanpy():
    return pytest.importorskip("scanpy", reason="the Krumsiek task needs the optional scanpy (extra singlecell)")


def test_scanpys_myeloid_model_has_11_factors_and_30_couplings(scanpy):
    from sparsedyn.tasks.krumsiek import model_file

    genes, G = parse_couplings(model_file().read_text())
    assert len(genes) == 11 and int(G.sum()) == 30
    i = {g: k for k, g in enumerate(genes)}
    assert G[i["Gata2"], i["Pu.1"]] and G[i["EKLF"], i["Fli1"]] and not G[i["Gata2"], i["EKLF"]]


def test_task_cuts_seeded_windows_from_the_simulation(scanpy, tmp_path, monkeypatch):
    from sparsedyn.tasks.krumsiek import KrumsiekTask, simulate

    monkeypatch.setenv("SPARSEDYN_CACHE", str(tmp_path))
    a = KrumsiekTask(n_realizations=8, window=20, stride=10, data_seed=3)
    monkeypatch.setenv("SPARSEDYN_CACHE", str(tmp_path / "fresh"))
    b = KrumsiekTask(n_realizations=8, window=20, stride=10, data_seed=3)
    steps = simulate(8, 3, tmp_path).shape[1]  # saved steps per realisation of scanpy's krumsiek11 model
    per = (steps - 20) // 10 + 1
    assert a.splits["train"].y.shape == (6 * per, 20, 11) and a.splits["test"].y.shape == (per, 20, 11)
    assert np.array_equal(a.splits["train"].y.numpy(), b.splits["train"].y.numpy())  # same seed, same data
    # consecutive windows of one realisation overlap by window - stride steps
    assert np.array_equal(a.splits["train"].y[0, 10:].numpy(), a.splits["train"].y[1, :10].numpy())
    assert a.truth.shape == (11, 11)
