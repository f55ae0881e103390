"""AU region windows and the composition of Eq. 2.

Windows. Every CARG sees a fixed-size window (h, w) of the face centred on its AU's region, not the whole crop:
X_AUi = A_i ⊙ X_s is zero outside the region, and the CARG's output only counts where A_i > 0, so a window that
holds the region carries everything. All 12 AUs share one window size so that the 12 CARGs run as one grouped
computation. The attention map used everywhere is A_i restricted to its window; for a face whose region pokes
out of the window (unusual landmarks) the region is clipped, never spilled: locality still holds exactly.

Composition (Eq. 2), with overlap normalisation. Maps overlap (AU12/14/15 share one map, AU23/24 share one, and
neighbours touch), so Σ A_i can exceed 1. We use

    w_i = A_i / max(1, Σ_j A_j)                         (weights in [0, 1], Σ w_i ≤ 1)
    X_t = Σ_i w_i ⊙ G_i + (1 − Σ_i w_i) ⊙ X_s           where Σ_j A_j > 0
    X_t = X_s                                            elsewhere (bitwise: `torch.where`)

which is Eq. 2 unchanged wherever the maps sum to ≤ 1, and a convex blend of the generators (their average
where maps are equal) where they overlap more. An AU whose target label is -1 (unknown) is inactive: its A_i is
taken as 0, so its region stays the source unless another active AU covers it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lacgan.regions import RADIUS_FRAC, au_centres, region_boxes


def fit_window(landmarks: np.ndarray, size: int, quantile: float = 0.995, multiple: int = 4) -> tuple[int, int]:
    """The common window (h, w) that holds the `quantile` of every AU's region box over these faces,
    rounded up to `multiple` px and capped at the crop."""
    boxes = region_boxes(np.asarray(landmarks, np.float32), size)  # (n, 12, 4)
    hs = boxes[..., 3] - boxes[..., 1]
    ws = boxes[..., 2] - boxes[..., 0]
    h = float(np.quantile(hs, quantile, axis=0).max())
    w = float(np.quantile(ws, quantile, axis=0).max())
    up = lambda v: int(min(size, multiple * int(np.ceil(v / multiple))))  # noqa: E731
    return up(h), up(w)


@dataclass
class Windows:
    """Where each (face, AU) window sits and the attention map inside it.

    offsets (B, 12, 2) int64 top-left (y0, x0); maps (B, 12, h, w) float32 A_i inside the window;
    index (B, 12, h, w) int64 flat pixel index b·S·S + y·S + x into the batch's (B·S·S) pixels."""

    offsets: torch.Tensor
    maps: torch.Tensor
    index: torch.Tensor
    size: int

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.maps.shape[-2]), int(self.maps.shape[-1])

    def to(self, device) -> "Windows":
        return Windows(self.offsets.to(device), self.maps.to(device), self.index.to(device), self.size)

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray, size: int, window: tuple[int, int],
                       radius: float | None = None) -> "Windows":
        """(B, 68, 2) landmarks in crop px -> windows of `window` = (h, w) centred on each AU's region."""
        radius = RADIUS_FRAC * size if radius is None else float(radius)
        lm = np.asarray(landmarks, np.float32)
        if lm.ndim != 3 or lm.shape[1:] != (68, 2):
            raise ValueError(f"landmarks must be (n, 68, 2), got {lm.shape}")
        if not np.isfinite(lm).all():
            raise ValueError("landmarks contain NaN/inf (unaligned faces cannot be edited)")
        h, w = window
        c = au_centres(lm)  # (B, 12, 2 centres, xy)
        mid = c.mean(axis=-2)  # (B, 12, xy)
        y0 = np.clip(np.round(mid[..., 1] - h / 2), 0, size - h).astype(np.int64)
        x0 = np.clip(np.round(mid[..., 0] - w / 2), 0, size - w).astype(np.int64)
        ys = y0[..., None] + np.arange(h)  # (B, 12, h)
        xs = x0[..., None] + np.arange(w)  # (B, 12, w)
        # A_i inside the window: 1 at a centre, linear in Manhattan distance to 0 at `radius` (regions.py's rule).
        dy = np.abs(ys[..., None, :].astype(np.float32) - c[..., 1][..., None])  # (B, 12, 2, h)
        dx = np.abs(xs[..., None, :].astype(np.float32) - c[..., 0][..., None])  # (B, 12, 2, w)
        r = np.float32(radius)
        d = np.minimum(dy[..., 0, :, None] + dx[..., 0, None, :], dy[..., 1, :, None] + dx[..., 1, None, :])
        maps = np.clip(1.0 - d / r, 0.0, 1.0).astype(np.float32)  # max over the two centres = min distance
        b = np.arange(len(lm))[:, None, None, None]
        index = b * size * size + ys[..., :, None] * size + xs[..., None, :]
        offsets = np.stack([y0, x0], axis=-1)
        return cls(torch.from_numpy(offsets), torch.from_numpy(maps), torch.from_numpy(index.astype(np.int64)),
                   size)


