"""The face editors behind one interface, chosen by the model kind a checkpoint records.

    editor = load_editor("runs/x/lacgan")      # or a GANimation run: the checkpoint's state.json says which
    out = editor.edit(images, landmarks, target_labels, batch_size=32)

Every editor has `load(path, device=None)`, `edit(images uint8 (n,S,S,3), landmarks float32 (n,68,2),
target_labels int8 (n,12), batch_size) -> uint8 (n,S,S,3)` and the properties `size`, `config_hash`,
`checkpoint_sha256`, `path` (the `Editor` protocol below). Target −1 means "keep the source's state": LAC-GAN
leaves that AU's region as the source; GANimation asks for the state its critic reads in the source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from lacgan import infer as lacgan_infer
from lacgan.checkpoint import model_kind
from lacgan.ganimation import infer as ganimation_infer


class Editor(Protocol):
    size: int
    config_hash: str
    checkpoint_sha256: str
    path: Path

    @classmethod
    def load(cls, path, device=None) -> "Editor": ...

    def edit(self, images: np.ndarray, landmarks: np.ndarray, target_labels: np.ndarray,
             batch_size: int = 32) -> np.ndarray: ...


GENERATORS: dict[str, type] = {
    "lacgan": lacgan_infer.Editor,  # region generators composited into the source (arXiv 1910.10323)
    "ganimation": ganimation_infer.Editor,  # whole-face generator with an attention mask (Pumarola et al. 2018)
}


def load_editor(path, device=None) -> Editor:
    """The editor of the model kind recorded in the checkpoint at `path` (run or checkpoint directory)."""
    return GENERATORS[model_kind(path)].load(path, device=device)
