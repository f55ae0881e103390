"""Inference: edit faces to target AU labels with a trained LAC-GAN, without any training code.

    editor = Editor.load("runs/demo/lacgan")            # a run directory (latest checkpoint) or a checkpoint dir
    out = editor.edit(images, landmarks, target_labels)  # uint8 (n,S,S,3), float32 (n,68,2), int8 (n,12) -> uint8

Target -1 leaves that AU's region as the source; pixels outside every active region are returned bitwise
unchanged. Deterministic: eval mode, no sampling noise (z comes from the encoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from lacgan.checkpoint import load_checkpoint, load_modules
from lacgan.compose import Windows, compose, gather_windows, to_float, to_uint8
from lacgan.config import LacganConfig, config_hash
from lacgan.data import check_arrays
from lacgan.device import pick_device
from lacgan.networks import CARGStack


@torch.no_grad()
def generate(G: CARGStack, images: np.ndarray, landmarks: np.ndarray, targets: np.ndarray, size: int,
             device, batch_size: int = 32, loop: bool = False) -> np.ndarray:
    """Edit faces in batches with generator stack G (eval mode is the caller's business). `loop=True` runs the
    per-AU reference path (same result, slower; for the benchmark)."""
    out = np.empty_like(images)
    for s in range(0, len(images), batch_size):
        sl = slice(s, s + batch_size)
        src_u8 = torch.from_numpy(np.ascontiguousarray(images[sl])).to(device)
        x = to_float(src_u8)
        win = Windows.from_landmarks(landmarks[sl], size, G.window).to(device)
        t = torch.from_numpy(np.asarray(targets[sl], np.int64)).to(device)
        roi = win.maps[:, :, None] * gather_windows(x, win)
        fake = G.forward_loop(roi, t) if loop else G(roi, t)
        composed, covered = compose(x, fake, win, t)
        out[sl] = to_uint8(composed, src_u8, covered).cpu().numpy()
    return out


@dataclass
class EditorBase:
    """What every editor (lacgan.editors.GENERATORS) shares: loading a checkpoint of the subclass's model kind,
    the config's size and hash, and the checked `edit`. A subclass is a dataclass adding its networks (one
    field, named by `NETWORKS`), with `MODEL`, `_networks(config)` and `_edit(...)`."""

    MODEL: ClassVar[str]  # model kind, a key of lacgan.checkpoint.CONFIGS
    NETWORKS: ClassVar[str]  # name of the subclass's field holding its networks

    config: object  # the model's config (LacganConfig, GanimationConfig)
    checkpoint_sha256: str  # sha256 of the checkpoint's models.safetensors
    path: Path  # the checkpoint directory
    device: torch.device

    @property
    def size(self) -> int:
        return self.config.net.size

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    @classmethod
    def _networks(cls, config) -> tuple[object, dict[str, torch.nn.Module]]:
        """(the networks as the editor holds them, {checkpoint name: module} to load)."""
        raise NotImplementedError

    @classmethod
    def load(cls, path, device=None):
        device = device if isinstance(device, torch.device) else pick_device(device)
        ck = load_checkpoint(path, with_optim=False, model=cls.MODEL)
        nets, named = cls._networks(ck.config)
        load_modules(ck, named)
        for m in named.values():
            m.to(device).eval()
        return cls(config=ck.config, checkpoint_sha256=ck.sha256, path=ck.path, device=device, **{cls.NETWORKS: nets})

    def edit(self, images: np.ndarray, landmarks: np.ndarray, target_labels: np.ndarray,
             batch_size: int = 32) -> np.ndarray:
        images, landmarks, target_labels = np.asarray(images), np.asarray(landmarks), np.asarray(target_labels)
        check_arrays(images, landmarks, target_labels, self.size)
        if len(images) == 0:
            return images.copy()
        return self._edit(images, landmarks.astype(np.float32), target_labels, batch_size)

    def _edit(self, images, landmarks, target_labels, batch_size) -> np.ndarray:
        raise NotImplementedError


@dataclass
class Editor(EditorBase):
    MODEL: ClassVar[str] = "lacgan"
    NETWORKS: ClassVar[str] = "G"

    G: CARGStack

    @classmethod
    def _networks(cls, config: LacganConfig):
        G = CARGStack(config.net, config.net.window)
        return G, {"G": G}

    def _edit(self, images, landmarks, target_labels, batch_size) -> np.ndarray:
        return generate(self.G, images, landmarks, target_labels, self.size, self.device, batch_size)


def edit(checkpoint, images: np.ndarray, landmarks: np.ndarray, target_labels: np.ndarray,
         device=None, batch_size: int = 32) -> np.ndarray:
    """One-shot `Editor.load(checkpoint).edit(...)`."""
    return Editor.load(checkpoint, device).edit(images, landmarks, target_labels, batch_size)
