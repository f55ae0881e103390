"""Generator windows and the composition of Eq. 2.

Windows. Every generator group (networks.region_groups: one per AU, or one per distinct region) sees a fixed-size
window (h, w) of the face centred on its region, not the whole crop: X_AUi = A_i ⊙ X_s is zero outside the region,
and the generator's output only counts where A_i > 0, so a window that holds the region carries everything. All
groups share one window size so that they run as one grouped computation. A group's map is its AUs' map (the AUs
of a group share centres), restricted to the window; for a face whose region pokes out of the window (unusual
landmarks) the region is clipped, never spilled: locality still holds exactly.

Composition. With A_i the maps of the ACTIVE groups (a group is inactive when every AU of it has target -1:
its region stays the source) and T = Σ_j A_j:

    X_t = Σ_i w_i ⊙ G_i + (1 − Σ_i w_i) ⊙ X_s     where T > 0
    X_t = X_s                                      elsewhere (bitwise: `torch.where`)

    "paper"    w_i = A_i / max(1, T)               Eq. 2 unchanged where the maps sum to ≤ 1, a convex blend of
                                                    the generators where they overlap more
    "plateau"  w_i = A_i / T · min(1, gain · T)    the same shares, but the region is taken whole except for a
                                                    feathered border (the outer 1/gain of a "wide" diamond):
                                                    on the cohort's development folds a perfect generator
                                                    composited by Eq. 2's soft weights keeps only part of each
                                                    edit (docs/lacgan.md)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lacgan.regions import DEFAULT_RULE, au_centres, map_values, region_boxes, rule

PAPER, PLATEAU = "paper", "plateau"


def _group_rows(groups) -> list[int]:
    """For each group, the row (AUS index) of its first AU: the group's centres and map."""
    from manifests.aus import AUS

    return [AUS.index(g[0]) for g in groups]


def fit_window(landmarks: np.ndarray, size: int, rule_name: str = DEFAULT_RULE, quantile: float = 0.995,
               multiple: int = 4) -> tuple[int, int]:
    """The common window (h, w) that holds the `quantile` of every AU's region box over these faces,
    rounded up to `multiple` px and capped at the crop."""
    boxes = region_boxes(np.asarray(landmarks, np.float32), size, rule_name)  # (n, 12, 4)
    hs = boxes[..., 3] - boxes[..., 1]
    ws = boxes[..., 2] - boxes[..., 0]
    h = float(np.quantile(hs, quantile, axis=0).max())
    w = float(np.quantile(ws, quantile, axis=0).max())
    up = lambda v: int(min(size, multiple * int(np.ceil(v / multiple))))  # noqa: E731
    return up(h), up(w)


@dataclass
class Windows:
    """Where each (face, group) window sits and the attention map inside it.

    offsets (B, G, 2) int64 top-left (y0, x0); maps (B, G, h, w) float32 A_i inside the window;
    index (B, G, h, w) int64 flat pixel index b·S·S + y·S + x into the batch's (B·S·S) pixels."""

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
                       rule_name: str = DEFAULT_RULE, groups=None) -> "Windows":
        """(B, 68, 2) landmarks in crop px -> windows of `window` = (h, w) centred on each group's region
        (`groups` as networks.region_groups; default one per AU)."""
        rule(rule_name)
        lm = np.asarray(landmarks, np.float32)
        if lm.ndim != 3 or lm.shape[1:] != (68, 2):
            raise ValueError(f"landmarks must be (n, 68, 2), got {lm.shape}")
        if not np.isfinite(lm).all():
            raise ValueError("landmarks contain NaN/inf (unaligned faces cannot be edited)")
        h, w = window
        c = au_centres(lm, rule_name)  # (B, 12, 2 centres, xy)
        if groups is not None:
            c = c[:, _group_rows(groups)]
        mid = c.mean(axis=-2)  # (B, G, xy)
        y0 = np.clip(np.round(mid[..., 1] - h / 2), 0, size - h).astype(np.int64)
        x0 = np.clip(np.round(mid[..., 0] - w / 2), 0, size - w).astype(np.int64)
        ys = y0[..., None] + np.arange(h)  # (B, G, h)
        xs = x0[..., None] + np.arange(w)  # (B, G, w)
        dy = ys[..., None, :].astype(np.float32) - c[..., 1][..., None]  # (B, G, 2, h)
        dx = xs[..., None, :].astype(np.float32) - c[..., 0][..., None]  # (B, G, 2, w)
        maps = np.maximum(map_values(dx[..., 0, None, :], dy[..., 0, :, None], size, rule_name),
                          map_values(dx[..., 1, None, :], dy[..., 1, :, None], size, rule_name))
        b = np.arange(len(lm))[:, None, None, None]
        index = b * size * size + ys[..., :, None] * size + xs[..., None, :]
        offsets = np.stack([y0, x0], axis=-1)
        return cls(torch.from_numpy(offsets), torch.from_numpy(maps.astype(np.float32)),
                   torch.from_numpy(index.astype(np.int64)), size)


