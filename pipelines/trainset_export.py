"""Export a training set (the real training-fold frames + the synthetic frames of a training-set plan) so that a
user's code reads it without this project.

Layout of the export folder (N frames: real ones first in row_id order, then synthetic ones in plan_row order):

    OUT/
      trainset.json        what produced it (inputs, hashes, counts, AU rates before/after); written first with
                           "complete": false, and marked complete last: the folder's claim and commit mark
      manifest.parquet     one row per frame (TRAINSET_SCHEMA): labels, provenance, image path; written last
      trainset.zarr/       images (N, S, S, 3) uint8, landmarks (N, 68, 2) float32, labels (N, 12) int8, lossless
      bp4d/                BP4D layout: <Subject>/<Task>/<frame>.jpg and AUCoding/AU_OCC/<Subject>_<Task>.csv,
                           re-ingested by manifests.bp4d.read_bp4d (`lacgan ingest --dataset bp4d --root OUT/bp4d`)
      jaanet/              JAA-Net's list files, one line per frame in manifest order: trainset_path.txt (image
                           paths relative to OUT), trainset_AUoccur.txt (12 labels), trainset_land.txt (49 points
                           as x1 y1 x2 y2 ..., crop pixels), trainset_biocular.txt (inter-ocular distance)

Naming in the BP4D layout: real frames keep their subject, task and frame number. A synthetic frame keeps its
source's subject; its task is T<100 + k> for a source from task T<k> (so synthetic frames are sequences of their
own and never mix into a real video sequence), its frame number is its plan row. Landmarks of a synthetic frame
are its source's: LAC-GAN rewrites the AU regions only and composites them back, it does not move the face.
JAA-Net's 49 points are iBUG-68 without the jaw (0-16) and the inner mouth corners (60, 64); see
detectors/jaanet/landmarks.py. JPEGs (quality 95) are lossy; trainset.zarr holds the exact pixels.

An export folder must be empty, or a previous export of the same inputs (then an interrupted export resumes:
chunks of frames whose `done` flag is set are skipped). Any other non-empty folder is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import zarr
from tqdm.auto import tqdm

from detectors.jaanet.landmarks import interocular, to_49
from lacgan.atomic import write_bytes
from manifests.aligned import AlignedStore
from manifests.aus import AU_COLUMNS, AUS
from manifests.bp4d import AU_OCC, SUBJECT_RE, TASK_RE
from manifests.folds import check_training_rows
from manifests.schema import write_table
from pipelines import synth_store as ss
from pipelines.plan import store_frames
from pipelines.trainset import rate_table

MARK, MANIFEST, STORE, BP4D, JAANET, LIST = "trainset.json", "manifest.parquet", "trainset.zarr", "bp4d", "jaanet", \
    "trainset"
SYNTH_TASK_OFFSET = 100  # synthetic frames from task T<k> go to task T<100 + k>

TRAINSET_SCHEMA = pa.schema(
    [
        pa.field("index", pa.int64(), nullable=False),  # 0..N-1: the frame's row in trainset.zarr
        pa.field("kind", pa.string(), nullable=False),  # "real" or "synthetic"
        pa.field("subject", pa.string(), nullable=False),  # identity (a synthetic frame's is its source's)
        pa.field("task", pa.string(), nullable=False),  # BP4D-layout task (synthetic: T<100+k>)
        pa.field("frame", pa.int64(), nullable=False),  # BP4D-layout frame number (synthetic: its plan row)
        pa.field("image_path", pa.string(), nullable=False),  # JPEG, relative to the export folder
        *[pa.field(c, pa.int8(), nullable=False) for c in AU_COLUMNS],  # 1 present, 0 absent, -1 unknown
        pa.field("fold", pa.int8(), nullable=False),  # the subject's fold (never the test fold)
        pa.field("source_row", pa.int64(), nullable=False),  # aligned-store row: the frame / the one edited
        pa.field("source_image", pa.string(), nullable=False),  # that row's image in the original dataset
        pa.field("plan_row", pa.int64(), nullable=False),  # synthetic: plan (and synthetic.zarr) row; real: -1
        pa.field("target_row", pa.int64(), nullable=False),  # synthetic: real frame whose labels are the target
        pa.field("checkpoint_sha256", pa.string(), nullable=False),  # synthetic: LAC-GAN weights; real: ""
        pa.field("config_hash", pa.string(), nullable=False),  # synthetic: LAC-GAN config; real: ""
    ],
    metadata={b"lacgan.schema": b"trainset-manifest/1"},
)


class ExportError(ValueError):
    """An export that cannot be made or resumed here; the message names the folder or file and the problem."""


@dataclass(frozen=True)
class ExportConfig:
    test_fold: int = 3  # frames of this fold's subjects never enter the set
    chunk: int = 256  # frames per unit of work and of resumption (and per Zarr chunk)
    jpeg_quality: int = 95  # JPEG files of the BP4D layout / JAA-Net lists


# ---- the rows ---------------------------------------------------------------------------------------------
def trainset_rows(store_path, synth_out, test_fold: int = 3) -> pd.DataFrame:
    """The export manifest (TRAINSET_SCHEMA) of the store's training frames + the synthetic frames, checked:
    no row's identity, source or target pattern may belong to a subject of `test_fold`."""
    from pipelines.trainset import synthetic_labels

    frames = store_frames(store_path)
    synth = synthetic_labels(synth_out)  # the targets, or the critic's labels where it read the set
    check_training_rows(synth, frames, test_fold, str(synth_out))
    real = frames[frames["ok"] & (frames["fold"] != test_fold)]
    by_row = frames.set_index("row_id")
    for df in (real, synth):
        bad = df.loc[~df["subject"].str.match(SUBJECT_RE) | ~df["task"].str.match(TASK_RE), ["subject", "task"]]
        if len(bad):
            raise ExportError(f"{store_path}: subject/task {bad.iloc[0].tolist()} cannot be named in the BP4D "
                              f"layout (subjects F/M + 3 digits, tasks T + a number)")
    tasks = real["task"].str[1:].astype(int)
    if len(tasks) and tasks.max() >= SYNTH_TASK_OFFSET:
        raise ExportError(f"{store_path}: task T{tasks.max()} collides with the synthetic tasks "
                          f"(T{SYNTH_TASK_OFFSET}+)")
    real_part = pd.DataFrame({
        "kind": "real", "subject": real["subject"], "task": real["task"], "frame": real["frame"].astype(np.int64),
        **{c: real[c] for c in AU_COLUMNS}, "fold": real["fold"], "source_row": real["row_id"],
        "source_image": real["image_path"], "plan_row": -1, "target_row": -1, "checkpoint_sha256": "",
        "config_hash": ""})
    synth_task = "T" + (synth["task"].str[1:].astype(int) + SYNTH_TASK_OFFSET).astype(str)
    synth_part = pd.DataFrame({
        "kind": "synthetic", "subject": synth["subject"], "task": synth_task, "frame": synth["plan_row"],
        **{c: synth[c] for c in AU_COLUMNS}, "fold": by_row.loc[synth["source_row"], "fold"].to_numpy(),
        "source_row": synth["source_row"], "source_image": by_row.loc[synth["source_row"], "image_path"].to_numpy(),
        "plan_row": synth["plan_row"], "target_row": synth["target_row"],
        "checkpoint_sha256": synth["checkpoint_sha256"], "config_hash": synth["config_hash"]})
    df = pd.concat([real_part, synth_part], ignore_index=True)
    df.insert(0, "index", np.arange(len(df), dtype=np.int64))
    df["image_path"] = BP4D + "/" + df["subject"] + "/" + df["task"] + "/" + df["frame"].astype(str) + ".jpg"
    check_training_rows(df, frames, test_fold, f"{synth_out} + {store_path}")
    return validate_trainset(df)


