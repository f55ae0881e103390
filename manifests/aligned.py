"""The aligned store: face crops aligned to a canonical frame, one Zarr v3 group indexed by manifest row_id.

Layout (N = rows of the frame manifest, S = crop size, C = rows per chunk):

    STORE.zarr/
      images     (N, S, S, 3) uint8    RGB crops, chunk (C, S, S, 3)
      landmarks  (N, 68, 2)   float32  iBUG-68 points in crop pixels (x, y), NaN where not aligned
      row_id     (N,)         int64    manifest row_id (== index)
      labels     (N, 12)      int8     copy of the manifest's AU labels in AUS order (1, 0, -1)
      fold       (N,)         int8     copy of the manifest's fold
      status     (N,)         int8     PENDING, OK or FAILED, chunk (C,)
      failures/chunk-XXXXXX.json       {"row_id": reason} for FAILED rows of that chunk (an empty subgroup)
      attrs: size, chunk, manifest (absolute path), root, landmark_source, created_by

A chunk of rows is the unit of work and of resumption: its images and landmarks are written first, then its
failure reasons, then its status. A chunk whose status still holds PENDING is redone on the next run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from manifests.aus import N_AUS

PENDING, OK, FAILED = 0, 1, 2
N_LANDMARKS = 68


class StoreError(ValueError):
    """An aligned store that is missing, incomplete or of the wrong shape; the message names the path."""


@dataclass
class AlignedStore:
    path: Path
    group: zarr.Group

    # ---- opening -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path, n: int, size: int, chunk: int = 64, attrs: dict | None = None) -> "AlignedStore":
        path = Path(path)
        g = zarr.open_group(str(path), mode="w", zarr_format=3)
        g.create_array("images", shape=(n, size, size, 3), chunks=(chunk, size, size, 3), dtype="uint8",
                       fill_value=0)
        g.create_array("landmarks", shape=(n, N_LANDMARKS, 2), chunks=(chunk, N_LANDMARKS, 2),
                       dtype="float32", fill_value=np.nan)
        g.create_array("row_id", shape=(n,), chunks=(max(n, 1),), dtype="int64", fill_value=-1)
        g.create_array("labels", shape=(n, N_AUS), chunks=(max(n, 1), N_AUS), dtype="int8", fill_value=-1)
        g.create_array("fold", shape=(n,), chunks=(max(n, 1),), dtype="int8", fill_value=0)
        g.create_array("status", shape=(n,), chunks=(chunk,), dtype="int8", fill_value=PENDING)
        g.attrs.update({"size": size, "chunk": chunk, **(attrs or {})})
        g.create_group("failures")  # a Zarr group, so Zarr does not warn about an unknown folder
        return cls(path, g)

    @classmethod
    def open(cls, path, mode: str = "r") -> "AlignedStore":
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: no aligned store here (run `lacgan align` first)")
        try:
            g = zarr.open_group(str(path), mode=mode, zarr_format=3)
        except Exception as e:
            raise StoreError(f"{path}: not a Zarr v3 group ({e})") from e
        for name in ("images", "landmarks", "row_id", "labels", "fold", "status"):
            if name not in g:
                raise StoreError(f"{path}: aligned store lacks the array {name!r}")
        return cls(path, g)

    # ---- shape ---------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return int(self.group.attrs["size"])

    @property
    def chunk(self) -> int:
        return int(self.group.attrs["chunk"])

    def __len__(self) -> int:
        return int(self.group["status"].shape[0])

    @property
    def images(self) -> zarr.Array:
        return self.group["images"]

    @property
    def landmarks(self) -> zarr.Array:
        return self.group["landmarks"]

    # ---- status --------------------------------------------------------------------------------------
    def status(self) -> np.ndarray:
        return self.group["status"][:]

    def ok_rows(self) -> np.ndarray:
        """row_ids whose crop is usable."""
        return np.flatnonzero(self.status() == OK)

    def pending_chunks(self) -> list[int]:
        st = self.status()
        c = self.chunk
        return [i for i in range(0, len(st), c) if (st[i:i + c] == PENDING).any()]

    def failures(self) -> dict[int, str]:
        """row_id -> reason for every FAILED row."""
        out: dict[int, str] = {}
        for f in sorted((self.path / "failures").glob("chunk-*.json")):
            out.update({int(k): v for k, v in json.loads(f.read_text()).items()})
        return out

    def write_chunk(self, start: int, images: np.ndarray, landmarks: np.ndarray, failures: dict[int, str]):
        """Write rows [start, start+len(images)): data first, reasons next, status last (the commit mark)."""
        n = len(images)
        if images.dtype != np.uint8 or images.shape[1:] != (self.size, self.size, 3):
            raise StoreError(f"{self.path}: chunk images must be uint8 (n,{self.size},{self.size},3), "
                             f"got {images.dtype} {images.shape}")
        self.images[start:start + n] = images
        self.landmarks[start:start + n] = landmarks.astype(np.float32)
        rec = self.path / "failures" / f"chunk-{start:08d}.json"
        tmp = rec.with_suffix(".tmp")
        tmp.write_text(json.dumps({str(k): v for k, v in failures.items()}))
        os.replace(tmp, rec)
        st = np.full(n, OK, np.int8)
        for rid in failures:
            st[rid - start] = FAILED
        self.group["status"][start:start + n] = st

    # ---- reading -------------------------------------------------------------------------------------
    def manifest(self):
        """The frame manifest this store was aligned from (attr `manifest`), checked to match the store row for row."""
        from manifests.schema import read_manifest

        manifest = self.group.attrs.get("manifest")
        if not manifest or not Path(manifest).exists():
            raise StoreError(f"{self.path}: store attr 'manifest' ({manifest!r}) does not name a readable manifest")
        df = read_manifest(manifest)
        if len(df) != len(self):
            raise StoreError(f"{self.path}: manifest {manifest} has {len(df)} rows, the store has {len(self)}")
        return df

    def labels(self) -> np.ndarray:
        return self.group["labels"][:]

    def folds(self) -> np.ndarray:
        return self.group["fold"][:]

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images uint8 (n,S,S,3), landmarks float32 (n,68,2), labels int8 (n,12)) for the given row_ids."""
        rows = np.asarray(rows, dtype=np.int64)
        st = self.group["status"].get_orthogonal_selection((rows,))
        if (st != OK).any():
            bad = rows[st != OK][:5].tolist()
            raise StoreError(f"{self.path}: rows {bad} are not aligned (status != OK)")
        imgs = self.images.get_orthogonal_selection((rows, slice(None), slice(None), slice(None)))
        lms = self.landmarks.get_orthogonal_selection((rows, slice(None), slice(None)))
        return imgs, lms, self.labels()[rows]
