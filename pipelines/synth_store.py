"""The synthetic store: generated frames in one sharded Zarr v3 group plus one Parquet manifest part per shard.

Layout (N = plan rows, F = frames per shard, S = crop size):

    OUT/
      synthetic.zarr/
        images         (N, S, S, 3) uint8  shard (F, S, S, 3), inner chunk (1, S, S, 3), uncompressed
        target_labels  (N, 12)      int8   the plan's targets (1, 0, -1 = region left as source)
        source_row     (N,)         int64  aligned-store row each frame was edited from
        plan_row       (N,)         int64  == index
        attrs: plan, plan_sha256, store, checkpoint, checkpoint_sha256, config_hash, frames_per_shard, size
      parts/shard-000000.parquet   provenance of the frames of shard 0 (PART_SCHEMA); its presence = shard done
      generation.json              what produced the output (config, hashes, package version)

The labels/rows arrays are written once, from the plan, when the store is created. Each shard's images are
written by exactly one task in one write (a Zarr shard file is replaced atomically, and two writers in one shard
lose frames silently, so tasks never share a shard). Then the task writes its manifest part to a temporary name
and renames it: that rename is the commit mark. A shard without its part is redone on the next run.
"""

from __future__ import annotations

import json
import os
import uuid
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from lacgan.atomic import replacing, write_text
from manifests.aus import AU_COLUMNS, N_AUS

STORE_NAME = "synthetic.zarr"
PARTS_DIR = "parts"

PART_SCHEMA = pa.schema(
    [
        pa.field("plan_row", pa.int64(), nullable=False),  # index of the frame in synthetic.zarr
        pa.field("source_row", pa.int64(), nullable=False),  # aligned-store row it was edited from
        pa.field("target_row", pa.int64(), nullable=False),  # real frame whose labels were the target, or -1
        pa.field("subject", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),  # sequence key used for scoring
        *[pa.field(c, pa.int8(), nullable=False) for c in AU_COLUMNS],  # target labels
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("source_policy", pa.string(), nullable=False),  # how the plan drew the source (random, neutral)
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("checkpoint_sha256", pa.string(), nullable=False),  # of the LAC-GAN weights used
        pa.field("config_hash", pa.string(), nullable=False),  # of the LAC-GAN training config
        pa.field("package_version", pa.string(), nullable=False),  # lacgan-augment version that wrote it
    ],
    metadata={b"lacgan.schema": b"synthetic-part/2"},
)


class SynthStoreError(ValueError):
    """A synthetic output folder that is missing, incomplete or made from something else; names the path."""


def package_version() -> str:
    try:
        return metadata.version("lacgan-augment")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def shard_ranges(n: int, frames_per_shard: int) -> list[tuple[int, int]]:
    return [(a, min(a + frames_per_shard, n)) for a in range(0, n, frames_per_shard)]


def part_path(out, shard: int) -> Path:
    return Path(out) / PARTS_DIR / f"shard-{shard:06d}.parquet"


def create_store(out, plan: pd.DataFrame, size: int, frames_per_shard: int, attrs: dict) -> zarr.Group:
    """Create (or re-open, when it was made with the same plan and checkpoint) the synthetic store."""
    out = Path(out)
    path = out / STORE_NAME
    if path.exists():
        g = zarr.open_group(str(path), mode="r+", zarr_format=3)
        for key in ("plan_sha256", "checkpoint_sha256", "frames_per_shard", "size", "edit_strength"):
            if g.attrs.get(key) != attrs.get(key):  # a key older stores lack reads None on both sides
                raise SynthStoreError(
                    f"{path}: was generated with {key}={g.attrs.get(key)!r}, this run has {attrs.get(key)!r}; "
                    f"use a new output folder (or delete this one) to generate with a different plan, checkpoint "
                    f"or edit strength")
        return g
    n = len(plan)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{STORE_NAME}.{uuid.uuid4().hex[:8]}.tmp"
    g = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    f = max(1, min(frames_per_shard, n))
    g.create_array("images", shape=(n, size, size, 3), chunks=(1, size, size, 3), shards=(f, size, size, 3),
                   dtype="uint8", compressors=None, fill_value=0)
    g.create_array("target_labels", shape=(n, N_AUS), chunks=(max(n, 1), N_AUS), dtype="int8", fill_value=-1)
    g.create_array("source_row", shape=(n,), chunks=(max(n, 1),), dtype="int64", fill_value=-1)
    g.create_array("plan_row", shape=(n,), chunks=(max(n, 1),), dtype="int64", fill_value=-1)
    g["target_labels"][:] = plan[list(AU_COLUMNS)].to_numpy(np.int8)
    g["source_row"][:] = plan["source_row"].to_numpy(np.int64)
    g["plan_row"][:] = plan["plan_row"].to_numpy(np.int64)
    g.attrs.update(attrs)
    os.replace(tmp, path)  # the store appears complete or not at all
    (out / PARTS_DIR).mkdir(exist_ok=True)
    return zarr.open_group(str(path), mode="r+", zarr_format=3)


def write_part(out, shard: int, part: pd.DataFrame) -> Path:
    """The commit mark of a shard: its provenance rows, written to a temp name and renamed into place."""
    path = part_path(out, shard)
    table = pa.Table.from_pandas(part[[f.name for f in PART_SCHEMA]], schema=PART_SCHEMA, preserve_index=False)
    with replacing(path) as tmp:
        pq.write_table(table, tmp)
    return path


def done_shards(out, ranges: list[tuple[int, int]]) -> set[int]:
    """Shards whose manifest part exists and holds exactly the shard's plan rows."""
    done = set()
    for k, (a, b) in enumerate(ranges):
        path = part_path(out, k)
        if not path.exists():
            continue
        try:
            rows = pq.read_table(path, columns=["plan_row"]).column("plan_row").to_numpy()
        except Exception:  # an unreadable part is treated as missing; the shard is redone and the part replaced
            continue
        if np.array_equal(rows, np.arange(a, b)):
            done.add(k)
    return done


def read_parts(out) -> pd.DataFrame:
    """The synthetic manifest: every part, in plan_row order; error unless every shard is done."""
    out = Path(out)
    path = out / STORE_NAME
    if not path.exists():
        raise SynthStoreError(f"{path}: no synthetic store here (run `lacgan generate` first)")
    g = zarr.open_group(str(path), mode="r", zarr_format=3)
    n, f = g["images"].shape[0], int(g.attrs["frames_per_shard"])
    ranges = shard_ranges(n, f)
    missing = sorted(set(range(len(ranges))) - done_shards(out, ranges))
    if missing:
        raise SynthStoreError(f"{out}: {len(missing)} of {len(ranges)} shards are not done (first: {missing[:5]}); "
                              f"re-run `lacgan generate` with the same arguments to finish them")
    parts = [pq.read_table(part_path(out, k)).to_pandas() for k in range(len(ranges))]
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[f.name for f in PART_SCHEMA])
    return df.sort_values("plan_row", kind="stable").reset_index(drop=True)


def open_images(out) -> zarr.Array:
    return zarr.open_group(str(Path(out) / STORE_NAME), mode="r", zarr_format=3)["images"]


def write_json(path, obj) -> None:
    path = Path(path)
    write_text(path, json.dumps(obj, indent=2, default=str))