def validate_trainset(df: pd.DataFrame, source: str = "<memory>") -> pd.DataFrame:
    """`df` in TRAINSET_SCHEMA's order and dtypes, or ExportError naming `source`."""
    try:  # pyarrow checks and casts every column to the schema's type
        out = pa.Table.from_pandas(df[TRAINSET_SCHEMA.names], schema=TRAINSET_SCHEMA, preserve_index=False).to_pandas()
    except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ExportError(f"{source}: does not fit the training-set manifest schema ({e})") from None
    if not np.array_equal(out["index"].to_numpy(), np.arange(len(out))):
        raise ExportError(f"{source}: index must be 0..N-1 in order")
    if out.duplicated(["subject", "task", "frame"]).any():
        raise ExportError(f"{source}: two frames share a subject/task/frame name")
    return out.reset_index(drop=True)


def read_trainset(out) -> pd.DataFrame:
    """The manifest of a finished export, checked."""
    path = Path(out) / MANIFEST
    if not path.exists():
        raise ExportError(f"{path}: no training-set manifest (is the export finished? re-run it to resume)")
    return validate_trainset(pq.read_table(path).to_pandas(), str(path))


# ---- the folder: claim, resume, commit ----------------------------------------------------------------------
def _inputs(store_path, synth_out, cfg: ExportConfig) -> dict:
    from pipelines.trainset import critic_fingerprint

    gen = Path(synth_out) / "generation.json"
    inputs = {"store": str(Path(store_path).resolve()), "synthetic": str(Path(synth_out).resolve()),
              "generation_sha256": hashlib.sha256(gen.read_bytes()).hexdigest() if gen.exists() else None,
              "test_fold": cfg.test_fold, "chunk": cfg.chunk, "jpeg_quality": cfg.jpeg_quality}
    critic = critic_fingerprint(synth_out)  # the labels come from the critic's reading (trainset.check_edits)
    if critic:
        inputs["critic_sha256"] = critic
    return inputs


