"""Render one cohort face: identity + 12 AU intensities + pose + light -> RGB image and its exact 68 landmarks.

Drawing order: backdrop, clothes and neck, hair behind the head, ears, head with rounded shading and a
directional light, skin details (eye sockets, cheeks, nose, folds), AU textures (forehead and glabella
furrows, crow's feet, lid bulges, nasolabial folds, dimples, chin wrinkling), eyes, brows, lips, front hair.
Every shape is placed in face units from the (AU-moved) landmarks and projected with the same pose as the
landmarks, so what is drawn and the landmarks agree exactly. Feature drawing lives in `features.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from manifests.aus import AUS, N_AUS

from . import features as ft
from .canvas import Canvas, smooth_curve
from .geometry import Pose, Projector, expression_shape, identity_shape
from .identity import Identity


@dataclass(frozen=True)
class Light:
    """Scene lighting of one frame."""

    angle: float = -2.2  # direction the light comes from, radians, image plane (pi: from the left, -pi/2: above)
    strength: float = 0.18  # brightness gradient across the face
    ambient: float = 1.0  # overall brightness multiplier
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # colour of the light (white balance)


class Face:
    """Face-unit geometry of one frame and its projection to pixels (what the feature painters share)."""

    def __init__(self, ident: Identity, aus: np.ndarray, pose: Pose, size: int):
        self.ident, self.pose, self.size = ident, pose, size
        self.aus = {au: float(v) for au, v in zip(AUS, np.clip(aus, 0, 1))}
        self.neutral = identity_shape(ident)
        self.fu = expression_shape(self.neutral, aus)  # (68, 2) face units
        self.k = pose.scale * size  # pixels per face unit
        self.px = Projector(pose, size)  # face units -> pixels, for features and landmarks alike

    def lm(self, idx) -> np.ndarray:
        return self.fu[idx]

    def au(self, a: int) -> float:
        return self.aus[a]


def _backdrop(ident: Identity, size: int, light: Light) -> np.ndarray:
    t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    top, bottom = np.asarray(ident.background, np.float32), np.asarray(ident.background2, np.float32)
    img = np.broadcast_to(top + (bottom - top) * t, (size, size, 3)).copy()
    xs = np.linspace(-1, 1, size, dtype=np.float32)
    vignette = 1 - 0.18 * (xs[None, :] ** 2 + xs[:, None] ** 2)
    return img * vignette[..., None]


def _head_outline(f: Face) -> np.ndarray:
    """Face-unit closed outline: jaw 0..16 then the forehead arc back over the top of the head."""
    jaw = f.fu[0:17]
    rx = (jaw[16, 0] - jaw[0, 0]) / 2 * 1.02
    cy = (jaw[0, 1] + jaw[16, 1]) / 2
    t = np.linspace(0.08, np.pi - 0.08, 21)
    arc = np.stack([rx * np.cos(t), cy - 1.3 * np.sin(t)], 1)
    return np.concatenate([smooth_curve(jaw, 48), arc])


def _shade_head(c: Canvas, f: Face, outline_px: np.ndarray, light: Light) -> None:
    """Rounded-object shading (darker towards the outline) and the directional light gradient on the head."""
    mr = c.mask("poly", outline_px)
    if mr is None:
        return
    m, (x0, y0, x1, y1) = mr
    sigma = 0.22 * f.k
    small = cv2.resize(m, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    soft = cv2.GaussianBlur(small, (0, 0), sigma / 4)
    soft = cv2.resize(soft, (m.shape[1], m.shape[0]), interpolation=cv2.INTER_LINEAR)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    centre = f.px([0.0, 0.35])
    d = np.array([np.cos(light.angle), np.sin(light.angle)], np.float32)
    grad = ((xx - centre[0]) * d[0] + (yy - centre[1]) * d[1]) / (1.2 * f.k)
    factor = (0.68 + 0.32 * np.clip(soft * 1.6, 0, 1)) * (1 + light.strength * grad)
    region = c.img[y0:y1, x0:x1]
    region *= (1 - m * (1 - factor))[..., None]


def render_face(
    ident: Identity,
    aus,
    pose: Pose | None = None,
    size: int = 256,
    light: Light | None = None,
    gaze: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Draw `ident` showing the 12 AU intensities `aus` (AUS order, 0..1).

    Returns (image (size, size, 3) uint8 RGB, landmarks (68, 2) float32 in pixels, iBUG-68 order). The default
    pose is frontal and centred; no sensor noise or JPEG (the cohort writer adds those per frame).
    """
    aus = np.asarray(aus, dtype=np.float64).reshape(-1)
    if aus.shape != (N_AUS,):
        raise ValueError(f"aus must hold {N_AUS} intensities in the order {AUS}, got shape {aus.shape}")
    pose = pose or Pose()
    light = light or Light()
    f = Face(ident, aus, pose, size)
    c = Canvas(_backdrop(ident, size, light))
    skin = np.asarray(ident.skin, np.float32)

    ft.clothes_and_neck(c, f, skin)
    ft.hair_back(c, f)
    ft.ears(c, f, skin)
    outline = f.px(_head_outline(f))
    c.poly(outline, skin)
    ft.skin_details(c, f, skin, light)
    ft.au_textures(c, f)
    _shade_head(c, f, outline, light)
    ft.eyes(c, f, gaze, light)
    ft.brows(c, f)
    ft.mouth(c, f, skin)
    ft.hair_front(c, f)

    img = c.img * np.asarray(light.tint, np.float32) * light.ambient
    img = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return img, f.px(f.fu).astype(np.float32)
