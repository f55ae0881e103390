"""AU regions of interest from 68 landmarks, by the EAC-Net / JAA-Net centre rules (paper Sec. 3.1, Eq. 1).

Each AU has two centres placed relative to landmarks, with `scale` = the distance between the inner eye corners
(iBUG-68 points 39 and 42, 0-based). "Above" is the face's up direction (perpendicular to the eye line), so the
rules hold on unaligned faces too.

    AU1        ½ scale above the inner brow ends (21, 22)
    AU2        ⅓ scale above the outer brow ends (17, 26)
    AU4        ⅓ scale below the brow centres (19, 24)
    AU6        1 scale below the lower-eyelid centres (mean 40,41 / 46,47)
    AU7        the eye centres (mean 36..41 / 42..47)
    AU10       the upper-lip peaks (50, 52)
    AU12/14/15 the lip corners (48, 54)
    AU17       ½ scale below the lower lip (56, 58)
    AU23/24    the lip centre (upper 51, lower 57)

An attention map is 1 at a centre and falls linearly with the Manhattan distance to 0 at `radius` pixels
(JAA-Net's rule), the two centres combined by max. Values lie in [0, 1]; a pixel is inside AU i's region when
its map is > 0.
"""

from __future__ import annotations

import numpy as np

from manifests.aus import AUS

RADIUS_FRAC = 0.14  # region radius as a fraction of the crop side (JAA-Net's spatial ratio)

_up = lambda e: np.stack([e[..., 1], -e[..., 0]], axis=-1)  # noqa: E731  rotate the eye direction to "up" (y down)


def _mean(lm: np.ndarray, idx) -> np.ndarray:
    return lm[..., list(idx), :].mean(axis=-2)


def au_centres(landmarks: np.ndarray) -> np.ndarray:
    """(..., 68, 2) landmarks (x, y) -> (..., 12, 2, 2) centres: [AU, which centre, xy], in AUS order."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape[-2:] != (68, 2):
        raise ValueError(f"landmarks must have shape (..., 68, 2), got {lm.shape}")
    eye_r, eye_l = _mean(lm, range(36, 42)), _mean(lm, range(42, 48))
    e = eye_l - eye_r
    e = e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-6)
    up = _up(e)[..., None, :]  # broadcast over the two centres
    scale = np.linalg.norm(lm[..., 42, :] - lm[..., 39, :], axis=-1)[..., None, None]

    def pair(a, b):
        return np.stack([a, b], axis=-2)

    pt = lambda i: lm[..., i, :]  # noqa: E731
    rules = {
        1: pair(pt(21), pt(22)) + up * scale / 2,
        2: pair(pt(17), pt(26)) + up * scale / 3,
        4: pair(pt(19), pt(24)) - up * scale / 3,
        6: pair(_mean(lm, (40, 41)), _mean(lm, (46, 47))) - up * scale,
        7: pair(eye_r, eye_l),
        10: pair(pt(50), pt(52)),
        12: pair(pt(48), pt(54)),
        14: pair(pt(48), pt(54)),
        15: pair(pt(48), pt(54)),
        17: pair(pt(56), pt(58)) - up * scale / 2,
        23: pair(pt(51), pt(57)),
        24: pair(pt(51), pt(57)),
    }
    return np.stack([rules[a] for a in AUS], axis=-3).astype(np.float32)


def attention_maps(landmarks: np.ndarray, size: int, radius: float | None = None) -> np.ndarray:
    """(..., 68, 2) landmarks in pixels of an S×S crop -> (..., 12, S, S) float32 maps A_i in [0, 1]."""
    radius = RADIUS_FRAC * size if radius is None else float(radius)
    c = au_centres(landmarks)  # (..., 12, 2, 2)
    coords = np.arange(size, dtype=np.float32)
    dx = np.abs(coords[None, :] - c[..., 0][..., None])  # (..., 12, 2, S) along x
    dy = np.abs(coords[None, :] - c[..., 1][..., None])  # (..., 12, 2, S) along y
    maps = None
    for k in range(2):  # one (..., 12, S, S) buffer per centre, in place: ~3x faster than all at once
        m = dy[..., k, :, None] + dx[..., k, None, :]  # Manhattan distance
        np.divide(m, np.float32(radius), out=m)
        np.subtract(np.float32(1.0), m, out=m)
        np.clip(m, 0.0, 1.0, out=m)
        maps = m if maps is None else np.maximum(maps, m, out=maps)
    return maps


def region_boxes(landmarks: np.ndarray, size: int, radius: float | None = None) -> np.ndarray:
    """(..., 68, 2) -> (..., 12, 4) int boxes (x0, y0, x1, y1), half-open, clipped to the crop, that hold
    every pixel where the AU's map is > 0. Cropping a region to its box loses nothing of it."""
    radius = RADIUS_FRAC * size if radius is None else float(radius)
    c = au_centres(landmarks)
    lo = np.floor(c.min(axis=-2) - radius).astype(np.int64)
    hi = np.ceil(c.max(axis=-2) + radius).astype(np.int64) + 1
    lo, hi = np.clip(lo, 0, size), np.clip(hi, 0, size)
    return np.concatenate([lo, hi], axis=-1)
