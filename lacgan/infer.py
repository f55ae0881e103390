"""Inference: edit faces to target AU labels with a trained LAC-GAN, without any training code.

    editor = Editor.load("runs/demo/lacgan")            # a run directory (latest checkpoint) or a checkpoint dir
    out = editor.edit(images, landmarks, target_labels)  # uint8 (n,S,S,3), float32 (n,68,2), int8 (n,12) -> uint8

Target -1 leaves that AU's region as the source; pixels outside every active region are returned bitwise
unchanged. Deterministic: eval mode, no sampling noise (z comes from the encoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lacgan.checkpoint import file_sha256, load_checkpoint, load_modules, MODELS
from lacgan.compose import Windows, compose, gather_windows, to_float, to_uint8
from lacgan.config import LacganConfig, NetConfig, config_hash
from lacgan.data import check_arrays
from lacgan.device import pick_device
from lacgan.losses import draw, effective_targets
from lacgan.networks import CARGStack, LocalDiscriminator


@torch.no_grad()
def estimate_labels(R: LocalDiscriminator, G: CARGStack, regions: torch.Tensor) -> torch.Tensor:
    """The source's AU states as the local regressor R reads them: masked regions (B, G, 3, h, w) -> (B, 12)
    int labels (1 where R > 0.5)."""
    _, pred = R(regions, torch.full((regions.shape[0], 12), -1, dtype=torch.long, device=regions.device))
    return G.grouping.ungroup((pred > 0.5).long())


@torch.no_grad()
def generate(G: CARGStack, net: NetConfig, images: np.ndarray, landmarks: np.ndarray, targets: np.ndarray, device,
             source_labels: np.ndarray | None = None, R: LocalDiscriminator | None = None, batch_size: int = 32,
             loop: bool = False) -> np.ndarray:
    """Edit faces in batches with generator stack G (eval mode is the caller's business). The `difference` output
    needs the sources' AU labels: `source_labels` (n, 12), else R's reading of them. `loop=True` runs the
    per-group reference path (same result, slower; for the benchmark)."""
    out = np.empty_like(images)
    need_source = net.output in ("difference", "warp")
    for s in range(0, len(images), batch_size):
        sl = slice(s, s + batch_size)
        src_u8 = torch.from_numpy(np.ascontiguousarray(images[sl])).to(device)
        x = to_float(src_u8)
        win = Windows.from_landmarks(landmarks[sl], net.size, G.window, net.regions, G.grouping.groups).to(device)
        t = torch.from_numpy(np.asarray(targets[sl], np.int64)).to(device)
        src = gather_windows(x, win)
        roi = win.maps[:, :, None] * src
        if source_labels is not None:
            labels = torch.from_numpy(np.asarray(source_labels[sl], np.int64)).to(device)
        elif R is not None:
            labels = estimate_labels(R, G, roi)
        else:
            labels = torch.full_like(t, -1)
        t_eff = effective_targets(t, labels)
        run = G.forward_loop if loop else G
        dec_t = run(roi, t_eff)
        dec_s = run(roi, labels) if need_source else dec_t
        fake, _ = draw(net.output, src, dec_t, dec_s, net.max_shift)
        composed, covered = compose(x, fake, win, G.grouping.active(t), net.composite, net.plateau_gain)
        out[sl] = to_uint8(composed, src_u8, covered).cpu().numpy()
    return out


@dataclass
class Editor:
    G: CARGStack
    R: LocalDiscriminator  # the local regressor: reads the sources' AUs when they are not given
    config: LacganConfig
    checkpoint_sha256: str  # sha256 of the checkpoint's models.safetensors
    path: Path
    device: torch.device

    @property
    def size(self) -> int:
        return self.config.net.size

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    @property
    def test_fold(self) -> int:
        """The fold this model never saw in training (its subjects may be edited and scored)."""
        return self.config.train.test_fold

    @classmethod
    def load(cls, path, device=None) -> "Editor":
        device = device if isinstance(device, torch.device) else pick_device(device)
        ck = load_checkpoint(path, with_optim=False)
        G = CARGStack(ck.config.net, ck.config.net.window)
        R = LocalDiscriminator(ck.config.net, ck.config.net.window)
        load_modules(ck, {"G": G, "D_local": R})
        G.to(device).eval()
        R.to(device).eval()
        return cls(G, R, ck.config, file_sha256(ck.path / MODELS), ck.path, device)

    uses_source_labels = True  # generation passes the sources' labels (the `difference` output needs them)

    def edit(self, images: np.ndarray, landmarks: np.ndarray, target_labels: np.ndarray,
             batch_size: int = 32, source_labels: np.ndarray | None = None) -> np.ndarray:
        """Edit to `target_labels` (-1: keep). `source_labels` (n, 12): the sources' known AU labels (-1 unknown);
        when not given, the model's local regressor reads them from the images."""
        images, landmarks, target_labels = np.asarray(images), np.asarray(landmarks), np.asarray(target_labels)
        check_arrays(images, landmarks, target_labels, self.size)
        if source_labels is not None:
            check_arrays(images, landmarks, np.asarray(source_labels), self.size)
        if len(images) == 0:
            return images.copy()
        return generate(self.G, self.config.net, images, landmarks.astype(np.float32), target_labels, self.device,
                        source_labels, self.R, batch_size)


def edit(checkpoint, images: np.ndarray, landmarks: np.ndarray, target_labels: np.ndarray,
         device=None, batch_size: int = 32, source_labels: np.ndarray | None = None) -> np.ndarray:
    """One-shot `Editor.load(checkpoint).edit(...)`."""
    return Editor.load(checkpoint, device).edit(images, landmarks, target_labels, batch_size, source_labels)
