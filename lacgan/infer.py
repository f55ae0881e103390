"""Inference: edit faces to target AU labels with a trained LAC-GAN, without any training code.

    editor = Editor.load("runs/demo/lacgan")            # a run directory (latest checkpoint) or a checkpoint dir
    out = editor.edit(images, landmarks, target_labels)  # uint8 (n,S,S,3), float32 (n,68,2), int8 (n,12) -> uint8

Target -1 leaves that AU's region as the source; pixels outside every active region are returned bitwise
unchanged. Deterministic: eval mode, no sampling noise (z comes from the encoder).

Settings (`Editor.configure`, recorded by the generation pipeline): `loop` runs the generator one AU at a time
(`G.forward_loop`) instead of as one grouped computation (same result to float tolerance; faster on the CPU at
64 and 200 px, see docs/pipeline.md); `precision="bf16"` runs the generator under bfloat16 autocast (composition
stays float32, so pixels outside every region stay bitwise the source). On CUDA, inputs go through pinned memory
with non-blocking copies, and the next batch is prepared on the CPU while the GPU works on the previous one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lacgan.checkpoint import file_sha256, load_checkpoint, load_modules, MODELS
from lacgan.compose import Windows, compose, gather_windows, to_float, to_uint8
from lacgan.config import LacganConfig, config_hash
from lacgan.data import check_arrays
from lacgan.device import pick_device
from lacgan.networks import CARGStack


PRECISIONS = {"float32": None, "bf16": torch.bfloat16}  # generator autocast dtype per precision setting


def _to_device(obj, device: torch.device):
    """A tensor (or a dataclass of tensors, e.g. Windows) on `device`: through pinned memory with a non-blocking
    copy on CUDA, unchanged on the CPU."""
    if device.type != "cuda":
        return obj.to(device)
    if isinstance(obj, torch.Tensor):
        return obj.pin_memory().to(device, non_blocking=True)
    fields = {f.name: _to_device(getattr(obj, f.name), device) for f in dataclasses.fields(obj)
              if isinstance(getattr(obj, f.name), torch.Tensor)}
    return dataclasses.replace(obj, **fields)


@torch.no_grad()
def generate(G: CARGStack, images: np.ndarray, landmarks: np.ndarray, targets: np.ndarray, size: int,
             device, batch_size: int = 32, loop: bool = False, precision: str = "float32") -> np.ndarray:
    """Edit faces in batches with generator stack G (eval mode is the caller's business). `loop=True` runs the
    per-AU path (same result to float tolerance); `precision="bf16"` runs G under bfloat16 autocast."""
    device = torch.device(device)
    dtype = PRECISIONS[precision]
    out = np.empty_like(images)
    pending = None  # (slice, host tensor, CUDA event) of the batch whose result is still being copied back
    for s in range(0, len(images), batch_size):
        sl = slice(s, s + batch_size)
        src_u8 = _to_device(torch.from_numpy(np.ascontiguousarray(images[sl])), device)
        win = _to_device(Windows.from_landmarks(landmarks[sl], size, G.window), device)
        t = _to_device(torch.from_numpy(np.asarray(targets[sl], np.int64)), device)
        x = to_float(src_u8)
        roi = win.maps[:, :, None] * gather_windows(x, win)
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            fake = G.forward_loop(roi, t) if loop else G(roi, t)
        composed, covered = compose(x, fake.float(), win, t)
        result = to_uint8(composed, src_u8, covered)
        if device.type == "cuda":  # copy back without waiting; finish the previous batch meanwhile
            host = torch.empty(result.shape, dtype=result.dtype, pin_memory=True)
            host.copy_(result, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            if pending is not None:
                _finish(out, *pending)
            pending = (sl, host, event)
        else:
            out[sl] = result.numpy()
    if pending is not None:
        _finish(out, *pending)
    return out


def _finish(out: np.ndarray, sl: slice, host: torch.Tensor, event) -> None:
    event.synchronize()
    out[sl] = host.numpy()


@dataclass
class Editor:
    G: CARGStack
    config: LacganConfig
    checkpoint_sha256: str  # sha256 of the checkpoint's models.safetensors
    path: Path
    device: torch.device
    loop: bool = False  # run the 12 CARGs one AU at a time (G.forward_loop) instead of grouped
    precision: str = "float32"  # "float32" or "bf16" (generator under bfloat16 autocast)

    @property
    def size(self) -> int:
        return self.config.net.size

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    @classmethod
    def load(cls, path, device=None) -> "Editor":
        device = device if isinstance(device, torch.device) else pick_device(device)
        ck = load_checkpoint(path, with_optim=False)
        G = CARGStack(ck.config.net, ck.config.net.window)
        load_modules(ck, {"G": G})
        G.to(device).eval()
        return cls(G, ck.config, file_sha256(ck.path / MODELS), ck.path, device)

    def configure(self, loop: bool | None = None, precision: str | None = None) -> "Editor":
        """Change the generator path and/or precision (None keeps a setting); returns self."""
        if precision is not None:
            if precision not in PRECISIONS:
                raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
            if precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
                raise ValueError(f"precision bf16: device {self.device} does not support bfloat16")
            self.precision = precision
        if loop is not None:
            self.loop = bool(loop)
        return self

    def edit(self, images: np.ndarray, landmarks: np.ndarray, target_labels: np.ndarray,
             batch_size: int = 32) -> np.ndarray:
        images, landmarks, target_labels = np.asarray(images), np.asarray(landmarks), np.asarray(target_labels)
        check_arrays(images, landmarks, target_labels, self.size)
        if len(images) == 0:
            return images.copy()
        return generate(self.G, images, landmarks.astype(np.float32), target_labels, self.size, self.device,
                        batch_size, self.loop, self.precision)


def edit(checkpoint, images: np.ndarray, landmarks: np.ndarray, target_labels: np.ndarray,
         device=None, batch_size: int = 32) -> np.ndarray:
    """One-shot `Editor.load(checkpoint).edit(...)`."""
    return Editor.load(checkpoint, device).edit(images, landmarks, target_labels, batch_size)
