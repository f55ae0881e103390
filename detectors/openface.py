"""OpenFace 2.x as a Detector: runs the user's own OpenFace executables and parses their CSVs.

The project never builds or downloads OpenFace. `grouping` says how frames are put to OpenFace, and the same
grouping must score real and synthetic frames (it is recorded in every score file, `settings()["grouping"]`):

- "sequence" (default): one `FeatureExtraction -fdir` run per subject-task. Its dynamic AU models calibrate per
  person over the sequence, and OpenFace smooths `AUxx_c` with a 7-frame majority vote.
- "static": the same runs with `-au_static`. Still a sequence: the 7-frame vote remains.
- "frame": `FaceLandmarkImg -fdir` on batches of `batch` frames: every frame is decided on its own (static AU
  models, no temporal context). Synthetic neighbours are independent edits, real neighbours near-duplicates,
  so only this grouping decides each synthetic frame by itself. Batching pays OpenFace's start-up (1.3-2.4 s
  per call on 2.0.6 installs, model loading) once per batch, not per frame.

Executables are found, in this order: FeatureExtraction from the `binary` setting (`--openface-bin`), the
environment variable OPENFACE_FEATURE_EXTRACTION, then PATH. FaceLandmarkImg from the `image_binary` setting,
OPENFACE_FACE_LANDMARK_IMG, next to the FeatureExtraction given by `binary` or OPENFACE_FEATURE_EXTRACTION,
then PATH. `binary` may also be the folder holding OpenFace's executables.

Failures are reported per frame in the `status` column, never as zero scores: a missing binary at run time,
a non-zero exit or a timeout (retried unless the failure is a known configuration error), a CSV with missing
columns, frames without a row (sequence) or without a CSV (frame: no face found), frames where OpenFace tracked
no face (`success` 0). Other sequences and batches are still scored. Statuses are stable strings (work paths
replaced by `<work>`), so failures can be counted per reason (`detectors.failures`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from detectors.base import scores_table
from detectors.frames import FrameSource
from detectors.openface_config import TEMPORAL_CONTEXT, OpenFaceConfig
from detectors.openface_run import (SUPPORTED, OpenFaceCsvError, build_command, build_image_command, parse_csv,
                                    parse_image_csv, run_command, write_frames)

ENV_VAR = "OPENFACE_FEATURE_EXTRACTION"
BINARY_NAME = "FeatureExtraction"
IMG_ENV_VAR = "OPENFACE_FACE_LANDMARK_IMG"
IMG_BINARY_NAME = "FaceLandmarkImg"


class OpenFaceNotFound(FileNotFoundError):
    """No OpenFace executable could be found; the message names every way to point at one."""


def _executable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def find_binary(setting: str | None = None, name: str = BINARY_NAME, env_var: str = ENV_VAR,
                near: tuple[str | None, ...] = ()) -> Path:
    """The executable `name` from `setting` (a file, or a folder holding `name`), $`env_var`, next to the
    files/folders in `near`, or PATH; OpenFaceNotFound lists what was tried."""
    tried = []
    for source, value in (("setting", setting), (f"${env_var}", os.environ.get(env_var))):
        if value:
            p = Path(value).expanduser()
            p = p / name if p.is_dir() else p
            if _executable(p):
                return p
            tried.append(f"{source} = {value} (not an executable file)")
    for value in filter(None, near):
        p = Path(value).expanduser()
        p = (p if p.is_dir() else p.parent) / name
        if _executable(p):
            return p
        tried.append(f"{p} (next to {value}: absent)")
    found = shutil.which(name)
    if found:
        return Path(found)
    tried.append(f"{name} on PATH (not found)")
    how = ("the --openface-bin PATH option (setting `binary`)" if name == BINARY_NAME else
           f"the setting `image_binary`, {name} in the folder of --openface-bin / ${ENV_VAR}")
    raise OpenFaceNotFound(
        f"OpenFace 2.x {name} not found. Point the project at your install: {how}, the environment variable "
        f"{env_var}=PATH, or put the folder holding {name} on PATH. The project never builds or downloads "
        f"OpenFace. Tried: {'; '.join(tried)}")


class OpenFaceDetector:
    name = "openface"
    supported_aus = SUPPORTED

    def __init__(self, cfg: OpenFaceConfig, binary: Path):
        self.cfg, self.binary = cfg, binary  # binary: FaceLandmarkImg for grouping "frame", else FeatureExtraction

    @classmethod
    def load(cls, weights_dir=None, **settings) -> "OpenFaceDetector":
        """`weights_dir` is unused (OpenFace ships its own models); settings are OpenFaceConfig fields."""
        cfg = OpenFaceConfig(**settings)
        if cfg.grouping == "frame":
            binary = find_binary(cfg.image_binary, IMG_BINARY_NAME, IMG_ENV_VAR, (cfg.binary, os.environ.get(ENV_VAR)))
        else:
            binary = find_binary(cfg.binary)
        return cls(cfg, binary)

    def settings(self) -> dict:
        return {**asdict(self.cfg), "executable": str(self.binary),
                "au_models": "dynamic" if self.cfg.grouping == "sequence" else "static",
                "temporal_context": TEMPORAL_CONTEXT[self.cfg.grouping]}

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
            return _failed(n, f"openface: {e.problem}")

    def score_batch(self, images: np.ndarray, work: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Independent frames, one FaceLandmarkImg call -> (score, present, status), in the order given. Image k is
        written as 00000k.bmp and read back from out/00000k.csv. After a failed call (crash, timeout), CSVs of the
        images OpenFace finished are still used; the rest get the call's failure reason."""
        n = len(images)
        # BMP: lossless like PNG, no compression cost, and simple enough for the test stand-in to read pixels
        names = [p.stem for p in write_frames(images, work / "frames", ext="bmp")]
        res = run_command(build_image_command(self.binary, work / "frames", work / "out", self.cfg.model),
                          self.cfg.timeout, self.cfg.retries)
        score, present = np.full((n, len(SUPPORTED)), np.nan, np.float32), np.zeros((n, len(SUPPORTED)), np.int8)
        status = np.full(n, res.reason, dtype=object)
        for k, stem in enumerate(names):
            csv = work / "out" / f"{stem}.csv"
            if not res.ok and not csv.exists():
                continue
            try:
                score[k], present[k], status[k] = parse_image_csv(csv)
            except OpenFaceCsvError as e:
                status[k] = f"openface: {e.problem}"
        return score, present, status

    def score(self, frames: FrameSource) -> pd.DataFrame:
        root = Path(self.cfg.workdir) if self.cfg.workdir else Path(tempfile.mkdtemp(prefix="openface-"))
        if self.cfg.grouping == "frame":
            pos = np.arange(len(frames))
            groups = [pos[i:i + self.cfg.batch] for i in range(0, len(frames), self.cfg.batch)]
            run, what, prefix = self.score_batch, "frame batches", "batch"
        else:
            groups = list(frames.sequence_groups().values())
            run, what, prefix = self.score_sequence, "sequences", "seq"
        parts = []
        try:
            for k, idx in enumerate(tqdm(groups, desc=f"openface: {what}", leave=False)):
                work = root / f"{prefix}{k:05d}"
                shutil.rmtree(work, ignore_errors=True)
                s, p, st = run(frames.read(idx), work)
                st = np.array([x.replace(str(work), "<work>") for x in st], dtype=object)  # stable reasons
                parts.append(scores_table(frames.frame_ids[idx], SUPPORTED, s, p, st))
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
