"""TEST STAND-IN for `lacgan.infer.Editor` — used only by the generation tests, never by the package.

It has the Editor's interface (`load(path, device)`, `size`, `checkpoint_sha256`, `config_hash`,
`edit(images, landmarks, target_labels, batch_size)`) and a tiny real `torch.nn` module, so the tests can
exercise sharding, resumption and faults without training LAC-GAN. Like LAC-GAN, it rewrites only the
targeted AU regions and composites them back, so pixels outside every region stay the source's.

The checkpoint is a folder with `standin.json`: {"size": S, "seed": k, "sleep": seconds per batch, "copy": bool};
with "copy" the editor returns its inputs unchanged (a generator that changes nothing: the unedited baseline); with
"boxes" [[y0, y1, x0, x1, delta], ...] it then moves every pixel of those boxes by exactly `delta` grey levels
(down where up would pass 255): a stand-in for a whole-face generator that changes known pixels outside the AU
regions (`write_checkpoint(..., boxes=...)`). Fault
hooks for tests: a file `die-once` in that folder makes the process that sees it delete it and exit
abruptly (a worker dying mid-shard).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from lacgan.regions import attention_maps


def write_checkpoint(path, size: int, seed: int = 0, sleep: float = 0.0, copy: bool = False, boxes=()) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = {"size": size, "seed": seed, "sleep": sleep, "copy": copy}
    if boxes:
        cfg["boxes"] = [list(map(int, b)) for b in boxes]
    (path / "standin.json").write_text(json.dumps(cfg))
    return path


def move_boxes(images: np.ndarray, boxes) -> np.ndarray:
    """Every pixel of each box [y0, y1, x0, x1, delta] moved by exactly `delta` (down where up would pass 255)."""
    out = images.astype(np.int16)
    for y0, y1, x0, x1, delta in boxes:
        part = out[:, y0:y1, x0:x1]
        out[:, y0:y1, x0:x1] = np.where(part + delta <= 255, part + delta, part - delta)
    return out.astype(np.uint8)


class StandInEditor:
    def __init__(self, path: Path, cfg: dict, device):
        self.path, self.config, self.size = path, cfg, int(cfg["size"])
        torch.manual_seed(cfg["seed"])
        self.net = torch.nn.Conv2d(3 + 12, 3, 3, padding=1).to(device).eval()
        raw = (path / "standin.json").read_bytes()
        self.checkpoint_sha256 = hashlib.sha256(raw).hexdigest()
        self.config_hash = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
        self.device = device
        self.test_fold = cfg.get("test_fold")  # the fold a real model held out; None: not checked

    @classmethod
    def load(cls, path, device=None):
        path = Path(path)
        if not (path / "standin.json").exists():
            raise FileNotFoundError(f"{path}: no standin.json")
        return cls(path, json.loads((path / "standin.json").read_text()), torch.device(device or "cpu"))

    @torch.no_grad()
    def edit(self, images, landmarks, target_labels, batch_size=32):
        die = self.path / "die-once"
        if die.exists():
            die.unlink()
            os._exit(1)
        if self.config.get("copy"):
            return move_boxes(np.array(images, copy=True), self.config.get("boxes", ()))
        out = np.empty_like(images)
        for i in range(0, len(images), batch_size):
            time.sleep(self.config.get("sleep", 0.0))
            x = torch.from_numpy(images[i:i + batch_size]).permute(0, 3, 1, 2).float() / 255
            t = torch.from_numpy(target_labels[i:i + batch_size].astype(np.float32))
            n, s = x.shape[0], self.size
            y = torch.sigmoid(self.net(torch.cat([x, t[:, :, None, None].expand(n, 12, s, s)], 1)))
            maps = torch.from_numpy(attention_maps(landmarks[i:i + batch_size], s))  # (n,12,S,S)
            maps = maps * (t != -1).float()[:, :, None, None]  # -1: that AU's region stays the source
            a = maps.max(dim=1, keepdim=True).values
            mixed = (a * y + (1 - a) * x) * 255
            res = torch.where(a > 0, mixed.round(), x * 255)  # outside every region: the source, exactly
            out[i:i + batch_size] = res.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return move_boxes(out, self.config.get("boxes", ()))
