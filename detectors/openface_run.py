"""OpenFace 2.x's command line, as the `openface` detector uses it: argument lists (pure), running them, CSVs.

Two executables, per OpenFace's own sources (exe/FeatureExtraction, exe/FaceLandmarkImg, Utilities/
RecorderOpenFace.cpp, ImageCapture.cpp):

- `FeatureExtraction -fdir DIR -out_dir OUT -of NAME -aus [-au_static] [-mloc MODEL]` treats the folder's images
  (sorted by name) as one sequence and writes OUT/NAME.csv: `frame` (1-based), `face_id`, `timestamp`,
  `confidence`, `success`, then AU columns.
- `FaceLandmarkImg -fdir DIR -out_dir OUT -aus [-mloc MODEL]` treats every image on its own (static AU models,
  no temporal post-processing) and writes one CSV per image, OUT/<image name without extension>.csv, with
  `face`, `confidence`, then AU columns: one row per detected face. The CSV is opened at the first face, so an
  image with no face gets no CSV. `-of` is not passed: with `-fdir` it would give every image the same name.

AU columns (both): `AUxx_r` (intensity 0..5) for AUs 1 2 4 5 6 7 9 10 12 14 15 17 20 23 25 26 45 and `AUxx_c`
(presence, 0/1, written 0.0/1.0 by FaceLandmarkImg) for those plus 28; no AU24, so 11 of BP4D's 12 AUs are
supported. 2.0.x separates fields with ", " (read with `skipinitialspace`).

OpenFace prints its errors on stdout. A failed run's reason quotes its error lines; known failures get a hint
and are not retried (they fail the same way every time), e.g. an install without the CE-CLM patch experts.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from manifests.aus import AUS

AUS_R: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)  # AUxx_r columns
AUS_C: tuple[int, ...] = AUS_R + (28,)  # AUxx_c columns
SUPPORTED: tuple[int, ...] = tuple(a for a in AUS if a in AUS_R and a in AUS_C)  # BP4D's 12 minus AU24
R_COLS = [f"AU{a:02d}_r" for a in SUPPORTED]
C_COLS = [f"AU{a:02d}_c" for a in SUPPORTED]

MODEL_HINT = "try --openface-model model/main_clnf_general.txt"
KNOWN_FAILURES: tuple[tuple[str, str], ...] = (  # (text OpenFace prints, what the reason says)
    ("Could not find CEN patch experts",
     f"Could not find CEN patch experts (this install lacks the CE-CLM patch experts; {MODEL_HINT})"),
)
NO_FACE = "openface: no face found"  # FaceLandmarkImg: no CSV, or a CSV without rows


class OpenFaceCsvError(ValueError):
    """An OpenFace CSV that cannot be used; `problem` is the reason without the path (stable for counting)."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = Path(path), problem


# ---- commands (pure) ------------------------------------------------------------------------------------
def build_command(binary, frames_dir, out_dir, name: str = "seq", static: bool = False,
                  model: str | None = None) -> list[str]:
    """FeatureExtraction on one sequence folder: writes `<out_dir>/<name>.csv` with AU outputs only."""
    return _with_model([str(binary), "-fdir", str(frames_dir), "-out_dir", str(out_dir), "-of", name, "-aus"]
                       + (["-au_static"] if static else []), model)


def build_image_command(binary, frames_dir, out_dir, model: str | None = None) -> list[str]:
    """FaceLandmarkImg on a folder of independent images: `<out_dir>/<image stem>.csv` per image with a face."""
    return _with_model([str(binary), "-fdir", str(frames_dir), "-out_dir", str(out_dir), "-aus"], model)


def _with_model(cmd: list[str], model: str | None) -> list[str]:
    return cmd + ["-mloc", str(model)] if model else cmd


# ---- running ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunResult:
    ok: bool
    reason: str  # "ok" or why the run failed (last attempt)
    attempts: int


def known_failure(output: str) -> str | None:
    """The explained reason when OpenFace's output contains a known failure message, else None."""
    return next((why for text, why in KNOWN_FAILURES if text in output), None)


