"""The frame manifest: one Parquet row per labelled frame, schema defined once and checked on every read/write."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from manifests.aus import AU_COLUMNS

STATUS_OK = "ok"

FRAME_SCHEMA = pa.schema(
    [
        pa.field("row_id", pa.int64(), nullable=False),  # 0..N-1, the index the aligned store uses
        pa.field("dataset", pa.string(), nullable=False),  # "bp4d", "cohort", "folder:<name>"
        pa.field("subject", pa.string(), nullable=False),  # e.g. "F001"
        pa.field("task", pa.string(), nullable=False),  # e.g. "T1"; "" for datasets without tasks
        pa.field("frame", pa.int32(), nullable=False),  # frame number as coded in the label file
        pa.field("image_path", pa.string(), nullable=False),  # relative to the dataset root
        *[pa.field(c, pa.int8(), nullable=False) for c in AU_COLUMNS],  # 1 present, 0 absent, -1 unknown
        pa.field("fold", pa.int8(), nullable=False),  # subject-disjoint fold, 1-based (JAA-Net parts 1..3)
        pa.field("status", pa.string(), nullable=False),  # "ok", or why the frame cannot be used
    ],
    metadata={b"lacgan.schema": b"frame-manifest/1"},
)


class ManifestError(ValueError):
    """A manifest that does not match FRAME_SCHEMA; the message names the file and the problem."""


def validate_frames(df: pd.DataFrame, source: str = "<memory>") -> pd.DataFrame:
    """Return `df` with the schema's column order and dtypes, or raise ManifestError naming `source`."""
    missing = [f.name for f in FRAME_SCHEMA if f.name not in df.columns]
    if missing:
        raise ManifestError(f"{source}: frame manifest lacks columns {missing}")
    out = df[[f.name for f in FRAME_SCHEMA]].copy()
    for f in FRAME_SCHEMA:
        col = out[f.name]
        if col.isna().any():
            raise ManifestError(f"{source}: column {f.name!r} has missing values")
        if pa.types.is_integer(f.type):
            if not pd.api.types.is_integer_dtype(col):
                raise ManifestError(f"{source}: column {f.name!r} must be integer, found {col.dtype}")
            out[f.name] = col.astype(f.type.to_pandas_dtype())
        else:
            out[f.name] = col.astype(str)
    labels = out[list(AU_COLUMNS)].to_numpy()
    bad = ~np.isin(labels, (-1, 0, 1))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ManifestError(
            f"{source}: label {labels[r, c]} in column {AU_COLUMNS[c]} (row {r}) is not one of 1, 0, -1"
        )
    if not np.array_equal(out["row_id"].to_numpy(), np.arange(len(out))):
        raise ManifestError(f"{source}: row_id must be 0..N-1 in order")
    return out.reset_index(drop=True)


def write_table(df: pd.DataFrame, path: str | os.PathLike, schema: pa.Schema, meta: dict | None = None) -> Path:
    """Write `df`'s columns of `schema` as Parquet with the schema's metadata plus `meta`, atomically (a temp
    name, then a rename), so a crash never leaves a half-written file under the real name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = schema.with_metadata({**(schema.metadata or {}), **(meta or {})})
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def write_manifest(df: pd.DataFrame, path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Validate and write atomically (temp file then rename), so a crash never leaves a half manifest.

    `root` is the dataset root that `image_path` is relative to; it is stored (absolute) in the file's metadata.
    """
    df = validate_frames(df, str(path))
    return write_table(df, path, FRAME_SCHEMA, {b"lacgan.root": str(Path(root).resolve()).encode()})


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a frame manifest; the dataset root is in the file's metadata (see `manifest_root`)."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: no such manifest")
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise ManifestError(f"{path}: not a readable Parquet file ({e})") from e
    return validate_frames(table.to_pandas(), str(path))


def manifest_root(path: str | os.PathLike) -> Path:
    """The dataset root recorded by `write_manifest`."""
    meta = pq.read_schema(path).metadata or {}
    if b"lacgan.root" not in meta:
        raise ManifestError(f"{path}: manifest records no dataset root (was it written by write_manifest?)")
    return Path(meta[b"lacgan.root"].decode())


def labels_of(df: pd.DataFrame) -> np.ndarray:
    """(N, 12) int8 label matrix in AUS order."""
    return df[list(AU_COLUMNS)].to_numpy(np.int8)