def _claim(out: Path, inputs: dict) -> dict:
    """The folder's record: a new one for an empty folder, the existing one for a previous export of the same
    inputs; anything else is refused."""
    mark = out / MARK
    if mark.exists():
        try:
            record = json.loads(mark.read_text())
        except ValueError as e:
            raise ExportError(f"{mark}: unreadable export record ({e}); delete the folder to export again") from None
        if record.get("inputs") != inputs:
            raise ExportError(f"{out}: holds an export of other inputs ({record.get('inputs')}); use a new folder")
        return record
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out}: folder is not empty and is not a previous export (no {MARK}); export into an "
                          f"empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    record = {"complete": False, "inputs": inputs}
    ss.write_json(mark, record)
    return record


def _open_store(out: Path, rows: pd.DataFrame, size: int, chunk: int) -> zarr.Group:
    path = out / STORE
    if path.exists():
        g = zarr.open_group(str(path), mode="r+", zarr_format=3)
        if g["images"].shape != (len(rows), size, size, 3):
            raise ExportError(f"{path}: holds {g['images'].shape}, this export needs {(len(rows), size, size, 3)}")
        return g
    n, c = len(rows), max(1, min(chunk, len(rows)))
    tmp = out / f".{STORE}.{uuid.uuid4().hex[:8]}.tmp"
    g = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    g.create_array("images", shape=(n, size, size, 3), chunks=(c, size, size, 3), dtype="uint8", fill_value=0)
    g.create_array("landmarks", shape=(n, 68, 2), chunks=(c, 68, 2), dtype="float32", fill_value=np.nan)
    g.create_array("labels", shape=(n, len(AUS)), chunks=(max(n, 1), len(AUS)), dtype="int8", fill_value=-1)
    g.create_array("done", shape=(-(-n // c),), chunks=(max(1, -(-n // c)),), dtype="int8", fill_value=0)
    g["labels"][:] = rows[list(AU_COLUMNS)].to_numpy(np.int8)
    g.attrs.update({"chunk": c, "size": size, "aus": list(AUS)})
    os.replace(tmp, path)
    return zarr.open_group(str(path), mode="r+", zarr_format=3)


def _read_chunk(rows: pd.DataFrame, store: AlignedStore, synth_images) -> tuple[np.ndarray, np.ndarray]:
    """(images, landmarks) of a slice of the manifest: real frames from the aligned store, synthetic ones from
    the synthetic store with their source's landmarks."""
    s = store.size
    images, lms = np.empty((len(rows), s, s, 3), np.uint8), np.empty((len(rows), 68, 2), np.float32)
    real = (rows["kind"] == "real").to_numpy()
    src = rows["source_row"].to_numpy()
    if real.any():
        images[real], lms[real], _ = store.read(src[real])
    if (~real).any():
        plan_rows = rows["plan_row"].to_numpy()[~real]
        images[~real] = synth_images.get_orthogonal_selection((plan_rows,) + (slice(None),) * 3)
        lms[~real] = store.landmarks.get_orthogonal_selection((src[~real], slice(None), slice(None)))
    return images, lms


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, data)


def write_jpeg(path: Path, image: np.ndarray, quality: int) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ExportError(f"{path}: JPEG encoding failed")
    _write_file(path, buf.tobytes())


def _write_lists(out: Path, rows: pd.DataFrame, landmarks: np.ndarray) -> None:
    """The BP4D layout's AU_OCC files and JAA-Net's list files."""
    labels = rows[list(AU_COLUMNS)].to_numpy(np.int8)
    occ = np.where(labels == -1, 9, labels)
    header = ",".join(["0", *map(str, AUS)]) + "\n"
    for (subject, task), pos in rows.groupby(["subject", "task"], sort=True).indices.items():
        pos = pos[np.argsort(rows["frame"].to_numpy()[pos], kind="stable")]
        body = "".join(f"{f}," + ",".join(map(str, v)) + "\n" for f, v in zip(rows["frame"].to_numpy()[pos], occ[pos]))
        _write_file(out / BP4D / AU_OCC / f"{subject}_{task}.csv", (header + body).encode())
    lm49 = to_49(landmarks)
    prefix = out / JAANET / LIST
    _write_file(Path(f"{prefix}_path.txt"), "".join(p + "\n" for p in rows["image_path"]).encode())
    _write_file(Path(f"{prefix}_AUoccur.txt"), "".join(" ".join(map(str, v)) + "\n" for v in labels).encode())
    _write_file(Path(f"{prefix}_land.txt"),
                "".join("\t".join(f"{x:.6f}" for x in p.reshape(-1)) + "\n" for p in lm49).encode())
    _write_file(Path(f"{prefix}_biocular.txt"), "".join(f"{d:.6f}\n" for d in interocular(lm49)).encode())


def export_trainset(store_path, synth_out, out, cfg: ExportConfig = ExportConfig()) -> Path:
    """Export (or resume exporting) the training set into `out` (layout in the module doc); returns the path of
    its manifest.parquet."""
    out = Path(out)
    rows = trainset_rows(store_path, synth_out, cfg.test_fold)
    record = _claim(out, _inputs(store_path, synth_out, cfg))
    if record.get("complete"):
        return out / MANIFEST
    store = AlignedStore.open(store_path)
    synth_images = ss.open_images(synth_out)
    if synth_images.shape[1] != store.size:
        raise ExportError(f"{synth_out}: synthetic frames are {synth_images.shape[1]} px, the store's {store.size} px")
    g = _open_store(out, rows, store.size, cfg.chunk)
    c, done = int(g.attrs["chunk"]), g["done"][:]
    for k in tqdm(np.flatnonzero(done == 0), desc="export: chunks", unit="chunk"):
        part = rows.iloc[k * c:(k + 1) * c]
        images, lms = _read_chunk(part, store, synth_images)
        g["images"][k * c:k * c + len(part)] = images
        g["landmarks"][k * c:k * c + len(part)] = lms
        for path, image in zip(part["image_path"], images):
            write_jpeg(out / path, image, cfg.jpeg_quality)
        g["done"][k] = 1  # the chunk's commit mark
    _write_lists(out, rows, g["landmarks"][:])
    write_table(rows, out / MANIFEST, TRAINSET_SCHEMA)
    ss.write_json(out / MARK, {**record, "complete": True, **summary(rows, synth_out)})
    return out / MANIFEST


def summary(rows: pd.DataFrame, synth_out) -> dict:
    """Counts, AU rates before (real) and after (real + synthetic), and where the synthetic frames came from."""
    real, synth = rows[rows["kind"] == "real"], rows[rows["kind"] == "synthetic"]
    gen_path = Path(synth_out) / "generation.json"
    gen = json.loads(gen_path.read_text()) if gen_path.exists() else {}
    rates = rate_table(real[list(AU_COLUMNS)].to_numpy(np.int8), synth[list(AU_COLUMNS)].to_numpy(np.int8))
    return {"frames": {"real": len(real), "synthetic": len(synth), "subjects": int(rows["subject"].nunique())},
            "rates": rates.round(4).to_dict(orient="records"),
            "provenance": {k: gen.get(k) for k in ("plan", "plan_sha256", "checkpoint", "checkpoint_sha256",
                                                   "config_hash", "package_version")}}
