"""LAC-GAN losses (Eq. 3-10): small pure functions, and `LacganLoss`, which composes them per training phase.

Conventions. Logits are raw; adversarial terms are the log-loss of the paper written with softplus
(D: softplus(-real) + softplus(fake); G: the non-saturating softplus(-fake)). Per-AU terms are reduced over the
batch with a mask (an AU whose label is -1 has no real/fake target) and then weighted by β_i (Eq. 10).
The generated ROI is X̂_i = A_i ⊙ G_i, the real ROI X_AUi = A_i ⊙ X_s (Eq. 1), both inside the AU's window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lacgan.compose import Windows, compose, gather_windows
from lacgan.config import LossConfig
from lacgan.identity import crop_to_chip, identity_loss  # Eq. 4, pure (lacgan/identity.py)
from lacgan.networks import Models

FeatureFn = Callable[[torch.Tensor], Sequence[torch.Tensor]]  # face (B, 3, S, S) in [-1, 1] -> 5 feature maps
PHASES = ("D_z", "D_local", "D_global", "G")


# ---- pure loss terms ------------------------------------------------------------------------------------
def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over dim 0 (the batch) of the entries where mask is true; 0 where the mask is empty."""
    if mask is None:
        return x.mean(0)
    m = mask.to(x.dtype)
    return (x * m).sum(0) / m.sum(0).clamp(min=1.0)


def d_adv_loss(real: torch.Tensor, fake: torch.Tensor, real_mask=None, fake_mask=None) -> torch.Tensor:
    """Discriminator side of Eq. 3 / 6 / 7: −log D(real) − log(1 − D(fake)), per column."""
    return masked_mean(F.softplus(-real), real_mask) + masked_mean(F.softplus(fake), fake_mask)


def g_adv_loss(fake: torch.Tensor, mask=None) -> torch.Tensor:
    """Generator side (non-saturating): −log D(fake), per column."""
    return masked_mean(F.softplus(-fake), mask)


def pixel_loss(generated: torch.Tensor, source: torch.Tensor, maps: torch.Tensor, mask=None) -> torch.Tensor:
    """Eq. 5: ‖A ⊙ G − A ⊙ X_s‖₁ averaged over each region's mass; generated/source (B, 12, 3, h, w),
    maps (B, 12, h, w) -> (12,)."""
    a = maps[:, :, None]
    err = (a * (generated - source).abs()).sum(dim=(2, 3, 4)) / (3 * maps.sum(dim=(2, 3)).clamp(min=1e-6))
    return masked_mean(err, mask)


def regression_loss(pred: torch.Tensor, labels: torch.Tensor, mask=None) -> torch.Tensor:
    """Eq. 8: ‖R(X) − l‖², with l the AU's label as 0 (absent) / 1 (present), per AU."""
    return masked_mean((pred - labels.clamp(min=0).to(pred.dtype)) ** 2, mask)


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation: mean |vertical differences| + mean |horizontal differences|."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def sample_prior(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z ~ U[-1, 1] shaped like `like` (Eq. 6's prior)."""
    u = torch.rand(like.shape, generator=generator, device="cpu", dtype=torch.float32)
    return (u * 2 - 1).to(device=like.device, dtype=like.dtype)


