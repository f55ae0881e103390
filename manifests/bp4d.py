"""Read a BP4D-Spontaneous tree, as it lies on disk, into the frame manifest.

Layout read (the embedded cohort writes the same one):

    <root>/AUCoding/AU_OCC/<Subject>_<Task>.csv    one file per sequence, e.g. F001_T1.csv
    <root>/<Subject>/<Task>/<frame>.jpg            e.g. F001/T1/2440.jpg (or 0103.jpg: padding varies)

AU_OCC files: a header row whose first column is `0` (the frame number) and whose other columns are AU
numbers (`1,2,4,5,...`); values 0 (absent), 1 (present), 9 (not coded). Every labelled frame is one manifest
row; 9 becomes -1. Tolerated variants: zero-padded or unpadded image names, AU columns beyond the 12, an
occlusion column, a trailing empty column. Anything else (a header that is not this, one of the 12 AUs
missing, a value outside 0/1/9 in one of the 12, a frame number that is not an integer or repeats, a subject
id that is not F/M + 3 digits) is an error naming the file, line and value. A labelled frame without its
image is a row with status "missing image: <path>", not an error. Folders at the root that are not subjects
(OpenFace outputs, notes) are skipped with one warning.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from manifests.aus import AU_COLUMNS, AUS
from manifests.folds import assign_folds
from manifests.schema import FRAME_SCHEMA, STATUS_OK, validate_frames

log = logging.getLogger(__name__)

AU_OCC = Path("AUCoding") / "AU_OCC"
# Folders that belong to the dataset's own layout (the embedded cohort keeps its exact landmarks in Landmarks68).
LAYOUT_FOLDERS = {"AUCoding", "Landmarks68"}
SUBJECT_RE = re.compile(r"^[FM]\d{3}$")
TASK_RE = re.compile(r"^T\d+$")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


class BP4DError(ValueError):
    """A BP4D tree or label file that cannot be read; the message names the file and the problem."""


def read_bp4d(root: str | os.PathLike) -> pd.DataFrame:
    """The frame manifest (columns of FRAME_SCHEMA, row_id 0..N-1) of the BP4D-layout tree at `root`."""
    root = Path(root)
    if not root.is_dir():
        raise BP4DError(f"{root}: not a directory")
    entries = sorted(p.name for p in root.iterdir())
    if not entries:
        raise BP4DError(f"{root}: empty directory; expected a BP4D tree with {AU_OCC}/ and subject folders")
    occ = root / AU_OCC
    if not occ.is_dir():
        raise BP4DError(f"{root}: no {AU_OCC}/ folder, so this is not a BP4D tree (found: {entries[:8]})")
    csvs = sorted(p for p in occ.iterdir() if p.suffix.lower() == ".csv")
    if not csvs:
        raise BP4DError(f"{occ}: no AU occurrence files (<Subject>_<Task>.csv)")

    from manifests.cohort import is_cohort

    dataset = "cohort" if is_cohort(root) else "bp4d"
    seqs = sorted((_sequence_id(p) + (p,) for p in csvs), key=lambda t: (t[0], int(t[1][1:])))
    _warn_non_subjects(root, {s for s, _, _ in seqs})

    parts = []
    for subject, task, path in seqs:
        frames, labels = read_au_occ(path)
        names, status = _image_names(root, subject, task, frames)
        parts.append(pd.DataFrame({
            "subject": subject, "task": task, "frame": frames.astype(np.int32),
            "image_path": names, "status": status,
            **{c: labels[:, i] for i, c in enumerate(AU_COLUMNS)},
        }))
    df = pd.concat(parts, ignore_index=True)
    df.insert(0, "row_id", np.arange(len(df), dtype=np.int64))
    df["dataset"] = dataset
    folds = assign_folds(df.groupby("subject").size().to_dict(), dataset)
    df["fold"] = df["subject"].map(folds).astype(np.int8)
    return validate_frames(df[[f.name for f in FRAME_SCHEMA]], str(root))


def _sequence_id(path: Path) -> tuple[str, str]:
    parts = path.stem.split("_")
    if len(parts) != 2:
        raise BP4DError(f"{path}: AU_OCC file name must be <Subject>_<Task>.csv (e.g. F001_T1.csv)")
    subject, task = parts
    if not SUBJECT_RE.match(subject):
        raise BP4DError(f"{path}: unknown subject id format {subject!r} (expected F or M and 3 digits, "
                        f"e.g. F001)")
    if not TASK_RE.match(task):
        raise BP4DError(f"{path}: unknown task id format {task!r} (expected T and a number, e.g. T1)")
    return subject, task


def _warn_non_subjects(root: Path, subjects: set[str]) -> None:
    dirs = [p.name for p in sorted(root.iterdir()) if p.is_dir() and p.name not in LAYOUT_FOLDERS]
    skipped = [d for d in dirs if not SUBJECT_RE.match(d)]
    unlabelled = [d for d in dirs if SUBJECT_RE.match(d) and d not in subjects]
    if skipped:
        log.warning("%s: skipping %d folders that are not subjects: %s", root, len(skipped), ", ".join(skipped))
    if unlabelled:
        log.warning("%s: subject folders without any AU_OCC file (not in the manifest): %s", root,
                    ", ".join(unlabelled))


def read_au_occ(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(frames int64 (F,), labels int8 (F, 12) in AUS order, 9 -> -1) of one AU_OCC file, strictly checked."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, header=None, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise BP4DError(f"{path}: empty file (expected a header row `0,1,2,4,...`)") from None
    except pd.errors.ParserError as e:
        raise BP4DError(f"{path}: not a readable CSV ({e})") from None
    raw = raw.fillna("")  # short lines
    header = [h.strip().lstrip("\ufeff") for h in raw.iloc[0]]
    cols = _header_columns(path, header)
    body = raw.iloc[1:].to_numpy(dtype=str)
    body = np.char.strip(body)
    keep = (body != "").any(axis=1)  # blank lines (e.g. at the end) are not frames
    lines = np.arange(2, len(body) + 2)[keep]
    body = body[keep]
    if len(body) == 0:
        raise BP4DError(f"{path}: header but no labelled frames")

    frames = np.empty(len(body), np.int64)
    for i, (line, v) in enumerate(zip(lines, body[:, 0])):
        if not re.fullmatch(r"\d+", v):
            raise BP4DError(f"{path}, line {line}: frame number {str(v)!r} is not a non-negative integer")
        frames[i] = int(v)
    uniq, counts = np.unique(frames, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[counts > 1][0])
        raise BP4DError(f"{path}, line {int(lines[np.flatnonzero(frames == dup)[1]])}: frame {dup} is "
                        f"labelled twice")

    labels = np.empty((len(body), len(AUS)), np.int8)
    for j, au in enumerate(AUS):
        vals = body[:, cols[au]]
        bad = ~np.isin(vals, ("0", "1", "9"))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BP4DError(f"{path}, line {int(lines[i])}: AU{au} value {str(vals[i])!r} is not 0, 1 or 9")
        labels[:, j] = np.where(vals == "9", -1, vals.astype(np.int64)).astype(np.int8)
    order = np.argsort(frames, kind="stable")
    return frames[order], labels[order]


def _header_columns(path: Path, header: list[str]) -> dict[int, int]:
    """AU number -> column index, after checking the header row."""
    if not header or header[0] not in ("0", "0.0"):
        raise BP4DError(f"{path}, line 1: bad header: first column must be 0 (the frame number), "
                        f"found {header[0] if header else ''!r}")
    cols: dict[int, int] = {}
    for i, h in enumerate(header[1:], start=1):
        if re.fullmatch(r"\d+", h):
            if int(h) in cols:
                raise BP4DError(f"{path}, line 1: bad header: AU column {h} appears twice")
            cols[int(h)] = i
        elif h == "" and i == len(header) - 1:
            continue  # trailing comma
        elif h.lower().startswith("occ"):
            continue  # occlusion flag column
        else:
            raise BP4DError(f"{path}, line 1: bad header: column {i + 1} is {h!r}, expected an AU number")
    missing = [a for a in AUS if a not in cols]
    if missing:
        raise BP4DError(f"{path}, line 1: bad header: AU columns {missing} are missing")
    return cols


def _image_names(root: Path, subject: str, task: str, frames: np.ndarray) -> tuple[list[str], list[str]]:
    """Relative image paths and statuses for the frames of one sequence (names zero-padded or not)."""
    folder = root / subject / task
    by_frame: dict[int, list[str]] = {}
    if folder.is_dir():
        for name in os.listdir(folder):
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_EXTS and stem.isdigit():
                by_frame.setdefault(int(stem), []).append(name)
    padded = [len(s) for s in (os.path.splitext(n)[0] for ns in by_frame.values() for n in ns)
              if len(s) > 1 and s.startswith("0")]
    pad = max(padded) if padded else (0 if by_frame else 4)  # name missing files in the folder's own style
    names, status = [], []
    for f in frames.tolist():
        found = sorted(by_frame.get(f, ()))
        if len(found) == 1:
            names.append(f"{subject}/{task}/{found[0]}")
            status.append(STATUS_OK)
        elif found:
            names.append(f"{subject}/{task}/{found[0]}")
            status.append(f"ambiguous image: {subject}/{task}/ holds {' and '.join(found)}")
        else:
            name = f"{subject}/{task}/{f:0{pad}d}.jpg"
            names.append(name)
            status.append(f"missing image: {name}" + ("" if folder.is_dir() else f" (no folder {subject}/{task})"))
    return names, status
