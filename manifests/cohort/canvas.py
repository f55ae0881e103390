"""A float RGB canvas with anti-aliased, soft-edged drawing in regions of interest (OpenCV + numpy).

Every primitive builds a coverage mask only inside the bounding box of what it draws (plus its blur margin),
so a frame of ~100 soft layers stays cheap. Modes: "over" paints a colour, "mul" darkens (shadows, creases),
"screen" lightens (highlights).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

_SHIFT = 4  # sub-pixel bits for OpenCV's anti-aliased drawing
_ONE = 1 << _SHIFT


class Canvas:
    def __init__(self, image: np.ndarray):
        self.img = image  # (H, W, 3) float32 RGB in [0, 1], modified in place
        self.h, self.w = image.shape[:2]

    # ---- masks -------------------------------------------------------------------------------------------
    def _roi(self, pts: np.ndarray, margin: float) -> tuple[int, int, int, int] | None:
        lo = np.floor(pts.min(0) - margin).astype(int)
        hi = np.ceil(pts.max(0) + margin).astype(int) + 1
        x0, y0 = max(lo[0], 0), max(lo[1], 0)
        x1, y1 = min(hi[0], self.w), min(hi[1], self.h)
        return None if x0 >= x1 or y0 >= y1 else (x0, y0, x1, y1)

    @staticmethod
    def _fixed(pts: np.ndarray, x0: int, y0: int) -> np.ndarray:
        return np.round((pts - (x0, y0)) * _ONE).astype(np.int32)

    def mask(self, kind: str, pts: np.ndarray, width: float = 1.0, blur: float = 0.0, closed: bool = False):
        """Coverage in [0, 1] of a polygon ("poly") or polyline ("line") inside its ROI: (mask, roi) or None."""
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        roi = self._roi(pts, width + 3 * blur + 2)
        if roi is None:
            return None
        x0, y0, x1, y1 = roi
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        q = self._fixed(pts, x0, y0)
        if kind == "poly":
            cv2.fillPoly(m, [q], 255, cv2.LINE_AA, _SHIFT)
        else:
            thick = max(1, int(round(width)))
            cv2.polylines(m, [q], closed, 255, thick, cv2.LINE_AA, _SHIFT)
        m = m.astype(np.float32) / 255.0
        if kind == "line" and width < 1:
            m *= width  # hairlines: thinner means fainter
        if blur > 0:
            m = cv2.GaussianBlur(m, (0, 0), blur)
        return m, roi

    def ellipse_mask(self, centre, axes, angle_deg: float = 0.0, blur: float = 0.0):
        a = max(float(axes[0]), 0.5), max(float(axes[1]), 0.5)
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
        ex, ey = a[0] * np.cos(t), a[1] * np.sin(t)
        pts = np.stack([centre[0] + c * ex - s * ey, centre[1] + s * ex + c * ey], 1)
        return self.mask("poly", pts, blur=blur)

    # ---- compositing -------------------------------------------------------------------------------------
    def apply(self, mr, colour=(0, 0, 0), alpha: float = 1.0, mode: str = "over") -> None:
        """Composite coverage `mr` (from mask/ellipse_mask) with `colour` in `mode`, scaled by `alpha`."""
        if mr is None or alpha <= 0:
            return
        m, (x0, y0, x1, y1) = mr
        a = (m * min(alpha, 1.0))[..., None]
        region = self.img[y0:y1, x0:x1]
        col = np.asarray(colour, dtype=np.float32)
        if mode == "over":
            region += a * (col - region)
        elif mode == "mul":  # colour is the multiplier at full coverage (e.g. 0.6 darkens by 40 %)
            region *= 1 - a * (1 - col)
        elif mode == "screen":  # colour is the amount of light added towards white
            region += a * col * (1 - region)
        else:
            raise ValueError(f"unknown mode {mode!r}")

    def poly(self, pts, colour, alpha=1.0, blur=0.0, mode="over"):
        if alpha > 0.004:  # invisible layers cost nothing
            self.apply(self.mask("poly", pts, blur=blur), colour, alpha, mode)

    def line(self, pts, colour, width=1.0, alpha=1.0, blur=0.0, mode="over", closed=False):
        if alpha > 0.004:
            self.apply(self.mask("line", pts, width=width, blur=blur, closed=closed), colour, alpha, mode)

    def ellipse(self, centre, axes, colour, angle_deg=0.0, alpha=1.0, blur=0.0, mode="over"):
        if alpha > 0.004:
            self.apply(self.ellipse_mask(centre, axes, angle_deg, blur), colour, alpha, mode)


@lru_cache(maxsize=256)
def _catmull_rom_matrix(k: int, n: int, closed: bool) -> np.ndarray:
    """Linear map from k control points to the interpolated curve (Catmull-Rom is linear in its points)."""
    eye = np.eye(k)
    if closed:
        ext = np.concatenate([eye[-1:], eye, eye[:2]])
    else:
        ext = np.concatenate([2 * eye[:1] - eye[1:2], eye, 2 * eye[-1:] - eye[-2:-1]])
    seg = max(2, n // max(1, k - 1))
    t = np.linspace(0, 1, seg, endpoint=False)[:, None]
    w0, w1 = (-t + 2 * t**2 - t**3) / 2, (2 - 5 * t**2 + 3 * t**3) / 2
    w2, w3 = (t + 4 * t**2 - 3 * t**3) / 2, (-(t**2) + t**3) / 2
    rows = [w0 * ext[i - 1] + w1 * ext[i] + w2 * ext[i + 1] + w3 * ext[i + 2] for i in range(1, len(ext) - 2)]
    rows.append(ext[-2][None] if not closed else ext[1][None])
    return np.concatenate(rows)


def smooth_curve(pts: np.ndarray, n: int = 24, closed: bool = False) -> np.ndarray:
    """Catmull-Rom interpolation through control points (k, 2) -> (about n, 2) points on the curve."""
    p = np.asarray(pts, dtype=np.float64)
    return _catmull_rom_matrix(len(p), n, closed) @ p


def intersect(a, b):
    """Product of two coverage masks (mask, roi) in a's ROI (e.g. the iris clipped to the eye opening)."""
    if a is None or b is None:
        return None
    ma, (ax0, ay0, ax1, ay1) = a
    mb, (bx0, by0, bx1, by1) = b
    out = np.zeros_like(ma)
    x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
    if x0 < x1 and y0 < y1:
        out[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0] = (
            ma[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0] * mb[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
        )
    return out, (ax0, ay0, ax1, ay1)


def dots_mask(canvas: Canvas, centres: np.ndarray, radius: float, blur: float = 0.0):
    """One coverage mask holding many small discs (skin texture such as chin wrinkling)."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    roi = canvas._roi(centres, radius + 3 * blur + 2)
    if roi is None:
        return None
    x0, y0, x1, y1 = roi
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    r = max(1, int(round(radius * _ONE)))
    for c in Canvas._fixed(centres, x0, y0):
        cv2.circle(m, (int(c[0]), int(c[1])), r, 255, -1, cv2.LINE_AA, _SHIFT)
    m = m.astype(np.float32) / 255.0
    if blur > 0:
        m = cv2.GaussianBlur(m, (0, 0), blur)
    return m, roi
