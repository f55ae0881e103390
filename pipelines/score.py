"""Scoring: every configured detector scores the real test frames and the synthetic frames the same way.

Real frames are the aligned store's test-fold rows (frame_id = row_id, sequences "subject/task"); synthetic
frames are the synthetic store's frames (frame_id = plan_row, labels = the targets, sequence = the subject/task
of the target frame, so OpenFace's per-sequence calibration groups them as it groups the real ones). Both are
the same aligned crops of the same size. Source frames of synthetic frames that lie outside the test fold are
scored too (set "source"), so the report can tell which AUs flipped and what the unedited sources score against
the targets. On the embedded cohort the counterfactual frames (pipelines/counterfactual.py: each plan row's
source rendered with its target AUs) are scored as set "counterfactual" (frame_id = plan_row, labels = targets).

Folds: the plan (match-test), the LAC-GAN run behind the synthetic set and every trained detector must have held
out the fold being scored; a mismatch is a ScoreError, never a silent mix.

The output is one long Parquet table (`SET_SCORES_SCHEMA`): frame_id, set (real | synthetic | source | counterfactual), detector,
au, score, present, label, status. Each (detector, set) is scored into its own file under `parts/` first, so
an interrupted scoring run resumes with the parts it has not written yet.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lacgan.atomic import replacing
from manifests.aus import AUS

log = logging.getLogger("lacgan.score")

SETS = ("real", "synthetic", "source", "counterfactual")

SET_SCORES_SCHEMA = pa.schema(
    [
        pa.field("frame_id", pa.int64(), nullable=False),  # real/source: aligned row_id; synthetic: plan_row
        pa.field("set", pa.string(), nullable=False),  # real (test fold) | synthetic | source | counterfactual
        pa.field("detector", pa.string(), nullable=False),  # registry name, e.g. "jaanet"
        pa.field("au", pa.int8(), nullable=False),  # AU number; unsupported AUs have no rows
        pa.field("score", pa.float32()),  # probability / margin / intensity, as the detector defines it
        pa.field("present", pa.int8(), nullable=False),  # the detector's 1/0 decision
        pa.field("label", pa.int8(), nullable=False),  # ground truth (real) or target (synthetic); -1 unknown
        pa.field("status", pa.string(), nullable=False),  # "ok" or why the frame has no valid score
    ],
    metadata={b"lacgan.schema": b"table1-scores/1"},
)


class ScoreError(ValueError):
    """Missing detector weights, stores or plans; the message names the path."""


@dataclass(frozen=True)
class DetectorSpec:
    name: str  # registry name in detectors.base.DETECTORS
    weights: str | None = None  # weights folder written by `lacgan detect train` (None for openface)
    settings: dict = field(default_factory=dict)  # extra keyword settings, e.g. {"binary": ".../FeatureExtraction"}

    @classmethod
    def parse(cls, text: str) -> "DetectorSpec":
        """"name" or "name=WEIGHTS_DIR" (the CLI form)."""
        name, _, weights = text.partition("=")
        return cls(name.strip(), weights.strip() or None)


def _synthetic_frames(out, name: str):
    """A FrameSource over a synthetic-layout folder: frame_id = plan_row, labels = targets."""
    from detectors.frames import FrameSource
    from pipelines.synth_store import STORE_NAME, read_parts

    man = read_parts(out)
    return man, FrameSource.from_group(Path(out) / STORE_NAME, frame_ids=man["plan_row"].to_numpy(),
                                       sequences=(man["subject"] + "/" + man["task"]).to_numpy(dtype=object),
                                       labels=man[[f"AU{a}" for a in AUS]].to_numpy(np.int8), name=name)


def frame_sources(store_path, synth_out, test_fold: int, counterfactual=None):
    """{set: FrameSource} for the real test frames, the synthetic frames, the out-of-fold source frames and
    (when given) the counterfactual frames."""
    from detectors.frames import FrameSource

    real = FrameSource.from_store(store_path, fold=test_fold)
    if len(real) == 0:
        raise ScoreError(f"{store_path}: no aligned frames in test fold {test_fold}")
    man, synth = _synthetic_frames(synth_out, str(synth_out))
    extra = np.setdiff1d(man["source_row"].to_numpy(), real.frame_ids)
    sources = {"real": real, "synthetic": synth}
    if len(extra):
        sources["source"] = FrameSource.from_store(store_path, rows=extra)
    if counterfactual is not None:
        sources["counterfactual"] = _synthetic_frames(counterfactual, str(counterfactual))[1]
    return sources


def read_generation(out) -> dict:
    """A synthetic (or counterfactual) folder's generation.json; ScoreError naming it when unreadable."""
    path = Path(out) / "generation.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ScoreError(f"{path}: unreadable generation record ({e}); was this folder written by `lacgan generate`?")


