"""Synthetic inputs for the LAC-GAN tests: a 68-point face template, drawn faces and a small aligned store.

These are test data only (the real path reads the aligned store written by `lacgan align`).
"""

from __future__ import annotations

import numpy as np

from manifests.aligned import AlignedStore
from manifests.aus import N_AUS


def _ring(cx, cy, rx, ry, angles):
    a = np.radians(angles)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=-1)


def template_landmarks() -> np.ndarray:
    """A rough iBUG-68 face in unit coordinates (x right, y down)."""
    jaw = np.stack([np.linspace(0.1, 0.9, 17), 0.45 + 0.5 * np.sin(np.linspace(0, np.pi, 17)) * 0.95], axis=-1)
    brow_r = np.stack([np.linspace(0.18, 0.44, 5), [0.31, 0.28, 0.27, 0.28, 0.30]], axis=-1)  # 17..21
    brow_l = np.stack([np.linspace(0.56, 0.82, 5), [0.30, 0.28, 0.27, 0.28, 0.31]], axis=-1)  # 22..26
    nose_bridge = np.stack([np.full(4, 0.5), np.linspace(0.38, 0.56, 4)], axis=-1)  # 27..30
    nose_base = np.stack([np.linspace(0.43, 0.57, 5), [0.61, 0.62, 0.63, 0.62, 0.61]], axis=-1)  # 31..35
    eye_r = _ring(0.33, 0.41, 0.08, 0.03, [180, 240, 300, 0, 60, 120])  # 36..41 outer, upper, inner, lower
    eye_l = _ring(0.67, 0.41, 0.08, 0.03, [180, 240, 300, 0, 60, 120])  # 42..47 inner, upper, outer, lower
    mouth_out = _ring(0.5, 0.76, 0.14, 0.06, [180, 210, 240, 270, 300, 330, 0, 30, 60, 90, 120, 150])  # 48..59
    mouth_in = _ring(0.5, 0.76, 0.09, 0.02, [180, 240, 270, 300, 0, 60, 90, 120])  # 60..67
    pts = np.concatenate([jaw, brow_r, brow_l, nose_bridge, nose_base, eye_r, eye_l, mouth_out, mouth_in])
    assert pts.shape == (68, 2)
    return pts.astype(np.float32)


def faces(n: int, size: int, seed: int = 0):
    """n drawn faces (uint8), their landmarks (px, jittered) and labels; AU12 present lifts the mouth corners
    and brightens the mouth, AU4 present darkens the brows."""
    rng = np.random.default_rng(seed)
    lm = template_landmarks()[None] * size + rng.normal(0, size * 0.01, (n, 68, 2)).astype(np.float32)
    labels = rng.integers(0, 2, (n, N_AUS)).astype(np.int8)
    labels[rng.random((n, N_AUS)) < 0.1] = -1
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    imgs = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        skin = np.array([200, 160, 130]) + rng.normal(0, 15, 3)
        img = np.ones((size, size, 3)) * skin * (0.8 + 0.2 * (yy / size))[..., None]
        for p in lm[i, 17:27]:  # brows
            d = (xx - p[0]) ** 2 + (yy - p[1]) ** 2
            img[d < (size * 0.025) ** 2] = 40 if labels[i, 2] == 1 else 90
        for p in lm[i, 36:48]:  # eyes
            img[(xx - p[0]) ** 2 + (yy - p[1]) ** 2 < (size * 0.02) ** 2] = 30
        for p in lm[i, 48:60]:  # mouth
            lift = -size * 0.03 if labels[i, 6] == 1 else 0
            img[(xx - p[0]) ** 2 + (yy - p[1] - lift) ** 2 < (size * 0.02) ** 2] = (200, 60, 60) \
                if labels[i, 6] == 1 else (130, 50, 50)
        img += rng.normal(0, 4, img.shape)
        imgs[i] = np.clip(img, 0, 255).astype(np.uint8)
    return imgs, lm.astype(np.float32), labels


def make_store(path, n: int = 24, size: int = 64, seed: int = 0, folds=(1, 2, 3)) -> AlignedStore:
    """A complete aligned store of `n` drawn faces, folds cycling over `folds`."""
    imgs, lm, labels = faces(n, size, seed)
    store = AlignedStore.create(path, n=n, size=size, chunk=8)
    for s in range(0, n, 8):
        store.write_chunk(s, imgs[s:s + 8], lm[s:s + 8], {})
    store.group["row_id"][:] = np.arange(n)
    store.group["labels"][:] = labels
    store.group["fold"][:] = np.array([folds[i % len(folds)] for i in range(n)], np.int8)
    return store


def test_synthetic_store_is_readable(tmp_path):
    store = make_store(tmp_path / "s.zarr", n=10)
    imgs, lm, labels = store.read(np.arange(10))
    assert imgs.shape == (10, 64, 64, 3) and imgs.dtype == np.uint8
    assert lm.shape == (10, 68, 2) and (lm > 0).all() and (lm < 64).all()
    assert set(np.unique(labels)) <= {-1, 0, 1}
