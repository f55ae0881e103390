"""An OpenFace-style AU detector: HOG of the aligned face + one linear SVM per AU. Named `hogsvm`, never "OpenFace".

OpenFace's AU classifiers are, at heart, linear SVMs on HOG features of the aligned face (Baltrušaitis et al.,
2015). This detector builds the same idea from scikit-image and scikit-learn so the project has a second,
everywhere-available detector column:

    features   grayscale crop resized to `size`, scikit-image HOG (`cell` px cells, 2×2-cell blocks, L2-Hys)
    normalise  "none" (default): static, frame by frame; "sequence": subtract each sequence's median feature
               (OpenFace's dynamic models subtract a per-person median to remove identity). On the cohort's
               development folds (train fold 1 → validate fold 2 and back; fold 3 unseen) "sequence" lost
               ~8 F1 points: many cohort tasks hold an AU for most of the sequence, so the median is not neutral
    scaling    standardised with the training set's mean and std
    SVM        LinearSVC per AU, class_weight="balanced", unknown labels dropped per AU
    output     score = sigmoid(margin) in (0, 1) (no Platt fit), present = margin > 0

Saved as `hogsvm.npz` (coefficients, intercepts, scaler) + `config.json`: no pickles.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from skimage.feature import hog
from sklearn.svm import LinearSVC

from detectors.base import scores_table
from detectors.frames import FrameSource
from lacgan.atomic import replacing, write_text
from lacgan.progress import progress as show_progress
from manifests.aus import AUS

WEIGHTS, CONFIG = "hogsvm.npz", "config.json"


@dataclass(frozen=True)
class HogSvmConfig:
    size: int = 112  # crop resized to this before HOG (OpenFace aligns faces to 112×112)
    cell: int = 8  # HOG cell size in px (OpenFace: 8)
    orientations: int = 9  # HOG orientation bins
    normalise: str = "none"  # "none" (static, frame by frame) or "sequence" (per-sequence median subtracted)
    C: float = 0.01  # LinearSVC regularisation (small: many more features than subjects)
    max_iter: int = 5000  # LinearSVC iterations
    seed: int = 0  # seeds LinearSVC (its coordinate order)


PRESETS: dict[str, HogSvmConfig] = {"paper": HogSvmConfig(), "cpu": HogSvmConfig(size=96)}


def hog_features(images: np.ndarray, cfg: HogSvmConfig) -> np.ndarray:
    """uint8 (B, S, S, 3) RGB -> float32 (B, D) HOG descriptors."""
    out = []
    for im in images:
        g = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)
        if g.shape[0] != cfg.size:
            g = cv2.resize(g, (cfg.size, cfg.size), interpolation=cv2.INTER_AREA)
        out.append(hog(g, orientations=cfg.orientations, pixels_per_cell=(cfg.cell, cfg.cell),
                       cells_per_block=(2, 2), block_norm="L2-Hys", feature_vector=True))
    return np.asarray(out, dtype=np.float32)


def normalise_by_sequence(feats: np.ndarray, sequences: np.ndarray) -> np.ndarray:
    """Subtract each sequence's median feature vector (a no-op design for one-frame sequences: they become 0)."""
    out = feats.copy()
    for key in np.unique(sequences):
        m = sequences == key
        out[m] -= np.median(feats[m], axis=0)
    return out


