"""detectors.metrics and the score-table helpers of detectors.base, against hand-computed values."""

import numpy as np
import pandas as pd
import pytest

from detectors.base import read_detector_scores, scores_table, write_detector_scores
from detectors.frames import FrameError, FrameSource
from detectors.metrics import au_metrics, format_table
from manifests.aus import AUS


def _labels_and_pred():
    lab = np.zeros((6, 12), np.int8)
    pred = np.zeros((6, 12), np.int8)
    lab[:, 0] = [1, 1, 0, 0, -1, 1]  # AU1; frame 4 unknown -> dropped
    pred[:, 0] = [1, 0, 0, 1, 1, 1]  # TP 2 (frames 0, 5), FN 1 (1), FP 1 (3), TN 1 (2)
    lab[:, 1] = [0, 0, 0, 0, 0, 1]  # AU2: one positive, predicted never
    return lab, pred


def test_f1_and_accuracy_match_a_hand_computed_confusion_matrix():
    lab, pred = _labels_and_pred()
    m = au_metrics(lab, pred).set_index("au")
    assert m.loc["1", "n"] == 5 and m.loc["1", "positives"] == 3
    assert m.loc["1", "f1"] == pytest.approx(100 * 4 / 6)  # 2TP / (2TP + FP + FN)
    assert m.loc["1", "acc"] == pytest.approx(100 * 3 / 5)
    assert m.loc["1", "baseline_f1"] == pytest.approx(100 * 6 / 8)  # always present: TP 3, FP 2
    assert m.loc["1", "baseline_acc"] == pytest.approx(100 * 3 / 5)
    assert m.loc["2", "f1"] == 0.0 and m.loc["2", "acc"] == pytest.approx(100 * 5 / 6)
    assert m.loc["mean", "f1"] == pytest.approx(m.loc[[str(a) for a in AUS], "f1"].mean())


def test_unsupported_aus_are_nan_and_left_out_of_the_mean():
    lab, pred = _labels_and_pred()
    sup = tuple(a for a in AUS if a != 2)
    m = au_metrics(lab, pred, sup).set_index("au")
    assert np.isnan(m.loc["2", "f1"]) and np.isnan(m.loc["2", "acc"])
    assert not np.isnan(m.loc["2", "baseline_f1"])
    assert m.loc["mean", "f1"] == pytest.approx(m.loc[[str(a) for a in sup], "f1"].mean())
    assert m.loc["mean", "baseline_f1"] == pytest.approx(m.loc[[str(a) for a in sup], "baseline_f1"].mean())
    assert "−" in format_table(m.reset_index())


def test_long_table_gives_the_same_numbers_and_drops_failed_frames():
    lab, pred = _labels_and_pred()
    ids = np.arange(100, 106)
    long = scores_table(ids[::-1], AUS, pred[::-1].astype(np.float32), pred[::-1])  # order must not matter
    wide = au_metrics(lab, pred)
    from_long = au_metrics(lab, long, AUS, frame_ids=ids)
    pd.testing.assert_frame_equal(wide, from_long)
    status = np.array(["ok"] * 5 + ["openface: no face"], dtype=object)  # frame_id 100 (reversed) failed
    failed = au_metrics(lab, scores_table(ids[::-1], AUS, pred[::-1], pred[::-1], status), AUS, ids)
    assert failed.set_index("au").loc["1", "n"] == 4  # frame 0 (id 100) dropped besides the unknown one


def test_labels_of_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="labels must be"):
        au_metrics(np.zeros((3, 11), np.int8), np.zeros((3, 12)))


def test_score_table_round_trip_keeps_metadata(tmp_path):
    class Dummy:
        name, supported_aus = "dummy", (1, 2)

        def settings(self):
            return {"grouping": "static"}

    df = scores_table(np.array([5, 7]), (1, 2), np.array([[0.1, 0.9], [0.6, 0.2]]), np.array([[0, 1], [1, 0]]))
    assert list(df["au"]) == [1, 2, 1, 2] and list(df["frame_id"]) == [5, 5, 7, 7]
    path = write_detector_scores(df, tmp_path / "s.parquet", Dummy())
    back, info = read_detector_scores(path)
    assert info == {"detector": "dummy", "supported_aus": (1, 2), "settings": {"grouping": "static"}}
    assert back["score"].dtype == np.float32 and back["present"].dtype == np.int8
    bad = scores_table(np.array([5]), (1, 4), np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="unsupported AUs"):
        write_detector_scores(bad, tmp_path / "bad.parquet", Dummy())
    assert not (tmp_path / "bad.parquet").exists()


def test_frame_source_batches_and_groups():
    imgs = np.arange(5 * 4 * 4 * 3, dtype=np.uint8).reshape(5, 4, 4, 3)
    fs = FrameSource.from_arrays(imgs, frame_ids=[9, 3, 4, 1, 2], sequences=["a", "a", "b", "b", "a"])
    batches = list(fs.batches(2))
    assert [len(b[0]) for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), imgs)
    groups = fs.sequence_groups()
    assert groups["a"].tolist() == [4, 1, 0]  # frame ids 2, 3, 9: frame_id order
    sub = fs.subset(np.array([False, True, True, False, False]))
    assert sub.frame_ids.tolist() == [3, 4] and np.array_equal(sub.read([0]), imgs[[1]])
    with pytest.raises(FrameError, match="uint8"):
        FrameSource.from_arrays(imgs.astype(np.float32))
    with pytest.raises(FrameError, match="unique"):
        FrameSource.from_arrays(imgs, frame_ids=[1, 1, 2, 3, 4])
