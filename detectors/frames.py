"""Frames to score: a thin view over any Zarr group (or array) holding `images (N, S, S, 3) uint8`.

Every detector reads frames through `FrameSource`. It carries the ids written to score tables (`frame_ids`),
the sequence each frame belongs to (`sequences`, e.g. "F001/T1"; OpenFace's dynamic models calibrate per
sequence), and, when the source has them, AU labels for metrics. Images are read lazily, batch by batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


class FrameError(ValueError):
    """Frames of the wrong shape or type, or ids that do not line up; the message names the source."""


def _take(images, rows: np.ndarray) -> np.ndarray:
    """images[rows] for a numpy array or a Zarr array (orthogonal selection reads only the needed chunks)."""
    if isinstance(images, np.ndarray):
        return images[rows]
    if len(rows) and np.all(np.diff(rows) == 1):  # contiguous: one slice read
        return np.asarray(images[int(rows[0]):int(rows[-1]) + 1])
    return np.asarray(images.get_orthogonal_selection((rows,) + (slice(None),) * 3))


@dataclass(frozen=True)
class FrameSource:
    images: object  # (N, S, S, 3) uint8 numpy or Zarr array (the whole store; `rows` selects from it)
    rows: np.ndarray  # (n,) int64 indices into `images`, in scoring order
    frame_ids: np.ndarray  # (n,) int64 ids reported in score tables
    sequences: np.ndarray  # (n,) str sequence key per frame ("F001/T1"); frames of a sequence in frame_id order
    labels: np.ndarray | None = None  # (n, 12) int8 AU labels in AUS order, or None when unknown
    name: str = "<memory>"  # where the frames come from, for error messages and score metadata

    def __post_init__(self):
        shape = getattr(self.images, "shape", None)
        dtype = getattr(self.images, "dtype", None)
        if shape is None or len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2] or str(dtype) != "uint8":
            raise FrameError(f"{self.name}: images must be uint8 (N, S, S, 3), got {dtype} {shape}")
        n = len(self.rows)
        for field, arr in (("frame_ids", self.frame_ids), ("sequences", self.sequences)):
            if len(arr) != n:
                raise FrameError(f"{self.name}: {field} has {len(arr)} entries for {n} frames")
        if self.labels is not None and self.labels.shape != (n, 12):
            raise FrameError(f"{self.name}: labels must be (n, 12), got {self.labels.shape}")
        if n and (self.rows.min() < 0 or self.rows.max() >= shape[0]):
            raise FrameError(f"{self.name}: rows outside 0..{shape[0] - 1}")
        if len(np.unique(self.frame_ids)) != n:
            raise FrameError(f"{self.name}: frame_ids are not unique")

    # ---- constructors -------------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, images: np.ndarray, frame_ids=None, sequences=None, labels=None) -> "FrameSource":
        """In-memory frames; ids default to 0..n-1, all frames in one sequence "all"."""
        n = len(images)
        ids = np.arange(n, dtype=np.int64) if frame_ids is None else np.asarray(frame_ids, dtype=np.int64)
        seq = np.full(n, "all", dtype=object) if sequences is None else np.asarray(sequences, dtype=object)
        lab = None if labels is None else np.asarray(labels, dtype=np.int8)
        return cls(np.asarray(images), np.arange(n, dtype=np.int64), ids, seq, lab)

    @classmethod
    def from_store(cls, path, rows=None, fold: int | None = None) -> "FrameSource":
        """Frames of an aligned store (manifests.aligned). `rows`: row_ids (default: every aligned row);
        `fold`: keep only rows of that fold. Sequences are "subject/task" from the store's manifest."""
        from manifests.aligned import AlignedStore

        store = AlignedStore.open(path)
        ok = store.ok_rows()
        rows = ok if rows is None else np.asarray(rows, dtype=np.int64)
        bad = np.setdiff1d(rows, ok)
        if len(bad):
            raise FrameError(f"{path}: rows {bad[:5].tolist()} are not aligned (status != OK)")
        if fold is not None:
            rows = rows[store.folds()[rows] == fold]
        rows = np.sort(rows)
        return cls(store.images, rows, rows.copy(), store_sequences(store)[rows], store.labels()[rows],
                   name=str(path))

    @classmethod
    def from_group(cls, path, frame_ids=None, sequences=None, labels=None, name: str | None = None) -> "FrameSource":
        """Frames of any Zarr group with an `images` array (e.g. the synthetic store); ids default to 0..N-1."""
        import zarr

        g = zarr.open_group(str(path), mode="r")
        if "images" not in g:
            raise FrameError(f"{path}: Zarr group has no 'images' array")
        n = g["images"].shape[0]
        ids = np.arange(n, dtype=np.int64) if frame_ids is None else np.asarray(frame_ids, dtype=np.int64)
        seq = np.full(n, "all", dtype=object) if sequences is None else np.asarray(sequences, dtype=object)
        lab = None if labels is None else np.asarray(labels, dtype=np.int8)
        return cls(g["images"], np.arange(n, dtype=np.int64), ids, seq, lab, name=name or str(path))

    # ---- reading ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def subset(self, index: np.ndarray) -> "FrameSource":
        """The frames at positions `index` (a bool mask or integer positions) of this source."""
        index = np.asarray(index)
        lab = None if self.labels is None else self.labels[index]
        return FrameSource(self.images, self.rows[index], self.frame_ids[index], self.sequences[index], lab,
                           self.name)

    def read(self, index: np.ndarray) -> np.ndarray:
        """uint8 (k, S, S, 3) images at positions `index` of this source."""
        return _take(self.images, self.rows[np.asarray(index)])

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(frame_ids, images uint8 (b, S, S, 3)) in source order."""
        for i in range(0, len(self), batch_size):
            pos = np.arange(i, min(i + batch_size, len(self)))
            yield self.frame_ids[pos], self.read(pos)

    def sequence_groups(self) -> dict[str, np.ndarray]:
        """sequence key -> positions of its frames, in frame_id order."""
        out: dict[str, np.ndarray] = {}
        for key in dict.fromkeys(self.sequences.tolist()):
            pos = np.flatnonzero(self.sequences == key)
            out[key] = pos[np.argsort(self.frame_ids[pos], kind="stable")]
        return out


def store_sequences(store) -> np.ndarray:
    """(N,) "subject/task" keys for every row of an aligned store, read from its manifest (attr `manifest`)."""
    df = store.manifest()
    return (df["subject"].astype(str) + "/" + df["task"].astype(str)).to_numpy(dtype=object)


@dataclass(frozen=True)
class ExtraFrames:
    """Frames a trainable detector learns from beside the store's training folds (e.g. LAC-GAN's synthetic
    frames): `train_detector(..., extra=[ExtraFrames, ...])`."""

    frames: FrameSource  # images (crop size of the store) and labels (n, 12), required
    landmarks: np.ndarray  # (n, 68, 2) float32 iBUG-68 points in the frames' pixels

    def __post_init__(self):
        if self.frames.labels is None:
            raise FrameError(f"{self.frames.name}: extra training frames need labels")
        if self.landmarks.shape != (len(self.frames), 68, 2):
            raise FrameError(f"{self.frames.name}: landmarks must be ({len(self.frames)}, 68, 2), "
                             f"got {self.landmarks.shape}")
