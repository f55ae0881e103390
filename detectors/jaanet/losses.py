"""JAA-Net's loss terms as pure functions (Shao et al., ECCV 2018, Eqs. 2-6).

Labels are (B, A) with 1 present, 0 absent, -1 unknown; unknown entries are masked out of the AU terms.

Every reduction over the batch is global (lacgan.distributed): under torchrun each rank holds a share of the step's
batch, and the sums and counts below are taken over the whole batch before any division, so every rank computes
the loss one process computes on the whole batch (a Dice ratio or a masked mean of per-rank means would not be).
Additive sums use `batch_sum` (no collective in the backward pass); the Dice ratio's sums use `global_sum`, the
module's choice for statistics (here both give the same gradient: every rank's loss is the same function of the
global sums). In one process the helpers are the plain local operations and the values are bitwise what they
always were.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lacgan.distributed import batch_mean, batch_sum, global_count, global_sum


def au_weights(labels: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """Per-AU weight ∝ 1 / occurrence rate among known labels, normalised to sum to the number of AUs."""
    labels = np.asarray(labels)
    known = (labels != -1).sum(0)
    rate = np.maximum((labels == 1).sum(0) / np.maximum(known, 1), floor)
    w = 1.0 / rate
    return (w / w.sum() * len(w)).astype(np.float32)


def au_softmax_loss(logp: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted two-way softmax loss. logp (B, 2, A) log-probabilities; mean over known frames per AU,
    times the AU's weight, mean over AUs."""
    known = labels != -1
    target = labels.clamp(min=0).long()
    nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)  # (B, A)
    per_au = batch_sum((nll * known).sum(0)) / global_count(known.sum(0), nll).clamp(min=1)
    return (per_au * weight).mean()


def au_dice_loss(logp: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Weighted Dice loss on the present-probability: per AU 1 - (2Σpy + ε) / (Σp² + Σy² + ε) over known
    frames, times the AU's weight, mean over AUs (the paper's Eq. 3 with ε = 1)."""
    known = (labels != -1).float()
    p = logp[:, 1].exp() * known
    y = labels.clamp(min=0).float() * known
    py, pp, yy = (global_sum(v.sum(0)) for v in (p * y, p * p, y * y))  # a ratio: sums global before dividing
    dice = 1 - (2 * py + eps) / (pp + yy + eps)
    return (dice * weight).mean()


def landmark_loss(pred: torch.Tensor, target: torch.Tensor, interocular: torch.Tensor) -> torch.Tensor:
    """½ Σ_j ‖pred_j − target_j‖² / d_o², mean over the batch. pred/target (B, 49, 2), interocular (B,)."""
    sq = ((pred - target) ** 2).sum((1, 2))
    return batch_mean(sq / (2 * interocular.clamp(min=1e-3) ** 2))


def attention_refine_loss(refined: torch.Tensor, predefined: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of refined maps against the predefined ones, mean over pixels and batch, summed over
    AUs. Both (B, A, m, m) in [0, 1]."""
    bce = F.binary_cross_entropy(refined.clamp(1e-6, 1 - 1e-6), predefined, reduction="none")
    return batch_mean(bce, (0, 2, 3)).sum()

