import numpy as np
import pytest

from conftest import require_shared
from sparsedyn.tasks.hematopoiesis import load_lineage
from sparsedyn.tasks.hematopoiesis_floors import floors, running_mean


def test_running_mean_by_hand_and_its_window_check():
    X = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 3.0], [6.0, 0.0]])
    got = running_mean(X, 3)
    assert np.allclose(got[:, 0], [1.5, 2.0, 11 / 3, 4.5])  # the window shrinks to 2 cells at the ends
    assert np.allclose(got[:, 1], [0.0, 1.0, 1.0, 1.5])
    assert np.array_equal(running_mean(X, 1), X)
    with pytest.raises(ValueError, match="odd"):
        running_mean(X, 4)


def test_floors_against_hand_computations_on_the_real_data():
    data = require_shared("hematopoiesis")
    exact = floors(data, donors=("12", "24"), window=1)
    assert exact["own_smoothed"]["12"] < 1e-20 and exact["own_smoothed"]["24"] < 1e-20  # a 1-cell window: the cell
    assert exact["train_smoothed"]["12"] == pytest.approx(0.0, abs=1e-12)  # donor 12 predicts itself exactly
    hand = sum(np.mean((lin.X - lin.X.mean(0)) ** 2) for lin in (load_lineage(data, n, "24") for n in ("mono", "B")))
    assert exact["own_mean"]["24"] == pytest.approx(hand)
    assert exact["own_mean"]["mean"] == pytest.approx((exact["own_mean"]["12"] + hand) / 2)
    wide = floors(data, donors=("24",), window=31)
    # a wider window smooths away cell noise, so it can only lose against the cells themselves, and
    # a per-lineage running mean beats the lineage's constant mean
    assert 0.0 < wide["own_smoothed"]["24"] < wide["own_mean"]["24"]