def check_folds(synth_out, detectors: list[DetectorSpec], test_fold: int, counterfactual=None) -> None:
    """ScoreError unless the plan, the LAC-GAN run and every trained detector held out `test_fold`, and the
    counterfactual set (if any) was drawn for the same plan as the synthetic set."""
    from pipelines.plan import plan_config

    gen = read_generation(synth_out)
    cfg = plan_config(gen.get("plan", "")) if gen.get("plan") else None
    if cfg and cfg.get("policy") == "match-test" and int(cfg.get("test_fold", test_fold)) != test_fold:
        raise ScoreError(f"{gen['plan']}: the plan matches test fold {cfg['test_fold']}, but fold {test_fold} is "
                         f"being scored (use --test-fold {cfg['test_fold']}, or plan for fold {test_fold})")
    if gen.get("test_fold") is not None and int(gen["test_fold"]) != test_fold:
        raise ScoreError(f"{synth_out}: generated by a model that held out fold {gen['test_fold']}, but fold "
                         f"{test_fold} is being scored (its subjects were in that model's training set)")
    for spec in detectors:
        if spec.weights is None:
            continue
        try:
            trained = json.loads((Path(spec.weights) / "config.json").read_text()).get("summary", {}).get("test_fold")
        except (OSError, ValueError):
            trained = None
        if trained is not None and int(trained) != test_fold:
            raise ScoreError(f"{spec.weights}: detector {spec.name!r} held out fold {trained}, but fold {test_fold} "
                             f"is being scored (train it with --test-fold {test_fold})")
    if counterfactual is not None:
        cf = read_generation(counterfactual)
        if cf.get("plan_sha256") != gen.get("plan_sha256"):
            raise ScoreError(f"{counterfactual}: counterfactual frames of another plan than {synth_out}'s "
                             f"(plan sha256 {str(cf.get('plan_sha256'))[:12]} vs {str(gen.get('plan_sha256'))[:12]})")


def _long(df: pd.DataFrame, frames, set_name: str, detector: str) -> pd.DataFrame:
    """Detector output + set, detector and the frame's label for that AU."""
    labels = frames.labels if frames.labels is not None else np.full((len(frames), len(AUS)), -1, np.int8)
    pos = pd.Series(np.arange(len(frames)), index=frames.frame_ids)
    rows = pos.reindex(df["frame_id"].to_numpy()).to_numpy()
    if np.isnan(rows.astype(float)).any():
        raise ScoreError(f"{detector} returned frame ids that are not among the {set_name} frames")
    cols = np.searchsorted(np.asarray(AUS), df["au"].to_numpy())
    status = df["status"] if "status" in df else "ok"
    return pd.DataFrame({"frame_id": df["frame_id"].astype("int64").to_numpy(), "set": set_name,
                         "detector": detector, "au": df["au"].astype("int8").to_numpy(),
                         "score": df["score"].astype("float32").to_numpy(),
                         "present": df["present"].astype("int8").to_numpy(),
                         "label": labels[rows.astype(int), cols], "status": status})


