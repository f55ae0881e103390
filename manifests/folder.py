"""Read a generic "folder of images + CSV of AU labels" dataset into the frame manifest.

CSV format (one row per labelled image, header required):

    image      required  image path relative to the root (e.g. `s01/happy/0007.png`)
    subject    optional  subject id; default: the first folder of `image` (or "all" for files at the top)
    task       optional  sequence/task id; default "" (no tasks)
    frame      optional  integer frame number; default: the image's file name when it is a number, else the
                         row's position inside its (subject, task) in CSV order
    AU1 ... or 1 ...     AU occurrence columns, values 0, 1, 9 or -1 (9 and -1 = unknown, stored as -1)

Extra columns (other AUs, intensities of other AUs, notes) are ignored. Of BP4D's 12 AUs, those without a
column are stored as -1 (unknown) with one warning naming them, because many datasets code a different AU
set (DISFA lacks AU7, AU10, AU14, AU23, AU24) and "unknown" is the truth; a CSV with none of the 12 is an
error. Intensity codes (2..5), blanks and anything else are errors naming the file, line and value: binarise
intensities yourself, since the threshold is a choice. A labelled image that does not exist is a row with
status "missing image: <path>". Folds: the balanced subject split of `manifests.folds`.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from manifests.aus import AU_COLUMNS, AUS
from manifests.folds import assign_folds
from manifests.schema import FRAME_SCHEMA, STATUS_OK, validate_frames

log = logging.getLogger(__name__)


class FolderError(ValueError):
    """A folder dataset or label CSV that cannot be read; the message names the file and the problem."""


def read_folder(root: str | os.PathLike, labels_csv: str | os.PathLike) -> pd.DataFrame:
    """The frame manifest of images under `root` labelled by `labels_csv` (format in the module docstring)."""
    root, labels_csv = Path(root), Path(labels_csv)
    if not root.is_dir():
        raise FolderError(f"{root}: not a directory")
    if not labels_csv.is_file():
        raise FolderError(f"{labels_csv}: no such label file")
    try:
        raw = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        raise FolderError(f"{labels_csv}: not a readable CSV ({e})") from None
    raw.columns = [str(c).strip().lstrip("\ufeff") for c in raw.columns]
    raw = raw.fillna("")
    if "image" not in raw.columns:
        raise FolderError(f"{labels_csv}, line 1: no `image` column (columns: {list(raw.columns)})")
    if raw.empty:
        raise FolderError(f"{labels_csv}: header but no labelled images")
    lines = np.arange(2, len(raw) + 2)

    images = [s.strip().replace("\\", "/") for s in raw["image"]]
    for line, im in zip(lines, images):
        p = PurePosixPath(im)
        if not im or p.is_absolute() or ".." in p.parts:
            raise FolderError(f"{labels_csv}, line {line}: image {im!r} must be a path relative to the root")
    dup = pd.Series(images).duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise FolderError(f"{labels_csv}, line {lines[i]}: image {images[i]!r} is listed twice")

    subjects = _column(raw, "subject", [p.split("/")[0] if "/" in p else "all" for p in images])
    for line, s in zip(lines, subjects):
        if not s:
            raise FolderError(f"{labels_csv}, line {line}: empty subject")
    tasks = _column(raw, "task", [""] * len(raw))
    frames = _frames(raw, labels_csv, lines, images, subjects, tasks)
    labels = _labels(raw, labels_csv, lines)

    status = [STATUS_OK if (root / im).is_file() else f"missing image: {im}" for im in images]
    df = pd.DataFrame({"subject": subjects, "task": tasks, "frame": frames.astype(np.int32),
                       "image_path": images, "status": status,
                       **{c: labels[:, i] for i, c in enumerate(AU_COLUMNS)}})
    df.insert(0, "row_id", np.arange(len(df), dtype=np.int64))
    df["dataset"] = f"folder:{root.resolve().name}"
    folds = assign_folds(df.groupby("subject").size().to_dict(), df["dataset"].iat[0])
    df["fold"] = df["subject"].map(folds).astype(np.int8)
    return validate_frames(df[[f.name for f in FRAME_SCHEMA]], str(labels_csv))


def _column(raw: pd.DataFrame, name: str, default: list[str]) -> list[str]:
    return [s.strip() for s in raw[name]] if name in raw.columns else default


def _frames(raw, path, lines, images, subjects, tasks) -> np.ndarray:
    if "frame" in raw.columns:
        out = np.empty(len(raw), np.int64)
        for i, (line, v) in enumerate(zip(lines, raw["frame"])):
            if not re.fullmatch(r"\d+", v.strip()):
                raise FolderError(f"{path}, line {line}: frame {v!r} is not a non-negative integer")
            out[i] = int(v)
        return out
    stems = [PurePosixPath(p).stem for p in images]
    if all(s.isdigit() for s in stems):
        return np.array([int(s) for s in stems], np.int64)
    return pd.Series(0, index=raw.index).groupby([subjects, tasks]).cumcount().to_numpy(np.int64)


def _labels(raw: pd.DataFrame, path: Path, lines: np.ndarray) -> np.ndarray:
    cols: dict[int, str] = {}
    for c in raw.columns:
        m = re.fullmatch(r"(?:AU)?0*(\d+)", c, flags=re.IGNORECASE)
        if m and int(m.group(1)) in AUS:
            au = int(m.group(1))
            if au in cols:
                raise FolderError(f"{path}, line 1: AU{au} has two columns ({cols[au]!r} and {c!r})")
            cols[au] = c
    if not cols:
        raise FolderError(f"{path}, line 1: none of BP4D's 12 AUs {AUS} has a column (AU1 or 1, ...)")
    missing = [a for a in AUS if a not in cols]
    if missing:
        log.warning("%s: no column for AUs %s; they are stored as -1 (unknown)", path, missing)
    out = np.full((len(raw), len(AUS)), -1, np.int8)
    for j, au in enumerate(AUS):
        if au not in cols:
            continue
        vals = np.char.strip(raw[cols[au]].to_numpy(dtype=str))
        bad = ~np.isin(vals, ("0", "1", "9", "-1"))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise FolderError(f"{path}, line {lines[i]}: AU{au} value {str(vals[i])!r} is not 0, 1, 9 or -1")
        out[:, j] = np.where(vals == "9", -1, vals.astype(np.int64))
    return out
