"""Training data over the aligned store: training-fold faces, per-step batches and sampled target labels.

Every batch is a pure function of (seed, step): the rows and target labels are drawn from
`numpy.random.default_rng([seed, step])`, so a resumed run sees exactly the batches an uninterrupted one would.

Targets are unpaired (the paper): each known source label flipped with probability `target_flip`. With
`pair_prob` > 0, that share of each batch instead takes the labels of a *partner*: another frame of the same
sequence (subject and task, the same recording session), whose image the sequence-paired term compares the edit
with (LossConfig.lambda_pair). BP4D has such sequences as much as the cohort does; nothing else is paired.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lacgan.compose import Windows, fit_window, to_float
from lacgan.config import LacganConfig, NetConfig
from lacgan.losses import Batch
from manifests.aligned import AlignedStore, StoreError
from manifests.aus import N_AUS

CACHE_LIMIT = 2 << 30  # load the training faces into memory when they take at most this many bytes


# Landmarks that AUs do not move (the cohort's AU displacement fields and FACS agree): the face outline above the
# chin, the nose, the eye corners. A partner frame is registered onto its source on these.
RIGID_LANDMARKS = (*range(0, 6), *range(11, 17), *range(27, 36), 36, 39, 42, 45)


def rigid_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) similarity (rotation, uniform scale, shift) mapping points `src` (n, 2) onto `dst` (n, 2), least
    squares (Umeyama)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, sv, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1.0, d]) @ vt
    scale = (sv * [1.0, d]).sum() / max((a ** 2).sum(), 1e-12)
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - scale * rot @ ms
    return m


def register(images: np.ndarray, landmarks: np.ndarray, onto: np.ndarray) -> np.ndarray:
    """Each face of `images` (n, S, S, 3) uint8 warped so that its rigid landmarks (RIGID_LANDMARKS of
    `landmarks`) fall on those of `onto` (n, 68, 2): a same-sequence partner then lies pixel for pixel on its
    source wherever the AUs did not move anything (the crops are aligned on points AUs move: the mouth corners)."""
    import cv2

    idx = list(RIGID_LANDMARKS)
    out = np.empty_like(images)
    for k in range(len(images)):
        m = rigid_similarity(landmarks[k, idx], onto[k, idx])
        out[k] = cv2.warpAffine(images[k], m, images.shape[2:0:-1], flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


def sample_targets(labels: np.ndarray, rng: np.random.Generator, flip: float) -> np.ndarray:
    """Unpaired targets: each known source label flipped with probability `flip`; unknown ones drawn 0/1."""
    labels = np.asarray(labels, np.int8)
    flips = rng.random(labels.shape) < flip
    coin = (rng.random(labels.shape) < 0.5).astype(np.int8)
    return np.where(labels < 0, coin, np.where(flips, 1 - labels, labels)).astype(np.int8)


@dataclass
class FaceData:
    """Faces of one aligned store split into training rows (folds ≠ test_fold) and held-out rows."""

    path: Path
    size: int
    train_rows: np.ndarray
    held_rows: np.ndarray
    _store: AlignedStore
    _cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # train images, landmarks, labels
    _sequences: np.ndarray | None = None  # (len(train_rows),) int sequence id of each training row
    _label_cache: np.ndarray | None = None  # labels of the training rows (when the images are not cached)

    @classmethod
    def open(cls, path, size: int, test_fold: int, cache: bool = True) -> "FaceData":
        store = AlignedStore.open(path)
        if store.size != size:
            raise StoreError(f"{path}: crops are {store.size} px but the config wants {size} px "
                             f"(align with --size {size}, or pick a preset of that size)")
        ok = store.ok_rows()
        folds = store.folds()[ok]
        train, held = ok[folds != test_fold], ok[folds == test_fold]
        if len(train) == 0:
            raise StoreError(f"{path}: no aligned rows outside test fold {test_fold} to train on "
                             f"(folds present: {sorted(set(folds.tolist()))})")
        data = cls(Path(path), size, train, held, store)
        if cache and len(train) * size * size * 3 <= CACHE_LIMIT:
            data._cache = store.read(train)
        return data

    def __len__(self) -> int:
        return len(self.train_rows)

    def sequences(self) -> np.ndarray:
        """(len(train_rows),) int: the sequence (subject/task) of each training row, from the store's manifest."""
        if self._sequences is None:
            from detectors.frames import store_sequences

            keys = store_sequences(self._store)[self.train_rows]
            self._sequences = np.unique(keys, return_inverse=True)[1].astype(np.int64)
        return self._sequences

    def partners(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For each training index, another training index of the same sequence (itself when it is alone)."""
        seq = self.sequences()
        out = np.empty_like(idx)
        for k, i in enumerate(idx):
            pool = np.flatnonzero(seq == seq[i])
            pool = pool[pool != i] if len(pool) > 1 else pool
            out[k] = pool[rng.integers(len(pool))]
        return out

    def train_landmarks(self) -> np.ndarray:
        if self._cache is not None:
            return self._cache[1]
        return self._store.landmarks.get_orthogonal_selection((self.train_rows, slice(None), slice(None)))

    def read_train(self, idx: np.ndarray):
        """idx into train_rows -> (images uint8, landmarks float32, labels int8)."""
        if self._cache is not None:
            return tuple(a[idx] for a in self._cache)
        order = np.argsort(idx)  # zarr reads sorted rows faster; undo the sort afterwards
        out = self._store.read(self.train_rows[idx[order]])
        inv = np.argsort(order)
        return tuple(a[inv] for a in out)

    def batch(self, step: int, batch_size: int, seed: int, flip: float, pair_prob: float = 0.0,
              rows: slice | None = None, pair_register: bool = False):
        """The batch of `step`: (images uint8, landmarks, labels, targets, partner images uint8 | None,
        paired (B,) bool | None), all numpy; `pair_register`: partners warped onto their sources (`register`).
        `rows` (torchrun: this rank's `distributed.Shard.rows`): the
        whole batch is drawn as in one process and only these rows are read and returned."""
        rows = rows or slice(0, batch_size)
        rng = np.random.default_rng([seed, step])
        idx = rng.integers(0, len(self.train_rows), size=batch_size)
        targets = sample_targets(self.train_labels(idx), rng, flip)[rows]
        images, landmarks, labels = self.read_train(idx[rows])
        if pair_prob <= 0:
            return images, landmarks, labels, targets, None, None
        pair_rng = np.random.default_rng([seed, step, 2])  # its own stream: unpaired batches stay as they were
        paired = pair_rng.random(batch_size) < pair_prob
        partners = self.partners(idx, pair_rng)[rows]
        paired = paired[rows]
        partner_images, partner_landmarks, partner_labels = self.read_train(partners)
        if pair_register:
            partner_images = register(partner_images, partner_landmarks, landmarks)
        targets = np.where(paired[:, None], partner_labels, targets).astype(np.int8)
        return images, landmarks, labels, targets, partner_images, paired

    def train_labels(self, idx: np.ndarray) -> np.ndarray:
        """idx into train_rows -> labels (int8), without reading images."""
        if self._cache is not None:
            return self._cache[2][idx]
        return self._labels()[idx]

    def _labels(self) -> np.ndarray:
        if self._label_cache is None:
            self._label_cache = np.asarray(self._store.labels())[self.train_rows]
        return self._label_cache

    def held_out(self, n: int):
        """`n` held-out faces spread evenly over the test fold (training faces when the fold is empty)."""
        rows = self.held_rows if len(self.held_rows) else self.train_rows
        pick = rows[np.linspace(0, len(rows) - 1, num=min(n, len(rows))).round().astype(int)]
        return self._store.read(pick)


def to_batch(images: np.ndarray, landmarks: np.ndarray, labels: np.ndarray, targets: np.ndarray,
             net: NetConfig, device, partner: np.ndarray | None = None, paired: np.ndarray | None = None) -> Batch:
    """numpy arrays -> a Batch on `device` with one region window per generator group of `net`."""
    from lacgan.networks import region_groups

    check_arrays(images, landmarks, targets, net.size)
    win = Windows.from_landmarks(landmarks, net.size, net.window, net.regions, region_groups(net)).to(device)
    as_float = lambda a: to_float(torch.from_numpy(np.ascontiguousarray(a))).to(device)  # noqa: E731
    return Batch(images=as_float(images), win=win,
                 labels=torch.from_numpy(np.asarray(labels, np.int64)).to(device),
                 targets=torch.from_numpy(np.asarray(targets, np.int64)).to(device),
                 partner=None if partner is None else as_float(partner),
                 paired=None if paired is None else torch.from_numpy(np.asarray(paired, bool)).to(device))


def check_arrays(images: np.ndarray, landmarks: np.ndarray, labels: np.ndarray, size: int) -> None:
    """Clear errors for arrays that cannot be edited together."""
    images, landmarks, labels = np.asarray(images), np.asarray(landmarks), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise ValueError(f"images must be uint8 (n, {size}, {size}, 3), got {images.dtype} {images.shape}")
    if landmarks.shape != (len(images), 68, 2):
        raise ValueError(f"landmarks must be ({len(images)}, 68, 2) to match {len(images)} images, "
                         f"got {landmarks.shape}")
    if labels.ndim != 2 or labels.shape != (len(images), N_AUS):
        raise ValueError(f"target labels must be ({len(images)}, {N_AUS}) (one per AU, AUS order), "
                         f"got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"target labels must be integers in {{-1, 0, 1}}, got dtype {labels.dtype}")
    bad = ~np.isin(labels, (-1, 0, 1))
    if bad.any():
        raise ValueError(f"target labels must be in {{-1, 0, 1}}; found {sorted(set(labels[bad].tolist()))}")


def fit_to_faces(cfg: LacganConfig, landmarks: np.ndarray) -> LacganConfig:
    """A config whose face-fitted values are set, each kept when given, else fitted to these faces' landmarks
    (n, 68, 2): the CARG window (their regions) and, for condition_on "overlap", the AUs each generator reads (the
    regions that overlap its own on their mean face)."""
    net = {}
    if cfg.net.window is None:
        net["window"] = fit_window(landmarks, cfg.net.size, cfg.net.regions)
    if cfg.net.condition_on == "overlap" and cfg.net.reads is None:
        from lacgan.networks import region_groups
        from lacgan.regions import overlapping_aus

        net["reads"] = overlapping_aus(landmarks, cfg.net.size, cfg.net.regions, region_groups(cfg.net))
    return cfg.replace(net=net) if net else cfg


def resolve_fitted(cfg: LacganConfig, data: FaceData) -> LacganConfig:
    """`fit_to_faces` on the training faces (what training calls before building the networks)."""
    return fit_to_faces(cfg, data.train_landmarks())