def gather_windows(images: torch.Tensor, win: Windows) -> torch.Tensor:
    """(B, C, S, S) -> (B, 12, C, h, w): each AU's window of each face."""
    B, C, S, _ = images.shape
    flat = images.permute(0, 2, 3, 1).reshape(B * S * S, C)
    return flat[win.index].permute(0, 1, 4, 2, 3)


def scatter_windows(values: torch.Tensor, win: Windows, batch: int) -> torch.Tensor:
    """(B, 12, C, h, w) -> (B, C, S, S): windows summed back into zero faces (differentiable)."""
    C, S = values.shape[2], win.size
    src = values.permute(0, 1, 3, 4, 2).reshape(-1, C)
    out = values.new_zeros(batch * S * S, C).index_add(0, win.index.reshape(-1), src)
    return out.view(batch, S, S, C).permute(0, 3, 1, 2)


def active_maps(win: Windows, target_labels: torch.Tensor) -> torch.Tensor:
    """A_i inside the windows, zeroed for AUs whose target is -1 (unknown: leave the region as the source)."""
    active = (target_labels >= 0).to(win.maps.dtype)  # (B, 12)
    return win.maps * active[..., None, None]


def compose(source: torch.Tensor, generated: torch.Tensor, win: Windows,
            target_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2 with the normalisation above.

    source (B, 3, S, S); generated (B, 12, 3, h, w) CARG outputs in their windows; target_labels (B, 12) int.
    Returns (X_t (B, 3, S, S), covered (B, 1, S, S) bool: pixels inside some active region)."""
    B = source.shape[0]
    a = active_maps(win, target_labels).to(source.dtype)  # (B, 12, h, w)
    total = scatter_windows(a[:, :, None], win, B)  # (B, 1, S, S) Σ A_j
    denom = gather_windows(total.clamp(min=1.0), win)[:, :, 0]  # (B, 12, h, w) max(1, Σ A_j) at each window px
    wts = (a / denom)[:, :, None]  # (B, 12, 1, h, w)
    weighted = scatter_windows(wts * generated.to(source.dtype), win, B)  # Σ w_i G_i
    wsum = scatter_windows(wts, win, B)  # Σ w_i
    covered = total > 0
    blended = weighted + (1.0 - wsum) * source
    return torch.where(covered, blended, source), covered


def compose_reference(source: torch.Tensor, generated_full: torch.Tensor, maps_full: torch.Tensor,
                      target_labels: torch.Tensor) -> torch.Tensor:
    """Eq. 2 on whole crops, written plainly, for tests: generated_full (B, 12, 3, S, S), maps_full (B, 12, S, S)."""
    a = maps_full * (target_labels >= 0).to(maps_full.dtype)[..., None, None]
    total = a.sum(dim=1, keepdim=True)  # (B, 1, S, S)
    w = a / total.clamp(min=1.0)
    blended = (w[:, :, None] * generated_full).sum(1) + (1 - w.sum(1, keepdim=True)) * source
    return torch.where(total > 0, blended, source)


def to_float(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, S, S, 3) -> float32 (B, 3, S, S) in [-1, 1]."""
    return images_u8.permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0


def to_uint8(images: torch.Tensor, source_u8: torch.Tensor, covered: torch.Tensor) -> torch.Tensor:
    """float (B, 3, S, S) in [-1, 1] -> uint8 (B, S, S, 3); pixels outside every active region are copied from
    `source_u8` itself, so they are bitwise the input whatever the float round trip does."""
    out = ((images.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    return torch.where(covered.permute(0, 2, 3, 1), out, source_u8)
