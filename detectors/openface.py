"""OpenFace 2.x as a Detector: runs the user's own `FeatureExtraction` binary per sequence and parses its CSV.

The project never builds or downloads OpenFace. The binary is found, in this order, from
  1. the `binary` setting (`lacgan detect score --detector openface --openface-bin PATH`),
  2. the environment variable OPENFACE_FEATURE_EXTRACTION,
  3. `FeatureExtraction` on PATH.

Each sequence (one subject-task) is written as zero-padded PNGs (so lexicographic order is temporal order) to a
folder and run with `-fdir`. OpenFace's AU outputs cover AUs 1 2 4 5 6 7 9 10 12 14 15 17 20 23 25 26 45
(`AUxx_r`, intensity 0..5) and those plus 28 (`AUxx_c`, presence); AU24 is not among them, so this detector
supports 11 of BP4D's 12 AUs. score = AUxx_r, present = AUxx_c.

`grouping`: "sequence" (default) uses OpenFace's dynamic models, which calibrate per person over the whole
sequence; "static" passes `-au_static`. Score real and synthetic frames with the same grouping; the choice is
recorded in the score table's metadata (`settings()["grouping"]`).

Failures are reported per frame in the `status` column, never as zero scores: a missing binary at run time,
a non-zero exit or a timeout (both retried), a CSV with missing columns, frames the CSV has no row for, and
frames where OpenFace found no face (`success` 0). Other sequences are still scored.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from detectors.base import scores_table
from detectors.frames import FrameSource
from manifests.aus import AUS

ENV_VAR = "OPENFACE_FEATURE_EXTRACTION"
BINARY_NAME = "FeatureExtraction"
AUS_R: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)  # AUxx_r columns
AUS_C: tuple[int, ...] = AUS_R + (28,)  # AUxx_c columns
SUPPORTED: tuple[int, ...] = tuple(a for a in AUS if a in AUS_R and a in AUS_C)  # BP4D's 12 minus AU24


class OpenFaceNotFound(FileNotFoundError):
    """No FeatureExtraction binary could be found; the message names all three ways to point at one."""


class OpenFaceCsvError(ValueError):
    """An OpenFace CSV that cannot be used (missing file or columns); the message names the file."""


@dataclass(frozen=True)
class OpenFaceConfig:
    binary: str | None = None  # path to FeatureExtraction; else $OPENFACE_FEATURE_EXTRACTION, else PATH
    grouping: str = "sequence"  # "sequence": dynamic AU models per subject-task; "static": -au_static
    model: str | None = None  # -mloc, e.g. "model/main_clnf_general.txt" for installs without CE-CLM experts
    timeout: float = 900.0  # seconds per sequence before the run is killed
    retries: int = 1  # extra attempts after a non-zero exit or a timeout
    workdir: str | None = None  # where frames and CSVs go; a temporary folder (deleted after) when None


def find_binary(setting: str | None = None) -> Path:
    """The FeatureExtraction executable from the setting, $OPENFACE_FEATURE_EXTRACTION or PATH."""
    tried = []
    for source, value in (("setting", setting), (f"${ENV_VAR}", os.environ.get(ENV_VAR))):
        if value:
            p = Path(value).expanduser()
            if p.is_file() and os.access(p, os.X_OK):
                return p
            tried.append(f"{source} = {value} (not an executable file)")
    found = shutil.which(BINARY_NAME)
    if found:
        return Path(found)
    tried.append(f"{BINARY_NAME} on PATH (not found)")
    raise OpenFaceNotFound(
        "OpenFace 2.x FeatureExtraction not found. Point the project at your install in one of three ways: "
        f"the --openface-bin PATH option (setting `binary`), the environment variable {ENV_VAR}=PATH, or put "
        f"the folder holding {BINARY_NAME} on PATH. The project never builds or downloads OpenFace. "
        f"Tried: {'; '.join(tried)}")


def build_command(binary, frames_dir, out_dir, name: str = "seq", static: bool = False,
                  model: str | None = None) -> list[str]:
    """Argument list for one sequence folder: writes `<out_dir>/<name>.csv` with AU outputs only."""
    cmd = [str(binary), "-fdir", str(frames_dir), "-out_dir", str(out_dir), "-of", name, "-aus"]
    if static:
        cmd.append("-au_static")
    if model:
        cmd += ["-mloc", str(model)]
    return cmd


@dataclass(frozen=True)
class RunResult:
    ok: bool
    reason: str  # "ok" or why the run failed (last attempt)
    attempts: int


def run_command(cmd: list[str], timeout: float, retries: int = 1, backoff: float = 1.0) -> RunResult:
    """Run without a shell; retry non-zero exits and timeouts (transient on busy machines); a missing or
    non-executable binary is not retried."""
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
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
            reason = f"openface: exit code {proc.returncode}: {' | '.join(tail)[:300]}"
        if attempt <= retries:
            time.sleep(backoff * attempt)
    return RunResult(False, reason, retries + 1)


def parse_csv(path, n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenFace CSV -> (score (n, 11), present (n, 11), status (n,)) for frames 1..n_frames in SUPPORTED order.
    Frames without a row or with success 0 get NaN scores, present 0 and a status saying why."""
    path = Path(path)
    if not path.exists():
        raise OpenFaceCsvError(f"{path}: OpenFace wrote no CSV")
    try:
        df = pd.read_csv(path, skipinitialspace=True)  # 2.0.x separates fields with ", "
    except Exception as e:
        raise OpenFaceCsvError(f"{path}: unreadable CSV ({e})") from e
    df.columns = [c.strip() for c in df.columns]
    need = ["frame", "success"] + [f"AU{a:02d}_r" for a in SUPPORTED] + [f"AU{a:02d}_c" for a in SUPPORTED]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise OpenFaceCsvError(f"{path}: CSV lacks columns {missing[:6]}{' ...' if len(missing) > 6 else ''}")
    if "face_id" in df.columns:  # several faces per image: keep the first face's row
        df = df.sort_values(["frame", "face_id"]).drop_duplicates("frame")
    score = np.full((n_frames, len(SUPPORTED)), np.nan, np.float32)
    present = np.zeros((n_frames, len(SUPPORTED)), np.int8)
    status = np.full(n_frames, f"openface: no CSV row for this frame ({len(df)} rows for {n_frames} frames)",
                     dtype=object)
    idx = df["frame"].to_numpy(int) - 1  # 1-based
    inside = (idx >= 0) & (idx < n_frames)
    df, idx = df[inside], idx[inside]
    ok = df["success"].to_numpy(int) == 1
    r = df[[f"AU{a:02d}_r" for a in SUPPORTED]].to_numpy(np.float32)
    c = df[[f"AU{a:02d}_c" for a in SUPPORTED]].to_numpy(np.float32)
    score[idx[ok]] = r[ok]
    present[idx[ok]] = (c[ok] > 0.5).astype(np.int8)
    status[idx[ok]] = "ok"
    status[idx[~ok]] = "openface: no face tracked (success 0)"
    return score, present, status


