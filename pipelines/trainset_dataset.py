"""A PyTorch `Dataset` over an exported training set (see pipelines/trainset_export.py): images, labels, landmarks.

Standalone on purpose: it imports numpy, pandas, zarr, Pillow and torch, never this project, so the file can be
copied next to your own training code. No torchvision.

    ds = TrainsetDataset("runs/demo/trainset/export")              # real + synthetic frames
    ds = TrainsetDataset(path, kinds=("real",))                     # the real training frames only
    item = ds[0]   # {"image": uint8 (3, S, S), "labels": int64 (12,) 1/0/-1, "landmarks": float32 (68, 2),
                   #  "index": int, "kind": "real" | "synthetic"}

Images come from trainset.zarr (exact pixels) or, with `source="files"`, from the export's JPEG files. Landmarks
are iBUG-68 points in crop pixels (a synthetic frame has its source's). Labels follow the manifest's AU columns
(AU1 ... AU24, in its order); -1 means unknown, so mask it out of your loss. `transform(item) -> item` is applied
last.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import zarr
from torch.utils.data import Dataset

KINDS = ("real", "synthetic")


class TrainsetDataset(Dataset):
    def __init__(self, root, kinds: tuple[str, ...] = KINDS, source: str = "zarr", transform=None):
        self.root = Path(root)
        manifest = self.root / "manifest.parquet"
        if not manifest.exists():
            raise FileNotFoundError(f"{manifest}: no training-set manifest (is the export finished?)")
        df = pd.read_parquet(manifest)
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown or source not in ("zarr", "files"):
            raise ValueError(f"kinds must be among {KINDS} (got {unknown}), source 'zarr' or 'files' (got {source!r})")
        self.manifest = df[df["kind"].isin(kinds)].reset_index(drop=True)
        self.au_columns = [c for c in df.columns if c.startswith("AU")]
        self.labels = self.manifest[self.au_columns].to_numpy(np.int64)
        g = zarr.open_group(str(self.root / "trainset.zarr"), mode="r")
        self.images, self.landmarks = g["images"], g["landmarks"]
        if self.images.shape[0] != len(df) or self.landmarks.shape[1:] != (68, 2):
            raise ValueError(f"{self.root}: trainset.zarr holds {self.images.shape[0]} frames and landmarks "
                             f"{self.landmarks.shape}, the manifest {len(df)} frames")
        self.size = int(self.images.shape[1])
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.manifest)

    def _image(self, row) -> np.ndarray:
        if self.source == "zarr":
            return np.asarray(self.images[int(row["index"])])
        from PIL import Image

        with Image.open(self.root / row["image_path"]) as im:
            return np.asarray(im.convert("RGB"))

    def __getitem__(self, i: int) -> dict:
        row = self.manifest.iloc[i]
        image = self._image(row)
        landmarks = np.asarray(self.landmarks[int(row["index"])], dtype=np.float32)
        if image.shape != (self.size, self.size, 3) or image.dtype != np.uint8:
            raise ValueError(f"{self.root}: frame {row['index']} image is {image.dtype} {image.shape}, "
                             f"expected uint8 ({self.size}, {self.size}, 3)")
        item = {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                "labels": torch.from_numpy(self.labels[i].copy()), "landmarks": torch.from_numpy(landmarks),
                "index": int(row["index"]), "kind": str(row["kind"])}
        return self.transform(item) if self.transform is not None else item
