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
from typing import ClassVar

import numpy as np
import torch

from lacgan.checkpoint import load_checkpoint, load_modules
from lacgan.compose import Windows, compose, gather_windows, to_float, to_uint8
from lacgan.config import DIFFERENCE_OUTPUTS, LacganConfig, NetConfig, check_strength, config_hash
from lacgan.data import check_arrays
from lacgan.device import pick_device
from lacgan.losses import draw, effective_targets
from lacgan.networks import CARGStack, LocalDiscriminator


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
def estimate_labels(R: LocalDiscriminator, G: CARGStack, regions: torch.Tensor) -> torch.Tensor:
    """The source's AU states as the local regressor R reads them: masked regions (B, G, 3, h, w) -> (B, 12)
    int labels (1 where R > 0.5)."""
    _, pred = R(regions, torch.full((regions.shape[0], 12), -1, dtype=torch.long, device=regions.device))
    return G.grouping.ungroup((pred > 0.5).long())


@torch.no_grad()
def generate(G: CARGStack, net: NetConfig, images: np.ndarray, landmarks: np.ndarray, targets: np.ndarray, device,
             source_labels: np.ndarray | None = None, R: LocalDiscriminator | None = None, batch_size: int = 32,
             loop: bool = False, precision: str = "float32", strength: float | None = None) -> np.ndarray:
    """Edit faces in batches with generator stack G (eval mode is the caller's business). The `difference` output
    needs the sources' AU labels: `source_labels` (n, 12), else R's reading of them. `loop=True` runs the
    per-group path (same result to float tolerance); `precision="bf16"` runs G under bfloat16 autocast;
    `strength` scales the edit of the difference outputs (None: `net.edit_strength`; losses.draw)."""
    strength = net.edit_strength if strength is None else strength
    check_strength(strength, net.output)
    device = torch.device(device)
    dtype = PRECISIONS[precision]
    need_source = net.output in DIFFERENCE_OUTPUTS
    out = np.empty_like(images)
    pending = None  # (slice, host tensor, CUDA event) of the batch whose result is still being copied back
    for s in range(0, len(images), batch_size):
        sl = slice(s, s + batch_size)
        src_u8 = _to_device(torch.from_numpy(np.ascontiguousarray(images[sl])), device)
        win = _to_device(Windows.from_landmarks(landmarks[sl], net.size, G.window, net.regions, G.grouping.groups),
                         device)
        t = _to_device(torch.from_numpy(np.asarray(targets[sl], np.int64)), device)
        x = to_float(src_u8)
        src = gather_windows(x, win)
        roi = win.maps[:, :, None] * src
        if source_labels is not None:
            labels = _to_device(torch.from_numpy(np.asarray(source_labels[sl], np.int64)), device)
        elif R is not None:
            labels = estimate_labels(R, G, roi)
        else:
            labels = torch.full_like(t, -1)
        t_eff = effective_targets(t, labels)
        run = G.forward_loop if loop else G
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            dec_t = run(roi, t_eff)
            dec_s = run(roi, labels) if need_source else dec_t
        fake, _ = draw(net.output, src, dec_t.float(), dec_s.float(), net.max_shift, strength, G.colour)
        composed, covered = compose(x, fake, win, G.grouping.active(t), net.composite, net.plateau_gain)
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
class EditorBase:
    """What every editor (lacgan.editors.GENERATORS) shares: loading a checkpoint of the subclass's model kind,
    the config's size and hash, and the checked `edit`. A subclass is a dataclass adding its networks as fields,
    with `MODEL`, `_networks(config)` and `_edit(...)`."""

    MODEL: ClassVar[str]  # model kind, a key of lacgan.checkpoint.CONFIGS
    uses_source_labels: ClassVar[bool] = False  # generation passes the sources' labels to `edit` when True

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

    @property
    def test_fold(self) -> int | None:
        """The fold this model never saw in training (its subjects may be edited and scored)."""
        return getattr(getattr(self.config, "train", None), "test_fold", None)

    @classmethod
    def _networks(cls, config) -> tuple[dict[str, object], dict[str, torch.nn.Module]]:
        """({editor field: networks as the editor holds them}, {checkpoint name: module} to load)."""
        raise NotImplementedError

    @classmethod
    def load(cls, path, device=None):
        device = device if isinstance(device, torch.device) else pick_device(device)
        ck = load_checkpoint(path, with_optim=False, model=cls.MODEL)
        fields, named = cls._networks(ck.config)
        load_modules(ck, named)
        for m in named.values():
            m.to(device).eval()
        return cls(config=ck.config, checkpoint_sha256=ck.sha256, path=ck.path, device=device, **fields)

    def edit(self, images: np.ndarray, landmarks: np.ndarray, target_labels: np.ndarray,
             batch_size: int = 32, source_labels: np.ndarray | None = None) -> np.ndarray:
        """Edit to `target_labels` (-1: keep). `source_labels` (n, 12): the sources' known AU labels (-1 unknown),
        for editors that use them (`uses_source_labels`; LAC-GAN reads them with its regressor otherwise)."""
        images, landmarks, target_labels = np.asarray(images), np.asarray(landmarks), np.asarray(target_labels)
        check_arrays(images, landmarks, target_labels, self.size)
        if source_labels is not None:
            check_arrays(images, landmarks, np.asarray(source_labels), self.size)
        if len(images) == 0:
            return images.copy()
        extra = {"source_labels": source_labels} if self.uses_source_labels else {}
        return self._edit(images, landmarks.astype(np.float32), target_labels, batch_size, **extra)

    def _edit(self, images, landmarks, target_labels, batch_size) -> np.ndarray:
        raise NotImplementedError