def extract(frames: FrameSource, cfg: HogSvmConfig, batch: int = 256, desc: str = "hogsvm: HOG",
            progress: bool | str = True) -> np.ndarray:
    chunks = [hog_features(im, cfg) for _, im in show_progress(frames.batches(batch), total=-(-len(frames) // batch),
                                                                 desc=desc, mode=progress, leave=False)]
    feats = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    if cfg.normalise == "sequence":
        feats = normalise_by_sequence(feats, frames.sequences)
    elif cfg.normalise != "none":
        raise ValueError(f"hogsvm: normalise must be 'sequence' or 'none', got {cfg.normalise!r}")
    return feats


class HogSvmDetector:
    name = "hogsvm"

    def __init__(self, cfg: HogSvmConfig, aus: tuple[int, ...], coef: np.ndarray, intercept: np.ndarray,
                 mean: np.ndarray, scale: np.ndarray, meta: dict | None = None):
        self.cfg, self.supported_aus = cfg, tuple(int(a) for a in aus)
        self.coef, self.intercept, self.mean, self.scale = coef, intercept, mean, scale
        self.meta = meta or {}

    @classmethod
    def load(cls, weights_dir, **_) -> "HogSvmDetector":
        if weights_dir is None:
            raise ValueError("hogsvm needs --weights DIR (written by `lacgan detect train --detector hogsvm`)")
        d = Path(weights_dir)
        for f in (WEIGHTS, CONFIG):
            if not (d / f).exists():
                raise FileNotFoundError(f"{d / f}: missing; train first with `lacgan detect train --detector hogsvm`")
        meta = json.loads((d / CONFIG).read_text())
        if meta.get("detector") != "hogsvm":
            raise ValueError(f"{d / CONFIG}: written for detector {meta.get('detector')!r}, not hogsvm")
        with np.load(d / WEIGHTS, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("aus", "coef", "intercept", "mean", "scale")}
        cfg = HogSvmConfig(**meta["config"])
        return cls(cfg, tuple(arrays["aus"].tolist()), arrays["coef"], arrays["intercept"], arrays["mean"],
                   arrays["scale"], meta)

    def save(self, out_dir, summary: dict) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with replacing(out_dir / WEIGHTS) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no suffix
            np.savez(f, aus=np.asarray(self.supported_aus, np.int64), coef=self.coef, intercept=self.intercept,
                     mean=self.mean, scale=self.scale)
        digest = hashlib.sha256((out_dir / WEIGHTS).read_bytes()).hexdigest()[:16]
        self.meta = {"detector": "hogsvm", "config": asdict(self.cfg), "weights_sha256_16": digest,
                     "summary": summary}
        write_text(out_dir / CONFIG, json.dumps(self.meta, indent=2, default=str))
        return out_dir / WEIGHTS

    def settings(self) -> dict:
        return {"config": asdict(self.cfg), "weights_sha256_16": self.meta.get("weights_sha256_16"),
                "test_fold": self.meta.get("summary", {}).get("test_fold")}

    def margins(self, feats: np.ndarray) -> np.ndarray:
        """(n, D) features -> (n, len(supported_aus)) SVM margins."""
        return ((feats - self.mean) / self.scale) @ self.coef.T + self.intercept

    def score(self, frames: FrameSource) -> pd.DataFrame:
        feats = extract(frames, self.cfg, desc="hogsvm: scoring")
        m = self.margins(feats) if len(frames) else np.zeros((0, len(self.supported_aus)))
        return scores_table(frames.frame_ids, self.supported_aus, 1 / (1 + np.exp(-m)), (m > 0).astype(np.int8))


def fit_svms(feats: np.ndarray, labels: np.ndarray, cfg: HogSvmConfig, progress: bool | str = True):
    """Standardise, then one balanced LinearSVC per AU with both classes among its known labels.
    Returns (aus, coef (k, D), intercept (k,), mean, scale)."""
    mean = feats.mean(0)
    scale = feats.std(0) + 1e-6
    x = (feats - mean) / scale
    aus, coef, icpt = [], [], []
    for j, au in enumerate(show_progress(AUS, total=len(AUS), desc="hogsvm: SVMs", mode=progress, leave=False)):
        keep = labels[:, j] != -1
        y = labels[keep, j]
        if len(np.unique(y)) < 2:
            print(f"hogsvm: AU{au} has a single class among training labels; left unsupported")
            continue
        svm = LinearSVC(C=cfg.C, class_weight="balanced", max_iter=cfg.max_iter, random_state=cfg.seed)
        svm.fit(x[keep], y)
        aus.append(au)
        coef.append(svm.coef_[0])
        icpt.append(svm.intercept_[0])
    return tuple(aus), np.asarray(coef, np.float32), np.asarray(icpt, np.float32), mean, scale


def train_hogsvm(store_path, out_dir, cfg: HogSvmConfig, test_fold: int = 3, minutes: float | None = None,
                 extra=None, progress: bool | str = True) -> dict:
    """Fit on every fold but `test_fold`, plus the `extra` frames (detectors.frames.ExtraFrames) when given; save;
    report held-out metrics. `progress` is a lacgan.progress mode. (`minutes` is accepted for symmetry with
    JAA-Net's trainer; fitting is one pass and is not cut short.)"""
    from detectors.metrics import au_metrics

    t0 = time.time()
    frames = FrameSource.from_store(store_path)
    folds = _folds(store_path)[frames.rows]
    train = frames.subset(folds != test_fold)
    if not len(train):
        raise ValueError(f"{store_path}: no aligned frames outside test fold {test_fold}")
    feats, labels = extract(train, cfg, progress=progress), train.labels
    for more in extra or ():
        feats = np.concatenate([feats, extract(more.frames, cfg, desc="hogsvm: HOG (extra)", progress=progress)])
        labels = np.concatenate([labels, more.frames.labels])
    aus, coef, icpt, mean, scale = fit_svms(feats, labels, cfg, progress)
    det = HogSvmDetector(cfg, aus, coef, icpt, mean, scale)
    summary = {"test_fold": test_fold, "train_frames": int(len(train)), "seed": cfg.seed,
               "extra_frames": int(len(labels) - len(train)), "train_minutes": round((time.time() - t0) / 60, 2)}
    det.save(out_dir, summary)
    test = frames.subset(folds == test_fold)
    if len(test):
        table = au_metrics(test.labels, det.score(test), det.supported_aus, test.frame_ids)
        summary["held_out"] = {"metrics": table.to_dict(orient="records")}
    else:
        summary["held_out"] = {"note": f"fold {test_fold} has no aligned frames"}
    det.save(out_dir, summary)
    return summary


def _folds(store_path) -> np.ndarray:
    from manifests.aligned import AlignedStore

    return AlignedStore.open(store_path).folds()
