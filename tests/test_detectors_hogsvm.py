"""The OpenFace-style HOG + linear SVM detector (`hogsvm`)."""

import numpy as np
import pytest

from detectors.frames import FrameSource
from detectors.hogsvm import HogSvmConfig, HogSvmDetector, fit_svms, hog_features, normalise_by_sequence


def _bar_faces(n=40, size=48, seed=0):
    """Noise images; AU12 label = a bright horizontal bar in the lower half, AU1 = a dark bar in the upper half."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(80, 140, (n, size, size, 3), dtype=np.uint8)
    lab = np.zeros((n, 12), np.int8)
    lab[:, 6] = rng.integers(0, 2, n)  # AU12
    lab[:, 0] = rng.integers(0, 2, n)  # AU1
    lab[::7, 0] = -1
    imgs[lab[:, 6] == 1, 34:38, 10:38] = 250
    imgs[lab[:, 0] == 1, 8:11, 10:38] = 10
    return imgs, lab


def test_hog_feature_size_follows_the_cells():
    cfg = HogSvmConfig(size=32, cell=8, orientations=9)
    f = hog_features(np.zeros((2, 64, 64, 3), np.uint8), cfg)
    assert f.shape == (2, 3 * 3 * 2 * 2 * 9) and f.dtype == np.float32  # 4×4 cells -> 3×3 blocks of 2×2 cells


def test_sequence_median_normalisation():
    f = np.array([[1.0, 5.0], [3.0, 7.0], [2.0, 6.0], [10.0, 0.0]], np.float32)
    out = normalise_by_sequence(f, np.array(["a", "a", "a", "b"], dtype=object))
    np.testing.assert_allclose(out, [[-1, -1], [1, 1], [0, 0], [0, 0]])


def test_svms_learn_separable_aus_and_skip_single_class_ones(tmp_path):
    imgs, lab = _bar_faces()
    cfg = HogSvmConfig(size=48, normalise="none", C=0.1)
    feats = hog_features(imgs, cfg)
    aus, coef, icpt, mean, scale = fit_svms(feats, lab, cfg)
    assert aus == (1, 12)  # the other AUs are all 0 in training: left unsupported, never scored as zeros
    det = HogSvmDetector(cfg, aus, coef, icpt, mean, scale)
    test_imgs, test_lab = _bar_faces(seed=1)
    df = det.score(FrameSource.from_arrays(test_imgs, labels=test_lab))
    assert set(df["au"]) == {1, 12}
    au12 = df[df["au"] == 12].sort_values("frame_id")
    assert (au12["present"].to_numpy() == test_lab[:, 6]).mean() > 0.9
    assert ((au12["score"] > 0.5) == (au12["present"] == 1)).all()
    det.save(tmp_path, {"note": "test"})
    back = HogSvmDetector.load(tmp_path)
    np.testing.assert_allclose(back.margins(feats[:5]), det.margins(feats[:5]), rtol=1e-5)
    assert back.supported_aus == (1, 12) and not list(tmp_path.glob("*.pkl"))


def test_load_names_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="hogsvm.npz"):
        HogSvmDetector.load(tmp_path)


def test_train_and_score_smoke(aligned_store, tmp_path):
    from detectors.base import detector_preset, load_detector, train_detector

    summary = train_detector("hogsvm", aligned_store, tmp_path / "hog", detector_preset("hogsvm", "cpu", size=64),
                             test_fold=3)
    assert summary["train_frames"] > 0
    det = load_detector("hogsvm", tmp_path / "hog")
    fs = FrameSource.from_store(aligned_store, fold=3)
    df = det.score(fs)
    assert len(df) == len(fs) * len(det.supported_aus) and df["score"].between(0, 1).all()
