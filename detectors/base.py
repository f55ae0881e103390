"""One detector protocol, the score table every detector returns, and the registry that builds detectors by name.

Score table (long format, one row per frame and supported AU; Parquet on disk):

    frame_id int64   the FrameSource id
    au       int8    AU number (1, 2, 4, ...); AUs a detector cannot see are absent, never zeros
    score    float32 probability (jaanet), SVM margin squashed to (0, 1) (hogsvm) or intensity 0..5 (openface)
    present  int8    1 / 0 decision
    status   str     "ok", or why this frame has no valid score (then score is NaN and present 0)
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from detectors.frames import FrameSource
from lacgan.atomic import replacing
from manifests.aus import AUS

DETECTOR_SCORES_SCHEMA = pa.schema([
    pa.field("frame_id", pa.int64(), nullable=False),
    pa.field("au", pa.int8(), nullable=False),
    pa.field("score", pa.float32()),
    pa.field("present", pa.int8(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
])


@runtime_checkable
class Detector(Protocol):
    name: str  # registry name, written into every score table
    supported_aus: tuple[int, ...]  # the subset of BP4D's 12 AUs (manifests.aus.AUS) this detector reports

    def score(self, frames: FrameSource) -> pd.DataFrame:
        """Long score table (see module doc) for every frame of `frames`."""
        ...

    def settings(self) -> dict:
        """What produced the scores (config, weights hash, grouping): stored in the Parquet metadata."""
        ...


# name -> "module:Class"; each class has `load(weights_dir, **settings)`; trainable ones a module-level `train`.
DETECTORS: dict[str, str] = {
    "jaanet": "detectors.jaanet.detector:JaaNetDetector",
    "hogsvm": "detectors.hogsvm:HogSvmDetector",
    "openface": "detectors.openface:OpenFaceDetector",
}
TRAINERS: dict[str, str] = {
    "jaanet": "detectors.jaanet.train:train_jaanet",
    "hogsvm": "detectors.hogsvm:train_hogsvm",
}


def _resolve(table: dict[str, str], name: str, what: str):
    if name not in table:
        raise KeyError(f"unknown {what} {name!r}; choose one of {sorted(table)}")
    module, attr = table[name].split(":")
    return getattr(importlib.import_module(module), attr)


def load_detector(name: str, weights_dir=None, **settings) -> Detector:
    """A ready detector: trainable ones read `weights_dir` (as written by `train_detector`), openface takes
    settings such as `binary=`, `grouping=`."""
    return _resolve(DETECTORS, name, "detector").load(weights_dir, **settings)


# name -> "module:PRESETS" (that detector's presets) and "module:Config" (its typed config)
CONFIGS: dict[str, tuple[str, str]] = {
    "jaanet": ("detectors.jaanet.config:PRESETS", "detectors.jaanet.config:JaaNetConfig"),
    "hogsvm": ("detectors.hogsvm:PRESETS", "detectors.hogsvm:HogSvmConfig"),
}


def config_class(name: str):
    """The typed config class of trainable detector `name`."""
    return _resolve({k: v[1] for k, v in CONFIGS.items()}, name, "trainable detector")


def detector_preset(name: str, preset: str, **changes):
    """Trainable detector `name`'s preset config, with `changes` (field: value) checked and applied; a
    ValueError naming an unknown preset or field."""
    from lacgan.typed import build, to_dict

    presets = _resolve({k: v[0] for k, v in CONFIGS.items()}, name, "trainable detector")
    if preset not in presets:
        raise ValueError(f"unknown {name} preset {preset!r}; choose one of {sorted(presets)}")
    return build(config_class(name), {**to_dict(presets[preset]), **changes}, f"{name} config")


def read_detector_config(name: str, path, **changes):
    """A trainable detector's config from a JSON file (as `lacgan detect train --config` takes), with `changes`;
    unknown fields, wrong types and unreadable files are a ValueError naming the file and the field."""
    from lacgan.typed import read_config

    return read_config(config_class(name), path, name, changes)


def train_detector(name: str, store_path, out_dir, cfg, test_fold: int = 3, **kw) -> dict:
    """Train trainable detector `name` with its config `cfg` (detector_preset, read_detector_config) on the
    store's folds other than `test_fold`; weights + config JSON in `out_dir`. `kw`: minutes (a wall-clock safety
    net), extra (more training frames), progress. Returns a summary dict (minutes, held-out metrics)."""
    if not isinstance(cfg, config_class(name)):
        raise TypeError(f"{name}: cfg must be a {config_class(name).__name__}, got {type(cfg).__name__}")
    return _resolve(TRAINERS, name, "trainable detector")(store_path, out_dir, cfg, test_fold=test_fold, **kw)


# ---- score tables -----------------------------------------------------------------------------------------
def scores_table(frame_ids: np.ndarray, aus: tuple[int, ...], score: np.ndarray, present: np.ndarray,
                 status: np.ndarray | None = None) -> pd.DataFrame:
    """Long table from (n, len(aus)) score / present matrices; `status` (n,) str per frame (default "ok")."""
    frame_ids = np.asarray(frame_ids, dtype=np.int64)
    n, k = len(frame_ids), len(aus)
    score, present = np.asarray(score, np.float32), np.asarray(present, np.int8)
    if score.shape != (n, k) or present.shape != (n, k):
        raise ValueError(f"score/present must be ({n}, {k}), got {score.shape} / {present.shape}")
    st = np.full(n, "ok", dtype=object) if status is None else np.asarray(status, dtype=object)
    return pd.DataFrame({
        "frame_id": np.repeat(frame_ids, k),
        "au": np.tile(np.asarray(aus, dtype=np.int8), n),
        "score": score.reshape(-1),
        "present": present.reshape(-1),
        "status": np.repeat(st, k).astype(str),
    })


def check_scores(df: pd.DataFrame, supported_aus: tuple[int, ...], source: str = "<scores>") -> pd.DataFrame:
    """Columns, dtypes and AU set of a score table; raises ValueError naming `source`."""
    missing = [f.name for f in DETECTOR_SCORES_SCHEMA if f.name not in df.columns]
    if missing:
        raise ValueError(f"{source}: score table lacks columns {missing}")
    extra = set(df["au"].unique().tolist()) - set(supported_aus)
    if extra:
        raise ValueError(f"{source}: rows for unsupported AUs {sorted(extra)}")
    if not set(supported_aus) <= set(AUS):
        raise ValueError(f"{source}: supported_aus {supported_aus} are not all among BP4D's 12 AUs {AUS}")
    return df.astype({"frame_id": "int64", "au": "int8", "score": "float32", "present": "int8", "status": str})


def write_detector_scores(df: pd.DataFrame, path, detector: Detector) -> Path:
    """Validate and write a score table atomically; the detector's name, AUs and settings go in the metadata."""
    path = Path(path)
    df = check_scores(df, detector.supported_aus, str(path))
    meta = {b"lacgan.schema": b"scores/1", b"lacgan.detector": detector.name.encode(),
            b"lacgan.supported_aus": json.dumps(list(detector.supported_aus)).encode(),
            b"lacgan.settings": json.dumps(detector.settings(), default=str).encode()}
    schema = DETECTOR_SCORES_SCHEMA.with_metadata(meta)
    table = pa.Table.from_pandas(df[[f.name for f in schema]], schema=schema, preserve_index=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_detector_scores(path) -> tuple[pd.DataFrame, dict]:
    """(score table, metadata dict with detector, supported_aus, settings)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no score table")
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if meta.get(b"lacgan.schema") != b"scores/1":
        raise ValueError(f"{path}: not a lacgan score table (schema tag missing)")
    info = {"detector": meta[b"lacgan.detector"].decode(),
            "supported_aus": tuple(json.loads(meta[b"lacgan.supported_aus"])),
            "settings": json.loads(meta[b"lacgan.settings"])}
    return check_scores(table.to_pandas(), info["supported_aus"], str(path)), info


def presence_matrix(df: pd.DataFrame, frame_ids: np.ndarray, aus: tuple[int, ...], column: str = "present"
                    ) -> np.ndarray:
    """(n, len(aus)) matrix of `column` for `frame_ids` in that order; NaN where a frame/AU has no row."""
    wide = df.pivot_table(index="frame_id", columns="au", values=column, aggfunc="first")
    wide = wide.reindex(index=np.asarray(frame_ids, np.int64), columns=list(aus))
    return wide.to_numpy(dtype=np.float64)
