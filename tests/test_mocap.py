import numpy as np
import pytest

from conftest import require_shared
from sparsedyn.tasks.mocap import (
    ACKNOWLEDGEMENT,
    benchmark_dims,
    forecast_mse,
    load_mocap35,
    load_walkjog,
    parse_amc,
    parse_asf,
)


@pytest.fixture(scope="module")
def data():
    return require_shared("mocap")


def test_asf_amc_parser_on_the_real_files(data):
    skel = parse_asf(data / "35.asf")
    assert skel.dofs["root"] == ["tx", "ty", "tz", "rx", "ry", "rz"]
    assert skel.dofs["rradius"] == ["rx"] and skel.dofs["lhumerus"] == ["rx", "ry", "rz"]
    motion = parse_amc(data / "35_01.amc", skel)
    assert motion.values.shape == (358, 62) and len(motion.channels) == 62
    assert motion.channels[:4] == ["root.tx", "root.ty", "root.tz", "root.rx"]
    assert motion.values[0, 0] == pytest.approx(4.40047)


def test_mocap35_first_training_sequence_equals_the_parsed_trial(data):
    splits = load_mocap35(data)
    assert {k: v.shape for k, v in splits.items()} == {"train": (16, 300, 50), "val": (3, 300, 50),
                                                        "test": (4, 300, 50)}
    ours = benchmark_dims(parse_amc(data / "35_01.amc", parse_asf(data / "35.asf")))
    assert np.allclose(ours, splits["train"][0], atol=1e-9)


def test_protocol_metric_hand_case_and_zero_predictor_about_33_7(data):
    truth = np.zeros((2, 5, 1))
    truth[0, :, 0] = [9, 9, 9, 1, 3]  # the first 3 frames are given, not scored
    truth[1, :, 0] = [9, 9, 9, 2, 2]
    assert forecast_mse(np.zeros_like(truth), truth) == pytest.approx(((1 + 9) / 2 + (4 + 4) / 2) / 2)
    test = load_mocap35(data)["test"]
    by_hand = np.mean([np.mean(seq[3:] ** 2) for seq in test])  # frames after the 3 given, per sequence
    assert forecast_mse(np.zeros_like(test), test) == pytest.approx(by_hand, rel=1e-12)
    assert round(by_hand, 1) == 33.7  # the figure quoted for the zero predictor, to its one decimal
    with pytest.raises(ValueError, match="shape"):
        forecast_mse(np.zeros((1, 5)), np.zeros((1, 5)))


def test_walkjog_sequences_split_by_labels(data):
    wj = load_walkjog(data)
    assert len(wj["train"]) == 31 and len(wj["test"]) == 2
    assert sum(len(s) for s in wj["train"]) == 2644 and sum(len(s) for s in wj["test"]) == 169
    assert all(s.shape[1] == 62 for s in wj["train"] + wj["test"])


def test_missing_and_malformed_files_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="mocap.cs.cmu.edu"):
        parse_amc(tmp_path / "nope.amc")
    bad = tmp_path / "bad.amc"
    bad.write_text(":FULLY-SPECIFIED\n1\nroot 1 2 x\n")
    with pytest.raises(ValueError, match="non-numeric"):
        parse_amc(bad)
    (tmp_path / "mocap35.mat").write_text("not matlab")
    with pytest.raises(ValueError, match="MATLAB"):
        load_mocap35(tmp_path)
    assert "NSF EIA-0196217" in ACKNOWLEDGEMENT


def test_amc_bone_with_wrong_value_count_is_named(data, tmp_path):
    bad = tmp_path / "short.amc"
    bad.write_text(":DEGREES\n1\nroot 1 2 3\n")
    with pytest.raises(ValueError, match="'root' has 3 values, the skeleton says 6"):
        parse_amc(bad, parse_asf(data / "35.asf"))