@dataclass
class Editor(EditorBase):
    MODEL: ClassVar[str] = "lacgan"
    uses_source_labels: ClassVar[bool] = True  # the `difference` output needs them

    G: CARGStack = None
    R: LocalDiscriminator = None  # the local regressor: reads the sources' AUs when they are not given
    loop: bool = False  # run the generator groups one at a time (G.forward_loop) instead of grouped
    precision: str = "float32"  # "float32" or "bf16" (generator under bfloat16 autocast)
    strength: float | None = None  # edit strength (lacgan.losses.draw); None = the model's net.edit_strength

    @classmethod
    def _networks(cls, config: LacganConfig):
        G = CARGStack(config.net, config.net.window)
        R = LocalDiscriminator(config.net, config.net.window)
        return {"G": G, "R": R}, {config.train.generator_weights: G, "D_local": R}

    def configure(self, loop: bool | None = None, precision: str | None = None,
                  strength: float | None = None) -> "Editor":
        """Change the generator path, precision and/or edit strength (None keeps a setting); returns self."""
        if strength is not None:
            check_strength(strength, self.config.net.output)
            self.strength = float(strength)
        if precision is not None:
            if precision not in PRECISIONS:
                raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
            if precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
                raise ValueError(f"precision bf16: device {self.device} does not support bfloat16")
            self.precision = precision
        if loop is not None:
            self.loop = bool(loop)
        return self

    def _edit(self, images, landmarks, target_labels, batch_size, source_labels=None) -> np.ndarray:
        return generate(self.G, self.config.net, images, landmarks, target_labels, self.device, source_labels,
                        self.R, batch_size, self.loop, self.precision, self.strength)


def edit(checkpoint, images: np.ndarray, landmarks: np.ndarray, target_labels: np.ndarray,
         device=None, batch_size: int = 32, source_labels: np.ndarray | None = None) -> np.ndarray:
    """One-shot `Editor.load(checkpoint).edit(...)`."""
    return Editor.load(checkpoint, device).edit(images, landmarks, target_labels, batch_size, source_labels)