def gather_windows(images: torch.Tensor, win: Windows) -> torch.Tensor:
    """(B, C, S, S) -> (B, G, C, h, w): each group's window of each face."""
    B, C, S, _ = images.shape
    flat = images.permute(0, 2, 3, 1).reshape(B * S * S, C)
    return flat[win.index].permute(0, 1, 4, 2, 3)


def scatter_windows(values: torch.Tensor, win: Windows, batch: int) -> torch.Tensor:
    """(B, G, C, h, w) -> (B, C, S, S): windows summed back into zero faces (differentiable)."""
    C, S = values.shape[2], win.size
    src = values.permute(0, 1, 3, 4, 2).reshape(-1, C)
    out = values.new_zeros(batch * S * S, C).index_add(0, win.index.reshape(-1), src)
    return out.view(batch, S, S, C).permute(0, 3, 1, 2)


def active_maps(win: Windows, active: torch.Tensor) -> torch.Tensor:
    """A_i inside the windows, zeroed for inactive groups (active (B, G) bool: see networks.Grouping.active)."""
    return win.maps * active.to(win.maps.dtype)[..., None, None]


def weights(a: torch.Tensor, total: torch.Tensor, mode: str = PAPER, gain: float = 3.0) -> torch.Tensor:
    """Per-window-pixel weights w_i (module doc) from the active maps a (B, G, h, w) and T gathered at the same
    pixels (B, G, h, w)."""
    if mode == PAPER:
        return a / total.clamp(min=1.0)
    if mode == PLATEAU:
        return a / total.clamp(min=1e-12) * (gain * total).clamp(max=1.0)
    raise ValueError(f"unknown composite {mode!r}; choose {PAPER!r} or {PLATEAU!r}")


def compose(source: torch.Tensor, generated: torch.Tensor, win: Windows, active: torch.Tensor,
            mode: str = PAPER, gain: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The composition of the module doc.

    source (B, 3, S, S); generated (B, G, 3, h, w) generator outputs in their windows; active (B, G) bool.
    Returns (X_t (B, 3, S, S), covered (B, 1, S, S) bool: pixels inside some active region)."""
    B = source.shape[0]
    a = active_maps(win, active).to(source.dtype)  # (B, G, h, w)
    total = scatter_windows(a[:, :, None], win, B)  # (B, 1, S, S) Σ A_j
    wts = weights(a, gather_windows(total, win)[:, :, 0], mode, gain)[:, :, None]  # (B, G, 1, h, w)
    weighted = scatter_windows(wts * generated.to(source.dtype), win, B)  # Σ w_i G_i
    wsum = scatter_windows(wts, win, B)  # Σ w_i
    covered = total > 0
    blended = weighted + (1.0 - wsum) * source
    return torch.where(covered, blended, source), covered


def compose_reference(source: torch.Tensor, generated_full: torch.Tensor, maps_full: torch.Tensor,
                      active: torch.Tensor, mode: str = PAPER, gain: float = 3.0) -> torch.Tensor:
    """The composition on whole crops, written plainly, for tests: generated_full (B, G, 3, S, S),
    maps_full (B, G, S, S), active (B, G)."""
    a = maps_full * active.to(maps_full.dtype)[..., None, None]
    total = a.sum(dim=1, keepdim=True)  # (B, 1, S, S)
    w = weights(a, total.expand_as(a), mode, gain)
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