def write_frames(images: np.ndarray, folder: Path) -> list[Path]:
    """Frames as 000001.png, 000002.png, ... (lexicographic = temporal)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images, start=1):
        p = folder / f"{i:06d}.png"
        if not cv2.imwrite(str(p), cv2.cvtColor(im, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{p}: could not write frame")
        paths.append(p)
    return paths


class OpenFaceDetector:
    name = "openface"
    supported_aus = SUPPORTED

    def __init__(self, cfg: OpenFaceConfig, binary: Path):
        if cfg.grouping not in ("sequence", "static"):
            raise ValueError(f"openface: grouping must be 'sequence' or 'static', got {cfg.grouping!r}")
        self.cfg, self.binary = cfg, binary

    @classmethod
    def load(cls, weights_dir=None, **settings) -> "OpenFaceDetector":
        """`weights_dir` is unused (OpenFace ships its own models); settings are OpenFaceConfig fields."""
        cfg = OpenFaceConfig(**settings)
        return cls(cfg, find_binary(cfg.binary))

    def settings(self) -> dict:
        return {**asdict(self.cfg), "binary": str(self.binary), "au_models": "static" if self.static else "dynamic"}

    @property
    def static(self) -> bool:
        return self.cfg.grouping == "static"

    def score_sequence(self, images: np.ndarray, work: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One sequence -> (score, present, status); failures come back as statuses, never as exceptions."""
        n = len(images)
        write_frames(images, work / "frames")
        cmd = build_command(self.binary, work / "frames", work / "out", "seq", self.static, self.cfg.model)
        res = run_command(cmd, self.cfg.timeout, self.cfg.retries)
        if not res.ok:
            return _failed(n, res.reason)
        try:
            return parse_csv(work / "out" / "seq.csv", n)
        except OpenFaceCsvError as e:
            return _failed(n, f"openface: {e}")

    def score(self, frames: FrameSource) -> pd.DataFrame:
        root = Path(self.cfg.workdir) if self.cfg.workdir else Path(tempfile.mkdtemp(prefix="openface-"))
        parts = []
        try:
            groups = frames.sequence_groups()
            for k, (key, pos) in enumerate(tqdm(groups.items(), desc="openface: sequences", leave=False)):
                work = root / f"seq{k:05d}"
                shutil.rmtree(work, ignore_errors=True)
                s, p, st = self.score_sequence(frames.read(pos), work)
                parts.append(scores_table(frames.frame_ids[pos], SUPPORTED, s, p, st))
                if not self.cfg.workdir:
                    shutil.rmtree(work, ignore_errors=True)
        finally:
            if not self.cfg.workdir:
                shutil.rmtree(root, ignore_errors=True)
        if not parts:
            return scores_table(np.zeros(0, np.int64), SUPPORTED, np.zeros((0, len(SUPPORTED))),
                                np.zeros((0, len(SUPPORTED))))
        return pd.concat(parts, ignore_index=True)


def _failed(n: int, reason: str):
    k = len(SUPPORTED)
    return np.full((n, k), np.nan, np.float32), np.zeros((n, k), np.int8), np.full(n, reason, dtype=object)
