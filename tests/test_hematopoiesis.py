import numpy as np
import pytest

from conftest import require_shared
from sparsedyn.analysis import spurious_feature_sparsity
from sparsedyn.tasks.hematopoiesis import (
    initial_state,
    load_lineage,
    preprocess,
    read_lineage,
    transcription_factors,
)


@pytest.fixture(scope="module")
def data():
    return require_shared("hematopoiesis")


def test_preprocessing_on_a_real_file(data):
    times, X, genes = read_lineage(data, "eryth", "12")
    n_unique = len(np.unique(times))
    L = load_lineage(data, "eryth", "12")
    assert len(L.times) == n_unique - 30 and L.X.shape == (n_unique - 30, len(genes))
    assert np.all(np.diff(L.times) > 0) and L.times[0] == 0.0 and L.times[-1] == 1.0
    assert L.X.min() == 0.0 and L.X.max() == 1.0
    spans = L.X.max(0) - L.X.min(0)
    assert np.all((spans == 1.0) | (spans == 0.0))  # every gene spans [0, 1] or is constant (-> 0)
    # the kept cells are the sorted distinct times without the first 10 and last 20
    kept = np.sort(np.unique(times))[10:-20]
    assert np.allclose(L.times, (kept - kept[0]) / (kept[-1] - kept[0]))
    assert L.x0.shape == (len(genes),) and np.all((L.x0 >= 0) & (L.x0 <= 1))


def test_initial_state_reference_is_the_plain_mean_and_lineage_z_skips_outliers():
    X = np.zeros((40, 2))
    X[:5, 0] = [0.1, 0.2, 0.3, 0.2, 5.0]  # the fifth cell is an outlier for gene 0 over the lineage
    X[:5, 1] = [1.0, 1.0, 1.0, 1.0, 1.0]
    # the reference notebook: z among the first 5 cells, which can never reach 3 -> the plain mean
    assert initial_state(X) == pytest.approx([5.8 / 5, 1.0])
    assert initial_state(X, start="lineage_z") == pytest.approx([0.2, 1.0])
    with pytest.raises(ValueError, match="start must be one of"):
        initial_state(X, start="median")


def test_duplicate_times_are_dropped_and_short_lineages_rejected():
    times = np.r_[np.arange(40.0), [5.0, 5.0]]
    X = np.random.default_rng(0).random((42, 3))
    assert len(preprocess(times, X, ["a", "b", "c"]).times) == 40 - 30
    with pytest.raises(ValueError, match="distinct times"):
        preprocess(np.arange(20.0), np.zeros((20, 1)), ["a"])


def test_missing_file_and_unknown_lineage_fail_clearly(data, tmp_path):
    with pytest.raises(FileNotFoundError, match="no erythroid lineage for donor 24"):
        read_lineage(data, "eryth", "24")
    with pytest.raises(ValueError, match="lineage"):
        read_lineage(data, "neutrophil", "12")
    (tmp_path / "trajectories").mkdir()
    import gzip

    with gzip.open(tmp_path / "trajectories" / "B_12_norm.csv.gz", "wt") as f:
        f.write("time\tA\n0.1\t1\n")
    with pytest.raises(ValueError, match="dpt_pseudotime"):
        read_lineage(tmp_path, "B", "12")


def test_tf_prior_and_spurious_feature_sparsity(data):
    import csv
    import gzip

    tfs = transcription_factors(data)
    with gzip.open(data / "grn" / "tf_targets_baseGRN_human_matrix.csv.gz", "rt") as f:
        rows = list(csv.reader(f))[1:]  # an independent reading: the first column of every data row
    assert tfs == {r[0] for r in rows if r} and len(tfs) > 100 and "GATA1" in tfs
    D = np.array([[1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 1, 0]])
    can_be_parent = [True, False, True, False]  # columns 1 and 3 are non-TF genes
    # zeros among the 6 spurious-column entries: (0,1), (1,1), (0,3), (2,3) -> 4 / 6
    assert spurious_feature_sparsity(D, can_be_parent) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="one entry per input"):
        spurious_feature_sparsity(D, [True, False])


def test_parent_selectivity_and_its_variance_matched_null_by_hand():
    from sparsedyn.analysis import parent_selectivity

    D = np.array([[1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 1, 0]])  # 5 zero entries of 12
    can_be_parent = [True, False, True, False]
    # model: non-TF columns 1, 3 have 4 zeros of 6; TF columns 0, 2 have 1 of 6
    # null: variances order the columns 3, 0, 1, 2; cut 5 entries = column 3 (3) + 2/3 of column 0
    out = parent_selectivity(D, can_be_parent, [0.2, 0.5, 0.9, 0.1])
    assert out["spurious_cut"] == pytest.approx(4 / 6) and out["parent_cut"] == pytest.approx(1 / 6)
    assert out["selectivity"] == pytest.approx(0.5)
    assert out["null_spurious_cut"] == pytest.approx(0.5) and out["null_parent_cut"] == pytest.approx(1 / 3)
    assert out["null_selectivity"] == pytest.approx(0.5 - 1 / 3)
    with pytest.raises(ValueError, match="can and inputs that cannot"):
        parent_selectivity(D, [True] * 4, [1.0] * 4)
