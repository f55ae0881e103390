"""Inference: edit faces to target AU labels with a trained GANimation, behind LAC-GAN's Editor interface.

    editor = Editor.load("runs/x/ganimation")            # a run directory (latest checkpoint) or a checkpoint dir
    out = editor.edit(images, landmarks, target_labels)  # uint8 (n,S,S,3), float32 (n,68,2), int8 (n,12) -> uint8

GANimation edits the whole face; landmarks are checked (same contract as LAC-GAN) but not used. A target of −1
("keep the source's state") is replaced by the critic's own reading of the source (its AU regression > 0.5), so
the generator is asked to keep that AU as it sees it; even all −1 re-renders the face (GANimation has no exact
no-op). Where the attention mask is exactly 1 the source bytes are returned unchanged. Deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from lacgan.compose import to_float, to_uint8
from lacgan.ganimation.config import GanimationConfig
from lacgan.ganimation.networks import Models, attend, build_models, condition, fill_unknown
from lacgan.infer import EditorBase


def render(models: Models, x: torch.Tensor, targets: torch.Tensor):
    """x (B, 3, S, S) in [-1, 1], targets (B, 12) int {1, 0, -1} -> (edited, colour, attention), no grad needed."""
    if (targets < 0).any():
        targets = fill_unknown(targets, models.D(x)[1])
    colour, a = models.G(x, condition(targets))
    return attend(x, colour, a), colour, a


@torch.no_grad()
def generate(models: Models, images: np.ndarray, targets: np.ndarray, device, batch_size: int = 32) -> np.ndarray:
    """Edit uint8 faces in batches (eval mode is the caller's business)."""
    out = np.empty_like(images)
    for s in range(0, len(images), batch_size):
        src_u8 = torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size])).to(device)
        t = torch.from_numpy(np.asarray(targets[s:s + batch_size], np.int64)).to(device)
        edited, _, a = render(models, to_float(src_u8), t)
        out[s:s + batch_size] = to_uint8(edited, src_u8, (a < 1).expand(-1, 3, -1, -1)).cpu().numpy()
    return out


@dataclass
class Editor(EditorBase):
    MODEL: ClassVar[str] = "ganimation"

    models: Models = None  # generator and critic (the critic reads the source for −1 targets)

    @classmethod
    def _networks(cls, config: GanimationConfig):
        models = build_models(config.net)
        return {"models": models}, models.named()

    def _edit(self, images, landmarks, target_labels, batch_size) -> np.ndarray:
        return generate(self.models, images, target_labels, self.device, batch_size)