def _error_lines(stdout: str, stderr: str) -> str:
    lines = [ln.strip() for ln in f"{stderr}\n{stdout}".splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return " | ".join(errors[-2:] or (stderr or stdout).strip().splitlines()[-3:])[:300]


def _exit_reason(returncode: int) -> str:
    """"exit code N", or for a process killed by a signal (a negative code) the signal's name."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by signal {name} (OpenFace crashed)"


def run_command(cmd: list[str], timeout: float, retries: int = 1, backoff: float = 1.0) -> RunResult:
    """Run without a shell; retry non-zero exits and timeouts (transient on busy machines). A missing or
    non-executable binary and known failures (`KNOWN_FAILURES`) are not retried."""
    reason = ""
    for attempt in range(1, retries + 2):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            reason = f"openface: timed out after {timeout:g} s"
        except OSError as e:  # FileNotFoundError, PermissionError
            return RunResult(False, f"openface: cannot run {cmd[0]}: {e.strerror or e}", attempt)
        else:
            if proc.returncode == 0:
                return RunResult(True, "ok", attempt)
            known = known_failure(f"{proc.stdout}\n{proc.stderr}")
            if known:
                return RunResult(False, f"openface: exit code {proc.returncode}: {known}", attempt)
            said = _error_lines(proc.stdout or "", proc.stderr or "")
            reason = f"openface: {_exit_reason(proc.returncode)}" + (f": {said}" if said else "")
        if attempt <= retries:
            time.sleep(backoff * attempt)
    return RunResult(False, reason, retries + 1)


# ---- frames and CSVs --------------------------------------------------------------------------------------
def write_frames(images: np.ndarray, folder: Path, ext: str = "png") -> list[Path]:
    """Frames as 000001.EXT, 000002.EXT, ... (lexicographic = the order given); RGB uint8 in, lossless out."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images, start=1):
        p = folder / f"{i:06d}.{ext}"
        if not cv2.imwrite(str(p), cv2.cvtColor(im, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{p}: could not write frame")
        paths.append(p)
    return paths


def _check_columns(path: Path, columns, first: list[str]) -> None:
    missing = [c for c in first + R_COLS + C_COLS if c not in columns]
    if missing:
        raise OpenFaceCsvError(path, f"CSV lacks columns {missing[:6]}{' ...' if len(missing) > 6 else ''}")


def _read_csv(path: Path, first: list[str]) -> pd.DataFrame:
    """An OpenFace CSV with columns `first` + the AU columns, names stripped; OpenFaceCsvError otherwise."""
    if not path.exists():
        raise OpenFaceCsvError(path, "OpenFace wrote no CSV")
    try:
        df = pd.read_csv(path, skipinitialspace=True)  # 2.0.x separates fields with ", "
    except Exception as e:
        raise OpenFaceCsvError(path, f"unreadable CSV ({type(e).__name__})") from e
    df.columns = [str(c).strip() for c in df.columns]
    _check_columns(path, df.columns, first)
    return df


def parse_csv(path, n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FeatureExtraction CSV -> (score (n, 11), present (n, 11), status (n,)) for frames 1..n_frames in SUPPORTED
    order. Frames without a row or with success 0 get NaN scores, present 0 and a status saying why."""
    df = _read_csv(Path(path), ["frame", "success"])
    if "face_id" in df.columns:  # several faces per frame (not FeatureExtraction's case): the first face's row
        df = df.sort_values(["frame", "face_id"]).drop_duplicates("frame")
    score = np.full((n_frames, len(SUPPORTED)), np.nan, np.float32)
    present = np.zeros((n_frames, len(SUPPORTED)), np.int8)
    status = np.full(n_frames, "openface: no CSV row for this frame", dtype=object)
    idx = df["frame"].to_numpy(int) - 1  # 1-based
    inside = (idx >= 0) & (idx < n_frames)
    df, idx = df[inside], idx[inside]
    ok = df["success"].to_numpy(int) == 1
    score[idx[ok]] = df.loc[ok, R_COLS].to_numpy(np.float32)
    present[idx[ok]] = (df.loc[ok, C_COLS].to_numpy(np.float32) > 0.5).astype(np.int8)
    status[idx[ok]] = "ok"
    status[idx[~ok]] = "openface: no face tracked (success 0)"
    return score, present, status


def parse_image_csv(path) -> tuple[np.ndarray, np.ndarray, str]:
    """FaceLandmarkImg CSV of one image -> (score (11,), present (11,), status). Several faces: the row with the
    highest `confidence` (the first such row on ties), as a frame holds one subject. No CSV or no rows: NO_FACE.
    Read with the csv module: a few rows per file, and pandas' per-file cost (~5 ms) would exceed the rest of
    the wrapper's work per frame."""
    score, present = np.full(len(SUPPORTED), np.nan, np.float32), np.zeros(len(SUPPORTED), np.int8)
    path = Path(path)
    if not path.exists():
        return score, present, NO_FACE
    with path.open(newline="") as f:
        rows = [[cell.strip() for cell in row] for row in csv.reader(f) if row]
    if not rows:
        raise OpenFaceCsvError(path, "empty CSV (no header)")
    col = {name: i for i, name in enumerate(rows[0])}
    _check_columns(path, col, ["face", "confidence"])
    faces = rows[1:]
    if any(len(r) != len(rows[0]) for r in faces):  # e.g. a row cut short by a crash
        raise OpenFaceCsvError(path, "CSV row with a wrong number of fields")
    conf = [_number(r[col["confidence"]]) for r in faces]
    if not faces or np.isnan(conf).all():
        return score, present, NO_FACE
    best = faces[int(np.nanargmax(conf))]
    r = np.array([_number(best[col[c]]) for c in R_COLS], np.float32)
    c = np.array([_number(best[col[c]]) for c in C_COLS], np.float32)
    if np.isnan(r).any() or np.isnan(c).any():
        raise OpenFaceCsvError(path, "CSV row has non-numeric AU values")
    return r, (c > 0.5).astype(np.int8), "ok"


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")
