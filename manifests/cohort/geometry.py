"""Face geometry of the embedded cohort: iBUG-68 template, identity shaping, AU displacements, head pose.

Face units: x to the image right, y down, eyes' line at y = 0, half face width ~ 1. A smooth depth field
z(x, y) (cheeks round back, nose forward) lets yaw and pitch move the nose more than the face outline.
iBUG-68 indices: 0-16 jaw, 17-21 right brow, 22-26 left brow, 27-35 nose, 36-41 right eye, 42-47 left eye,
48-59 outer lips, 60-67 inner lips ("right" = the subject's right = image left).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from manifests.aus import AUS

from .identity import Identity

_JAW_HALF = [(-1.00, -0.02), (-0.99, 0.22), (-0.96, 0.46), (-0.91, 0.69), (-0.82, 0.91),
             (-0.69, 1.11), (-0.52, 1.27), (-0.28, 1.39)]  # fmt: skip
_BROW_R = [(-0.80, -0.20), (-0.66, -0.27), (-0.50, -0.30), (-0.34, -0.28), (-0.18, -0.24)]
_NOSE = [(0, -0.16), (0, 0.04), (0, 0.22), (0, 0.40), (-0.18, 0.50), (-0.09, 0.53), (0, 0.545), (0.09, 0.53),
         (0.18, 0.50)]  # fmt: skip
_EYE_R = [(-0.62, 0.0), (-0.52, -0.065), (-0.36, -0.065), (-0.24, 0.01), (-0.36, 0.05), (-0.52, 0.05)]
_MOUTH_OUT = [(-0.36, 0.82), (-0.22, 0.765), (-0.08, 0.735), (0, 0.75), (0.08, 0.735), (0.22, 0.765), (0.36, 0.82),
              (0.22, 0.885), (0.10, 0.925), (0, 0.935), (-0.10, 0.925), (-0.22, 0.885)]  # fmt: skip
_MOUTH_IN = [(-0.31, 0.82), (-0.10, 0.812), (0, 0.815), (0.10, 0.812), (0.31, 0.82), (0.10, 0.818), (0, 0.82),
             (-0.10, 0.818)]  # fmt: skip

# Left/right partners: mirror index of every landmark.
MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]
)  # fmt: skip


@lru_cache(maxsize=1)
def template() -> np.ndarray:
    """(68, 2) neutral mean face in face units."""
    jaw = _JAW_HALF + [(0.0, 1.43)] + [(-x, y) for x, y in reversed(_JAW_HALF)]
    brows = _BROW_R + [(-x, y) for x, y in reversed(_BROW_R)]
    eye_l = [(-x, y) for x, y in _EYE_R]
    eye_l = [eye_l[3], eye_l[2], eye_l[1], eye_l[0], eye_l[5], eye_l[4]]  # inner corner first, as iBUG
    pts = np.array(jaw + brows + _NOSE + _EYE_R + eye_l + _MOUTH_OUT + _MOUTH_IN, dtype=np.float64)
    assert pts.shape == (68, 2)
    return pts


def depth(pts: np.ndarray) -> np.ndarray:
    """Depth (towards the camera) of face points (..., 2): a rounded head plus the nose ridge."""
    pts = np.asarray(pts, dtype=np.float64)
    return _depth(pts[..., 0], pts[..., 1])


def _depth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # np.maximum/np.minimum rather than np.clip: this runs ~150 times per frame on tiny arrays
    head = 0.6 * np.sqrt(np.maximum(1 - 0.85 * x * x, 0)) * np.maximum(1.2 - 0.25 * np.abs(y - 0.2), 0)
    below = np.maximum(y - 0.42, 0)
    ridge = np.minimum(np.maximum((y + 0.2) / 0.6, 0), 1) * np.exp(-0.5 * below * below / 0.05**2)
    return head + 0.35 * np.exp(-0.5 * (x / 0.12) ** 2) * ridge


def identity_shape(ident: Identity) -> np.ndarray:
    """(68, 2) neutral landmarks of this person in face units."""
    p = template().copy()
    x, y = p[:, 0], p[:, 1]
    jaw = slice(0, 17)
    lower = np.clip((y[jaw] - 0.5) / 0.9, 0, 1)
    x[jaw] *= ident.face_width * (1 - lower + lower * ident.jaw_width)
    chin = [6, 7, 8, 9, 10]
    x[chin] *= ident.chin_width ** 0.5
    y[jaw] = np.where(y[jaw] > 0, y[jaw] * ident.face_length, y[jaw])
    # eyes: spacing, size, aperture
    for eye in (slice(36, 42), slice(42, 48)):
        c = p[eye].mean(0)
        d = p[eye] - c
        c[0] *= ident.eye_spacing
        d *= ident.eye_size
        d[:, 1] *= ident.eye_open
        p[eye] = c + d
    y[[36, 45]] -= ident.eye_tilt  # outer corners
    y[[37, 44, 41, 46]] -= 0.4 * ident.eye_tilt
    # brows: height above the eyes, thickness handled in rendering, arch on the middle points
    brows = slice(17, 27)
    y[brows] += 0.22 - ident.brow_height - 0.0
    y[[18, 19, 24, 25]] -= ident.brow_arch * np.array([0.6, 1.0, 1.0, 0.6])
    x[brows] *= 0.5 + 0.5 * ident.eye_spacing
    # nose length and width
    nose = slice(27, 36)
    y[nose] = -0.16 + (y[nose] + 0.16) * ident.nose_length
    x[31:36] *= ident.nose_width
    # mouth: width, lip thickness, height (scaled with the lower face)
    m = slice(48, 68)
    my = 0.82
    x[m] *= ident.mouth_width
    up = y[m] < my
    thick = np.where(up, ident.upper_lip, ident.lower_lip)
    y[m] = my + (y[m] - my) * thick
    y[m] = y[m] * ident.face_length ** 0.5 + ident.mouth_y
    return p


def _pairs(spec: list[tuple[int, int, float, float]]) -> np.ndarray:
    """Displacement field (68, 2) from (right index, left index, dx outwards, dy) rows, mirrored."""
    d = np.zeros((68, 2))
    for r, l, dx, dy in spec:
        d[r] += (-dx, dy)
        if l != r:
            d[l] += (dx, dy)
    return d


# Displacement of every landmark at full intensity, face units. dx > 0 is away from the midline.
AU_DISPLACEMENTS: dict[int, np.ndarray] = {
    1: _pairs([(21, 22, 0.0, -0.10), (20, 23, 0.0, -0.075), (19, 24, 0.0, -0.04), (18, 25, 0.0, -0.012)]),
    2: _pairs([(17, 26, 0.01, -0.125), (18, 25, 0.0, -0.125), (19, 24, 0.0, -0.075), (20, 23, 0.0, -0.03)]),
    4: _pairs([(21, 22, -0.055, 0.08), (20, 23, -0.035, 0.075), (19, 24, -0.015, 0.06), (18, 25, 0.0, 0.04),
               (17, 26, 0.0, 0.02), (37, 44, 0.0, 0.012), (38, 43, 0.0, 0.016)]),
    6: _pairs([(40, 47, 0.0, -0.018), (41, 46, 0.0, -0.02), (36, 45, 0.0, -0.008), (37, 44, 0.0, 0.004),
               (48, 54, 0.0, -0.008)]),
    7: _pairs([(40, 47, 0.0, -0.042), (41, 46, 0.0, -0.042), (39, 42, 0.0, -0.008), (36, 45, 0.0, -0.006),
               (37, 44, 0.0, 0.02), (38, 43, 0.0, 0.022)]),
    10: _pairs([(50, 52, 0.0, -0.055), (51, 51, 0.0, -0.05), (49, 53, 0.0, -0.04), (61, 63, 0.0, -0.045),
                (62, 62, 0.0, -0.04), (48, 54, 0.005, -0.015), (60, 64, 0.0, -0.015), (31, 35, 0.012, -0.02),
                (32, 34, 0.0, -0.015), (33, 33, 0.0, -0.01)]),
    12: _pairs([(48, 54, 0.06, -0.08), (60, 64, 0.055, -0.07), (49, 53, 0.03, -0.035), (59, 55, 0.035, -0.03),
                (61, 63, 0.02, -0.02), (67, 65, 0.02, -0.015), (58, 56, 0.01, -0.01), (50, 52, 0.01, -0.01),
                (3, 13, 0.005, -0.008), (4, 12, 0.005, -0.005)]),
    14: _pairs([(48, 54, -0.045, -0.012), (60, 64, -0.04, -0.012), (49, 53, -0.012, 0.0), (59, 55, -0.012, 0.0)]),
    15: _pairs([(48, 54, 0.01, 0.075), (60, 64, 0.01, 0.07), (49, 53, 0.0, 0.025), (59, 55, 0.0, 0.035),
                (58, 56, 0.0, 0.01), (61, 63, 0.0, 0.012), (67, 65, 0.0, 0.015)]),
    17: _pairs([(8, 8, 0.0, -0.022), (7, 9, 0.0, -0.016), (57, 57, 0.0, -0.035),
                (58, 56, 0.0, -0.035), (59, 55, 0.0, -0.025), (66, 66, 0.0, -0.02), (67, 65, 0.0, -0.02),
                (48, 54, 0.0, 0.012), (60, 64, 0.0, 0.008), (51, 51, 0.0, -0.01), (50, 52, 0.0, -0.01)]),
    23: _pairs([(48, 54, -0.055, 0.0), (60, 64, -0.05, 0.0), (49, 53, -0.025, 0.024), (50, 52, -0.01, 0.028),
                (51, 51, 0.0, 0.028), (59, 55, -0.025, -0.026), (58, 56, -0.006, -0.03), (57, 57, 0.0, -0.03)]),
    24: _pairs([(51, 51, 0.0, 0.035), (50, 52, 0.0, 0.035), (49, 53, 0.0, 0.022), (57, 57, 0.0, -0.045),
                (58, 56, 0.0, -0.045), (59, 55, 0.0, -0.03), (48, 54, 0.008, 0.0)]),
}
assert set(AU_DISPLACEMENTS) == set(AUS)
_DISP = np.stack([AU_DISPLACEMENTS[a] for a in AUS])  # (12, 68, 2)

_UPPER_OUT, _UPPER_IN = [49, 50, 51, 52, 53], [61, 61, 62, 63, 63]
_LOWER_OUT, _LOWER_IN = [59, 58, 57, 56, 55], [67, 67, 66, 65, 65]


def expression_shape(neutral: np.ndarray, aus: np.ndarray) -> np.ndarray:
    """Neutral face-unit landmarks (68, 2) moved by the 12 AU intensities (AUS order, 0..1)."""
    aus = np.clip(np.asarray(aus, dtype=np.float64), 0, 1)
    p = neutral + np.tensordot(aus, _DISP, axes=1)
    # lips keep a minimum thickness and the inner lower lip never rises above the inner upper lip
    y = p[:, 1]
    y[_UPPER_OUT] = np.minimum(y[_UPPER_OUT], y[_UPPER_IN] - 0.012)
    y[[65, 66, 67]] = np.maximum(y[[65, 66, 67]], y[[63, 62, 61]])
    y[_LOWER_OUT] = np.maximum(y[_LOWER_OUT], y[_LOWER_IN] + 0.015)
    return p


@dataclass(frozen=True)
class Pose:
    """Head pose and framing of one frame."""

    roll: float = 0.0  # in-plane rotation, radians (positive = clockwise on screen)
    yaw: float = 0.0  # turn, radians (positive: the nose moves to the image right)
    pitch: float = 0.0  # nod, radians (positive: the nose moves up)
    scale: float = 0.27  # pixels per face unit, as a fraction of the image side
    cx: float = 0.5  # eye-line midpoint, fraction of the image side
    cy: float = 0.42


class Projector:
    """Face units -> image pixels for one pose (trigonometry computed once per frame)."""

    def __init__(self, pose: Pose, size: int):
        k = pose.scale * size
        self.cyaw, self.syaw = math.cos(pose.yaw), math.sin(pose.yaw)
        self.cpitch, self.spitch = math.cos(pose.pitch), math.sin(pose.pitch)
        self.a, self.b = k * math.cos(pose.roll), k * math.sin(pose.roll)
        self.ox, self.oy = pose.cx * size, pose.cy * size

    def __call__(self, pts) -> np.ndarray:
        pts = np.asarray(pts, dtype=np.float64)
        x, y = pts[..., 0], pts[..., 1]
        z = _depth(x, y)
        xr = x * self.cyaw + z * self.syaw
        yr = y * self.cpitch - z * self.spitch
        out = np.empty(pts.shape)
        out[..., 0] = self.ox + self.a * xr - self.b * yr
        out[..., 1] = self.oy + self.b * xr + self.a * yr
        return out


def project(pts: np.ndarray, pose: Pose, size: int) -> np.ndarray:
    """Face-unit points (..., 2) -> image pixels (..., 2) (x, y) under `pose`."""
    return Projector(pose, size)(pts)


def sample_pose(rng: np.random.Generator, base: Pose | None = None, amount: float = 1.0) -> Pose:
    """A pose jittered around `base` (the sequence's mean pose) or around frontal."""
    b = base or Pose()
    n = rng.standard_normal(6) * amount
    return Pose(
        roll=b.roll + 0.06 * n[0],
        yaw=b.yaw + 0.08 * n[1],
        pitch=b.pitch + 0.05 * n[2],
        scale=b.scale * float(np.exp(0.06 * n[3])),
        cx=b.cx + 0.03 * n[4],
        cy=b.cy + 0.03 * n[5],
    )
