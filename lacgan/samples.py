"""Sample grids laid out as the paper's figures.

Fig. 3 (single AUs): one row per face; columns: the source, then for each of the 12 AUs the face with that AU
set absent and set present (every other AU's region left as the source: target -1).
Fig. 5 (combinations): one row per face; columns: the source, happy (AU2+6+7+12 present, the rest absent) and
angry (AU4+23 present, the rest absent).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lacgan.atomic import replacing
from manifests.aus import AUS, N_AUS, au_index

EditFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (images, landmarks, targets) -> images

EXPRESSIONS: dict[str, tuple[int, ...]] = {"happy": (2, 6, 7, 12), "angry": (4, 23)}  # Fig. 5
HEADER = 14  # px of the caption row
MIN_CELL = 128  # smaller faces are shown enlarged to at least this many px


def single_au_targets(n_faces: int) -> np.ndarray:
    """(n_faces, 24, 12) targets: for AU i, column 2i sets it absent and 2i+1 present; all else -1."""
    t = np.full((n_faces, 2 * N_AUS, N_AUS), -1, np.int8)
    for i in range(N_AUS):
        t[:, 2 * i, i] = 0
        t[:, 2 * i + 1, i] = 1
    return t


def expression_targets(n_faces: int) -> np.ndarray:
    """(n_faces, len(EXPRESSIONS), 12): the listed AUs present, every other AU absent."""
    t = np.zeros((n_faces, len(EXPRESSIONS), N_AUS), np.int8)
    for j, aus in enumerate(EXPRESSIONS.values()):
        t[:, j, [au_index(a) for a in aus]] = 1
    return t


def _edit_all(edit: EditFn, images, landmarks, targets) -> np.ndarray:
    """targets (n, k, 12) -> edited faces (n, k, S, S, 3), in one call."""
    n, k = targets.shape[:2]
    out = edit(np.repeat(images, k, axis=0), np.repeat(landmarks, k, axis=0), targets.reshape(n * k, N_AUS))
    return out.reshape(n, k, *images.shape[1:])


def grid(images: np.ndarray, edited: np.ndarray, captions: list[str]) -> Image.Image:
    """Rows of [source, edits...] under one caption row; faces under MIN_CELL px are enlarged (nearest)."""
    up = max(1, -(-MIN_CELL // images.shape[1]))
    if up > 1:
        images = images.repeat(up, axis=1).repeat(up, axis=2)
        edited = edited.repeat(up, axis=2).repeat(up, axis=3)
    n, k, S = edited.shape[0], edited.shape[1], images.shape[1]
    canvas = np.full((HEADER + n * S, (k + 1) * S, 3), 255, np.uint8)
    for r in range(n):
        y = HEADER + r * S
        canvas[y:y + S, :S] = images[r]
        for c in range(k):
            canvas[y:y + S, (c + 1) * S:(c + 2) * S] = edited[r, c]
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for c, text in enumerate(["source", *captions]):
        draw.text((c * S + 2, 1), text, fill=(0, 0, 0))
    return img


def fig3(edit: EditFn, images: np.ndarray, landmarks: np.ndarray) -> Image.Image:
    edited = _edit_all(edit, images, landmarks, single_au_targets(len(images)))
    return grid(images, edited, [f"AU{a}{s}" for a in AUS for s in ("-", "+")])


def fig5(edit: EditFn, images: np.ndarray, landmarks: np.ndarray) -> Image.Image:
    edited = _edit_all(edit, images, landmarks, expression_targets(len(images)))
    return grid(images, edited, list(EXPRESSIONS))


def save_png(img: Image.Image, path) -> Path:
    """Write a PNG through a temp file + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def write_samples(edit: EditFn, images: np.ndarray, landmarks: np.ndarray, out_dir, step: int) -> list[Path]:
    """samples/fig3-step-K.png and fig5-step-K.png (plus fig3-latest/fig5-latest copies)."""
    out_dir = Path(out_dir)
    paths = []
    for name, fn in (("fig3", fig3), ("fig5", fig5)):
        img = fn(edit, images, landmarks)
        paths.append(save_png(img, out_dir / f"{name}-step-{step:08d}.png"))
        save_png(img, out_dir / f"{name}-latest.png")
    return paths
