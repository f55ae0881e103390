"""JAA-Net input handling: resize to the input size, random crop + mirror for training, centre crop for testing.

All functions are pure (numpy in, numpy out; randomness from a passed Generator).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from detectors.jaanet.landmarks import flip_landmarks

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # RGB -> gray (ITU-R BT.601)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (B, S, S, 3) -> uint8 (B, size, size, 3)."""
    if images.shape[1] == size:
        return np.ascontiguousarray(images)
    interp = cv2.INTER_AREA if images.shape[1] > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im, (size, size), interpolation=interp) for im in images])


def resize_landmarks(lm: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Pixel coordinates (pixel centres at integers) of an src-px image mapped to a dst-px resize."""
    s = dst / src
    return (np.asarray(lm, np.float32) + 0.5) * s - 0.5


def random_crop_flip(images: np.ndarray, lm: np.ndarray, crop: int, rng: np.random.Generator, flip: bool = True
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per image a random crop×crop window and, with probability ½, a left-right mirror. Landmarks (B, P, 2)
    follow: shifted by the window and, when mirrored, x -> crop-1-x with left and right points swapped.
    AU labels are not lateralised in BP4D, so they stay as they are."""
    b, s = images.shape[0], images.shape[1]
    out = np.empty((b, crop, crop, 3), np.uint8)
    lm_out = np.empty_like(lm, dtype=np.float32)
    for i in range(b):
        ox, oy = rng.integers(0, s - crop + 1, size=2)
        out[i] = images[i, oy:oy + crop, ox:ox + crop]
        lm_out[i] = lm[i] - np.array([ox, oy], np.float32)
        if flip and rng.random() < 0.5:
            out[i] = out[i, :, ::-1]
            lm_out[i] = flip_landmarks(lm_out[i], crop)
    return out, lm_out


def colour_jitter(images: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Per image a random brightness, contrast and saturation factor in [1-s, 1+s] and a per-channel gain in
    [1-s/3, 1+s/3] (a colour cast), s = `strength`; 0 returns the images unchanged. uint8 in, uint8 out.

    The few subjects of a training fold differ in skin tone, lighting and white balance far more than an AU
    changes a face; without this the network learns who it sees (CPU preset, development folds: see
    docs/detectors.md)."""
    if strength <= 0:
        return images
    b = images.shape[0]
    x = images.astype(np.float32) / 255.0
    u = lambda lo, hi, *shape: rng.uniform(lo, hi, size=(b, *shape)).astype(np.float32)  # noqa: E731
    x = x * u(1 - strength, 1 + strength, 1, 1, 1)
    mean = (x @ LUMA).mean((1, 2)).reshape(b, 1, 1, 1)
    x = (x - mean) * u(1 - strength, 1 + strength, 1, 1, 1) + mean
    gray = (x @ LUMA)[..., None]
    x = gray + (x - gray) * u(1 - strength, 1 + strength, 1, 1, 1)
    x = x * u(1 - strength / 3, 1 + strength / 3, 1, 1, 3)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def centre_crop(images: np.ndarray, crop: int) -> np.ndarray:
    o = (images.shape[1] - crop) // 2
    return np.ascontiguousarray(images[:, o:o + crop, o:o + crop])


def centre_offset(size: int, crop: int) -> int:
    return (size - crop) // 2


def to_tensor(images: np.ndarray, device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1] on `device`."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0
