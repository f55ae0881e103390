"""68-point facial landmarks for real data: dlib's HOG face detector and its iBUG-68 shape predictor.

The model files ship in the `face_recognition_models` package, located (not imported) by
`lacgan.dlib_format.default_model_path`. Nothing is downloaded. Models load once per process (`dlib_landmarker()` is cached), so worker processes each pay the
~1 s load once.

Detection runs on a copy scaled so its longer side is at most `detect_side` px (BP4D frames are 1040×1392;
HOG time grows with the pixel count, and BP4D faces are far larger than its 80-px minimum), with one 2×
upsampling pass as a fallback for small faces; the shape predictor then runs on the full-resolution image
inside the scaled-back box. With several faces the most confident is used (the largest can be a false
positive: on skimage's astronaut photo, tilted, the mission patch on her suit is detected as a face wider
than hers). Points are in image pixels (x, y), pixel centres at integers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from lacgan.dlib_format import default_model_path

PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"


@dataclass
class Detection:
    """One face: its box (x0, y0, x1, y1) in image pixels and its 68 landmarks (68, 2) float32 (x, y)."""

    box: tuple[float, float, float, float]
    points: np.ndarray


class DlibLandmarker:
    """Finds the largest face in an RGB uint8 image and returns its 68 landmarks, or None when there is none."""

    def __init__(self, detect_side: int = 640):
        import dlib

        self.detect_side = detect_side  # longest side of the image the HOG detector sees
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(default_model_path(PREDICTOR_68)))
        self._dlib = dlib

    def __call__(self, rgb: np.ndarray) -> Detection | None:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
        import cv2

        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        f = min(1.0, self.detect_side / max(gray.shape))
        small = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else gray
        rects, scores, _ = self._detector.run(small, 0, 0.0)
        if len(rects) == 0:
            rects, scores, _ = self._detector.run(small, 1, 0.0)  # small faces: one 2x upsampling pass
        if len(rects) == 0:
            return None
        r = rects[int(np.argmax(scores))]
        box = (r.left() / f, r.top() / f, (r.right() + 1) / f, (r.bottom() + 1) / f)
        full = self._dlib.rectangle(*(int(round(v)) for v in (box[0], box[1], box[2] - 1, box[3] - 1)))
        shape = self._predictor(rgb, full)
        pts = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
        return Detection(box=tuple(float(v) for v in box), points=pts)


@functools.cache
def dlib_landmarker() -> DlibLandmarker:
    """The process's one landmarker (models loaded on first use)."""
    return DlibLandmarker()
