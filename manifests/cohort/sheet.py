"""A PNG contact sheet of cohort faces: rows are subjects, and for each of the 12 AUs the face with that AU
off and fully on (neutral pose, no noise), labelled, so a person can check each AU's appearance change."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from manifests.aus import AU_NAMES, AUS, N_AUS

from .config import subject_names
from .identity import subject_identity
from .render import render_face
from .writer import MARKER, CohortError

CROP = (0.17, 0.12, 0.83, 0.88)  # face box (x0, y0, x1, y1) as fractions of a frontal frame


def _label(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45, colour=(20, 20, 20)) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def face_pair(seed: int, subject_index: int, au_pos: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(off, on) crops of one subject for AU number `au_pos` (position in AUS), RGB uint8."""
    ident = subject_identity(seed, subject_index)
    x0, y0, x1, y1 = (int(round(v * size)) for v in CROP)
    on = np.zeros(N_AUS)
    on[au_pos] = 1.0
    off_img, _ = render_face(ident, np.zeros(N_AUS), size=size)
    on_img, _ = render_face(ident, on, size=size)
    return off_img[y0:y1, x0:x1], on_img[y0:y1, x0:x1]


def make_sheet(seed: int, n_subjects: int, size: int = 256, total_subjects: int | None = None) -> np.ndarray:
    """The sheet as an RGB uint8 array (subjects 0..n-1 of a cohort seeded `seed`)."""
    names = subject_names(max(n_subjects, total_subjects or 0))
    x0, y0, x1, y1 = (int(round(v * size)) for v in CROP)
    cw, ch = x1 - x0, y1 - y0
    gap, left, top = 8, 70, 44
    width = left + N_AUS * (2 * cw + gap)
    height = top + n_subjects * (ch + 4)
    sheet = np.full((height, width, 3), 245, np.uint8)
    for j, au in enumerate(AUS):
        x = left + j * (2 * cw + gap)
        _label(sheet, f"AU{au} {AU_NAMES[au]}", (x + 4, 16), 0.42)
        _label(sheet, "off", (x + cw // 2 - 10, 36), 0.42, (90, 90, 90))
        _label(sheet, "on", (x + cw + cw // 2 - 8, 36), 0.42, (0, 0, 160))
    for i in range(n_subjects):
        y = top + i * (ch + 4)
        _label(sheet, names[i], (8, y + ch // 2), 0.6)
        for j in range(N_AUS):
            x = left + j * (2 * cw + gap)
            off, on = face_pair(seed, i, j, size)
            sheet[y : y + ch, x : x + cw] = off
            sheet[y : y + ch, x + cw : x + 2 * cw] = on
    return sheet


def write_sheet(root: str | os.PathLike, out: str | os.PathLike, subjects: int = 4, size: int = 256) -> Path:
    """Write the sheet of the cohort at `root` (its seed and subjects from cohort.json) to PNG `out`."""
    marker = Path(root) / MARKER
    try:
        cfg = json.loads(marker.read_text())["config"]
    except (OSError, ValueError, KeyError) as e:
        raise CohortError(f"{marker}: not a finished embedded cohort ({e}); run `lacgan cohort --out {root}`")
    n = min(int(subjects), int(cfg["subjects"]))
    sheet = make_sheet(int(cfg["seed"]), n, size=size, total_subjects=int(cfg["subjects"]))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    if not cv2.imwrite(str(tmp), sheet[..., ::-1]):
        raise OSError(f"{out}: could not write the PNG")
    os.replace(tmp, out)
    return out