def _write(df: pd.DataFrame, path: Path, meta: dict | None = None) -> Path:
    schema = SET_SCORES_SCHEMA.with_metadata({**SET_SCORES_SCHEMA.metadata, **(meta or {})})
    table = pa.Table.from_pandas(df[[f.name for f in SET_SCORES_SCHEMA]], schema=schema, preserve_index=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        pq.write_table(table, tmp)
    return path


def _fingerprint(run_out, spec: DetectorSpec) -> bytes:
    """What a score part depends on: the frames' run (generation.json: plan, checkpoint) and the detector
    (weights, settings)."""
    gen = Path(run_out) / "generation.json"
    cfg = Path(spec.weights) / "config.json" if spec.weights else None
    blob = json.dumps({"generation": gen.read_text() if gen.exists() else None, "name": spec.name,
                       "weights": cfg.read_text() if cfg is not None and cfg.exists() else spec.weights,
                       "settings": spec.settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest().encode()


def _part_current(path: Path, fingerprint: bytes) -> bool:
    try:
        return (pq.read_schema(path).metadata or {}).get(b"lacgan.fingerprint") == fingerprint
    except (OSError, pa.ArrowInvalid):
        return False


def _load(spec: DetectorSpec, load_detector):
    """The detector of `spec`; unreadable weights or config (e.g. an unknown JAA-Net config field) are one
    ScoreError naming the folder, as `lacgan detect score` reports them."""
    try:
        return load_detector(spec.name, spec.weights, **spec.settings)
    except ScoreError:
        raise
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise ScoreError(f"{spec.weights}: cannot load detector {spec.name!r}: {e}") from None


def score_all(store_path, synth_out, detectors: list[DetectorSpec], out_path, test_fold: int = 3,
              counterfactual=None) -> Path:
    """Score real, synthetic (and counterfactual) frames with every detector into one long Parquet table."""
    from detectors.base import load_detector
    from detectors.failures import require_scored, summarise_failures

    out_path = Path(out_path)
    if not detectors:
        raise ScoreError("no detectors configured; give at least one, e.g. jaanet=runs/demo/detectors/jaanet")
    for spec in detectors:
        if spec.weights is not None and not Path(spec.weights).exists():
            raise ScoreError(f"{spec.weights}: no weights for detector {spec.name!r} (train it first: "
                             f"`lacgan detect train {spec.name} ...`)")
    check_folds(synth_out, detectors, test_fold, counterfactual)
    sources = frame_sources(store_path, synth_out, test_fold, counterfactual)
    parts_dir = out_path.parent / f"{out_path.stem}.parts"
    parts, supported, settings = [], {}, {}
    for spec in detectors:
        det = None
        for set_name, frames in sources.items():
            fp = _fingerprint(counterfactual if set_name == "counterfactual" else synth_out, spec)
            part = parts_dir / f"{spec.name}-{set_name}.parquet"
            if not _part_current(part, fp):  # resume: parts of the same run and detector are kept
                det = det or _load(spec, load_detector)
                log.info("scoring %d %s frames with %s", len(frames), set_name, spec.name)
                meta = {b"lacgan.supported_aus": json.dumps({spec.name: [int(a) for a in det.supported_aus]}).encode(),
                        b"lacgan.fingerprint": fp,
                        b"lacgan.settings": json.dumps({spec.name: det.settings()}, default=str).encode()}
                scored = require_scored(det.score(frames), spec.name, f"{set_name} frames")  # all failed: stop
                if failed := summarise_failures(scored):  # partial failures: counted in the report, logged here
                    log.warning("%s on %s frames: %s", spec.name, set_name, failed)
                _write(_long(scored, frames, set_name, spec.name), part, meta)
            table = pq.read_table(part)
            supported.update(json.loads(table.schema.metadata[b"lacgan.supported_aus"]))
            settings.update(json.loads(table.schema.metadata.get(b"lacgan.settings", b"{}")))
            parts.append(table.to_pandas())
    meta = {b"lacgan.supported_aus": json.dumps(supported).encode(), b"lacgan.test_fold": str(test_fold).encode(),
            b"lacgan.settings": json.dumps(settings, default=str).encode(),  # {detector: settings()}, e.g. grouping
            b"lacgan.sets": json.dumps({k: str(Path(v).resolve()) for k, v in
                                        (("synthetic", synth_out), ("counterfactual", counterfactual)) if v}).encode()}
    return _write(pd.concat(parts, ignore_index=True), out_path, meta)


def read_set_scores(path) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    """(long score table, {detector: supported AUs})."""
    df, info = read_set_scores_info(path)
    return df, info["supported_aus"]


def read_set_scores_info(path) -> tuple[pd.DataFrame, dict]:
    """(long score table, {"supported_aus": {det: [AU]}, "settings": {det: {...}}, "test_fold": int | None})."""
    path = Path(path)
    if not path.exists():
        raise ScoreError(f"{path}: no score table (run `lacgan score` first)")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise ScoreError(f"{path}: not a readable Parquet file ({e})") from e
    meta = table.schema.metadata or {}
    if meta.get(b"lacgan.schema") != b"table1-scores/1":
        raise ScoreError(f"{path}: not a Table 1 score table (schema tag missing)")
    missing = [f.name for f in SET_SCORES_SCHEMA if f.name not in table.column_names]
    if missing:
        raise ScoreError(f"{path}: score table lacks columns {missing}")
    supported = json.loads(meta.get(b"lacgan.supported_aus", b"{}"))
    fold = meta.get(b"lacgan.test_fold")
    return table.to_pandas(), {"supported_aus": {k: [int(a) for a in v] for k, v in supported.items()},
                               "settings": json.loads(meta.get(b"lacgan.settings", b"{}")),
                               "test_fold": int(fold) if fold else None}