def weighted_sum(per_au: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    return (per_au * beta).sum()


# ---- composition per phase --------------------------------------------------------------------------------
@dataclass
class Batch:
    """One training batch on the device: sources, their windows, labels and the targets drawn for them."""

    images: torch.Tensor  # (B, 3, S, S) float in [-1, 1]
    win: Windows
    labels: torch.Tensor  # (B, 12) int64 source labels {1, 0, -1}
    targets: torch.Tensor  # (B, 12) int64 target labels {1, 0, -1}


@dataclass
class GenOut:
    source: torch.Tensor  # (B, 12, 3, h, w) X_s in each window
    z: torch.Tensor  # (B, 12, N_z)
    fake: torch.Tensor  # (B, 12, 3, h, w) G(z, target)
    recon: torch.Tensor  # (B, 12, 3, h, w) G(z, source label)
    composed: torch.Tensor  # (B, 3, S, S) X_t (Eq. 2)


class LacganLoss:
    """Builds each phase's objective from the pure terms above; returns (total, {name: per-AU or scalar term})."""

    def __init__(self, models: Models, cfg: LossConfig, id_features: FeatureFn | None = None):
        self.m, self.cfg, self.id_features = models, cfg, id_features

    def generate(self, b: Batch) -> GenOut:
        source = gather_windows(b.images, b.win)
        x_roi = b.win.maps[:, :, None] * source  # Eq. 1 inside the window
        z = self.m.G.encode(x_roi)
        both = self.m.G.decode(torch.cat([z, z]), torch.cat([b.targets, b.labels]))  # one call: larger batch
        fake, recon = both.chunk(2)
        composed, _ = compose(b.images, fake, b.win, b.targets)
        return GenOut(source, z, fake, recon, composed)

    def phase(self, name: str, b: Batch, g: GenOut, prior: torch.Generator | None = None):
        beta = torch.tensor(self.cfg.beta, device=b.images.device)
        maps = b.win.maps[:, :, None]
        known_s, known_t = b.labels >= 0, b.targets >= 0
        if name == "D_z":
            per_au = d_adv_loss(self.m.D_z(sample_prior(g.z, prior)), self.m.D_z(g.z.detach()))
            return weighted_sum(per_au, beta), {"adv": per_au}
        if name == "D_local":
            real_logit, real_r = self.m.D_local(maps * g.source, b.labels)
            fake_logit, _ = self.m.D_local(maps * g.fake.detach(), b.targets)
            adv = d_adv_loss(real_logit, fake_logit, known_s, known_t)
            reg = regression_loss(real_r, b.labels, known_s)
            return weighted_sum(adv + self.cfg.lambda_au * reg, beta), {"adv": adv, "label": reg}
        if name == "D_global":
            adv = d_adv_loss(self.m.D_global(b.images), self.m.D_global(g.composed.detach())).mean()
            return adv, {"adv": adv}
        if name == "G":
            return self._generator(b, g, beta, known_s, known_t)
        raise ValueError(f"unknown phase {name!r}; phases are {PHASES}")

    def _generator(self, b: Batch, g: GenOut, beta, known_s, known_t):
        c = self.cfg
        maps = b.win.maps[:, :, None]
        pix = pixel_loss(g.recon, g.source, b.win.maps, known_s)
        adv_z = g_adv_loss(self.m.D_z(g.z))
        fake_logit, fake_r = self.m.D_local(maps * g.fake, b.targets)
        adv_au = g_adv_loss(fake_logit, known_t)
        label = regression_loss(fake_r, b.targets, known_t)
        carg = pix + c.lambda_1 * adv_z + c.lambda_2 * (adv_au + c.lambda_au * label)  # Eq. 9 with Eq. 7
        adv_img = g_adv_loss(self.m.D_global(g.composed)).mean()
        tv = tv_loss(g.composed)
        total = weighted_sum(carg, beta) + c.lambda_img * adv_img + c.lambda_4 * tv  # Eq. 10
        terms = {"pixel": pix, "adv_z": adv_z, "adv_au": adv_au, "label": label, "adv_img": adv_img, "tv": tv}
        if self.id_features is not None and c.lambda_3 > 0:
            n = c.id_faces or b.images.shape[0]
            with torch.no_grad():
                real = self.id_features(b.images[:n])
            ident = identity_loss(list(self.id_features(g.composed[:n])), list(real), c.id_alphas)
            total = total + c.lambda_3 * ident
            terms["id"] = ident
        return total, terms


def identity_features(net) -> FeatureFn:
    """Eq. 4's φ_1..φ_5 for faces in [-1, 1]: the aligned crop mapped onto the net's 150-px chip
    (`lacgan.identity.crop_to_chip`, differentiable), then `net.features`. The net is frozen (eval, no grads)."""
    net.eval()
    net.requires_grad_(False)

    def feats(x: torch.Tensor):
        return net.features(crop_to_chip(x.float()))

    return feats
