"""LAC-GAN losses (Eq. 3-10): small pure functions, and `LacganLoss`, which composes them per training phase.

Conventions. Logits are raw; adversarial terms are the log-loss of the paper written with softplus
(D: softplus(-real) + softplus(fake); G: the non-saturating softplus(-fake)). Per-AU terms are reduced over the
batch with a mask (an AU whose label is -1 has no real/fake target) and then weighted by β_i (Eq. 10).
Per-group terms (one group = one generator, see networks.region_groups) are (G,) vectors. The generated ROI is
A_i ⊙ (the fake region, or the composite inside the window: LossConfig.judge), the real ROI X_AUi = A_i ⊙ X_s
(Eq. 1), both inside the group's window. Every reduction over the batch goes through lacgan.distributed
(batch_sum, batch_mean, mean_all): under torchrun it covers the whole step's batch across the ranks, in one
process it is the plain sum or mean.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lacgan.compose import Windows, compose, gather_windows
from lacgan.distributed import batch_mean, batch_sum, global_count, mean_all
from lacgan.config import LossConfig, NetConfig, check_strength
from lacgan.identity import crop_to_chip, identity_loss  # Eq. 4, pure (lacgan/identity.py)
from lacgan.networks import Models

FeatureFn = Callable[[torch.Tensor], Sequence[torch.Tensor]]  # face (B, 3, S, S) in [-1, 1] -> 5 feature maps
PHASES = ("D_z", "D_lat", "D_local", "D_global", "G")


# ---- pure loss terms ------------------------------------------------------------------------------------
def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over dim 0 (the batch) of the entries where mask is true; 0 where the mask is empty."""
    if mask is None:
        return batch_mean(x)
    m = mask.to(x.dtype)
    return batch_sum((x * m).sum(0)) / global_count(m.sum(0), x).clamp(min=1.0)


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


def regression_loss(pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 8: ‖R(X) − l‖², with l the AU's label as 0 (absent) / 1 (present); pred/labels (B, G, slots), labels -1
    (unknown, or an unused slot) left out -> (G,) mean over the batch and the group's AUs."""
    known = (labels >= 0).to(pred.dtype)
    err = (pred - labels.clamp(min=0).to(pred.dtype)) ** 2 * known
    return batch_sum(err.sum(dim=(0, 2))) / global_count(known.sum(dim=(0, 2)), err).clamp(min=1.0)


def latent_loss(logits: torch.Tensor, labels: torch.Tensor, confuse: bool = False) -> torch.Tensor:
    """The latent AU classifier C on z: binary cross-entropy against the source labels (C's side), or against
    1/2 (the encoder's side, `confuse`: z should not tell the AUs); logits/labels (B, G, slots) -> (G,)."""
    known = (labels >= 0).to(logits.dtype)
    target = torch.full_like(logits, 0.5) if confuse else labels.clamp(min=0).to(logits.dtype)
    err = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * known
    return batch_sum(err.sum(dim=(0, 2))) / global_count(known.sum(dim=(0, 2)), err).clamp(min=1.0)


def warp(x: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Regions x (B, G, C, h, w) resampled at each pixel + displacement (B, G, 2, h, w) px (x, y), bilinear,
    the window's border repeated outside it."""
    B, G, C, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype),
                            torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij")
    gx = (xs + displacement[:, :, 0]) * (2 / max(w - 1, 1)) - 1
    gy = (ys + displacement[:, :, 1]) * (2 / max(h - 1, 1)) - 1
    grid = torch.stack([gx, gy], -1).reshape(B * G, h, w, 2)
    out = F.grid_sample(x.reshape(B * G, C, h, w), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(B, G, C, h, w)


def draw(output: str, source: torch.Tensor, dec_target: torch.Tensor, dec_source: torch.Tensor,
         max_shift: float = 4.0, strength: float = 1.0, colour: torch.Tensor | None = None
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(fake, reconstruction) regions from the decoder's outputs for the target and the source labels:

        paper       fake = D(z, t)              reconstruction = D(z, s)
        residual    fake = X + D(z, t)          reconstruction = X + D(z, s)
        difference  fake = X + D(z, t) − D(z, s)   reconstruction = D(z, s)   (the autoencoder must rebuild X)
        warp        fake = warp(X, max_shift·(F(z, t) − F(z, s))) + D(z, t) − D(z, s), reconstruction = D(z, s),
                    with D the decoder's 3 image channels and F its 2 displacement channels
        flow        fake = warp(X, max_shift·(F(z, t) − F(z, s))), reconstruction = D(z, s): geometry only (the
                    source's own pixels moved; no colour is added, so the edit cannot paint a texture)

    `strength` s (generation only; NetConfig.edit_strength) scales the edit of the difference outputs: s·(D(z, t)
    − D(z, s)) and s·max_shift·(F(z, t) − F(z, s)); s = 1 is what training draws. `colour` (G,) multiplies the
    warp's colour difference per generator group (0: that group is drawn as "flow"; NetConfig.geometry_only).
    """
    check_strength(strength, output)
    if output in ("warp", "flow"):
        moved = warp(source, strength * max_shift * (dec_target[:, :, 3:] - dec_source[:, :, 3:]))
        if output == "flow":
            return moved, dec_source[:, :, :3]
        added = strength * (dec_target[:, :, :3] - dec_source[:, :, :3])
        if colour is not None:
            added = added * colour.to(added)[None, :, None, None, None]
        return moved + added, dec_source[:, :, :3]
    if output == "paper":
        return dec_target, dec_source
    if output == "residual":
        return source + dec_target, source + dec_source
    if output == "difference":
        return source + strength * (dec_target - dec_source), dec_source
    raise ValueError(f"unknown output {output!r}")


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation: mean |vertical differences| + mean |horizontal differences|."""
    return mean_all((x[..., 1:, :] - x[..., :-1, :]).abs()) + mean_all((x[..., :, 1:] - x[..., :, :-1]).abs())


def sample_prior(like: torch.Tensor, generator: torch.Generator | None = None, rows: slice | None = None,
                 total: int | None = None) -> torch.Tensor:
    """z ~ U[-1, 1] shaped like `like` (Eq. 6's prior); with `rows` of a batch of `total`, drawn for the whole
    batch and sliced, so a rank's share equals those rows of one process's draw."""
    u = _whole_batch(torch.rand, like, generator, rows, total)
    return (u * 2 - 1).to(device=like.device, dtype=like.dtype)


def instance_noise(like: torch.Tensor, std: float, generator: torch.Generator | None = None,
                   rows: slice | None = None, total: int | None = None) -> torch.Tensor:
    """Gaussian noise of `std` shaped like `like` (drawn for the whole batch and sliced, as sample_prior); 0 -> 0."""
    if std == 0:
        return torch.zeros((), device=like.device, dtype=like.dtype)
    n = _whole_batch(torch.randn, like, generator, rows, total)
    return (n * std).to(device=like.device, dtype=like.dtype)


def _whole_batch(draw, like: torch.Tensor, generator: torch.Generator | None, rows: slice | None,
                 total: int | None) -> torch.Tensor:
    """`draw` (torch.rand / torch.randn) on the CPU in float32 shaped like `like`; with `rows` of a batch of
    `total`, drawn for the whole batch and sliced, so a rank's share equals those rows of one process's draw."""
    shape = like.shape if rows is None else (total, *like.shape[1:])
    x = draw(shape, generator=generator, device="cpu", dtype=torch.float32)
    return x if rows is None else x[rows]


def weighted_sum(per_au: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    return (per_au * beta).sum()


# ---- composition per phase --------------------------------------------------------------------------------
@dataclass
class Batch:
    """One training batch on the device: sources, their windows, labels and the targets drawn for them."""

    images: torch.Tensor  # (B, 3, S, S) float in [-1, 1]
    win: Windows  # one window per generator group
    labels: torch.Tensor  # (B, 12) int64 source labels {1, 0, -1}
    targets: torch.Tensor  # (B, 12) int64 target labels {1, 0, -1}
    partner: torch.Tensor | None = None  # (B, 3, S, S) same-sequence partner frames (data.FaceData.batch)
    paired: torch.Tensor | None = None  # (B,) bool: this row's target is its partner's labels
    rows: slice | None = None  # under torchrun: this rank's rows of the step's batch of `total` (distributed.Shard)
    total: int | None = None

    def head(self, n: int) -> int:
        """How many of this batch's rows are among the step's first n rows (0 = all: every row)."""
        if n <= 0:
            return self.images.shape[0]
        if self.rows is None:
            return min(n, self.images.shape[0])
        return max(0, min(n, self.rows.stop) - self.rows.start)


@dataclass
class GenOut:
    source: torch.Tensor  # (B, G, 3, h, w) X_s in each window
    z: torch.Tensor  # (B, G, N_z)
    fake: torch.Tensor  # (B, G, 3, h, w) the region drawn for the target (losses.draw)
    recon: torch.Tensor  # (B, G, 3, h, w) the region drawn for the source labels, compared with X_s (Eq. 5)
    composed: torch.Tensor  # (B, 3, S, S) X_t
    judged: torch.Tensor  # (B, G, 3, h, w) what D_local and R see of the fake (LossConfig.judge)


def effective_targets(targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Targets with -1 (keep) replaced by the source's label, so an AU left unnamed keeps its state inside a
    region whose other AUs change."""
    return torch.where(targets < 0, labels, targets)


def group_beta(beta: tuple[float, ...], groups) -> torch.Tensor:
    """β per generator group: the mean of its AUs' β_i (Eq. 10)."""
    from manifests.aus import AUS

    return torch.tensor([sum(beta[AUS.index(a)] for a in g) / len(g) for g in groups])


class LacganLoss:
    """Builds each phase's objective from the pure terms above; returns (total, {name: per-group or scalar term})."""

    def __init__(self, models: Models, cfg: LossConfig, id_features: FeatureFn | None = None,
                 net: NetConfig | None = None):
        self.m, self.cfg, self.id_features = models, cfg, id_features
        self.net = net or NetConfig()
        self.grouping = models.G.grouping

    def phases(self) -> tuple[str, ...]:
        """The phases with work to do (D_lat without a latent adversary and D_global without Eq. 3 are skipped)."""
        skip = {"D_lat"} if self.cfg.lambda_latent == 0 else set()
        skip |= {"D_global"} if self.cfg.lambda_img == 0 else set()
        return tuple(p for p in PHASES if p not in skip)

    def generate(self, b: Batch) -> GenOut:
        source = gather_windows(b.images, b.win)
        x_roi = b.win.maps[:, :, None] * source  # Eq. 1 inside the window
        targets = effective_targets(b.targets, b.labels)
        z, (dec_t, dec_s) = self.m.G.encode_decode(x_roi, [targets, b.labels])  # one decoder call, both labels
        fake, recon = draw(self.net.output, source, dec_t, dec_s, self.net.max_shift, colour=self.m.G.colour)
        composed, _ = compose(b.images, fake, b.win, self.grouping.active(b.targets), self.net.composite,
                              self.net.plateau_gain)
        judged = fake if self.cfg.judge == "own" else gather_windows(composed, b.win)
        return GenOut(source, z, fake, recon, composed, judged)

    def phase(self, name: str, b: Batch, g: GenOut, prior: torch.Generator | None = None):
        beta = group_beta(self.cfg.beta, self.grouping.groups).to(b.images.device)
        maps = b.win.maps[:, :, None]
        known_s, known_t = self.grouping.active(b.labels), self.grouping.active(b.targets)
        if name == "D_z":
            per = d_adv_loss(self.m.D_z(sample_prior(g.z, prior, b.rows, b.total)), self.m.D_z(g.z.detach()))
            return weighted_sum(per, beta), {"adv": per}
        if name == "D_lat":
            per = latent_loss(self.m.D_lat(g.z.detach()), self.grouping.labels(b.labels))
            return weighted_sum(per, beta), {"label": per}
        if name == "D_local":
            real_logit, real_r = self.m.D_local(maps * g.source + self._noise(g.source, b, prior), b.labels)
            fake_logit, _ = self.m.D_local(maps * g.judged.detach() + self._noise(g.judged, b, prior), b.targets)
            adv = d_adv_loss(real_logit, fake_logit, known_s, known_t)
            reg = regression_loss(real_r, self.grouping.labels(b.labels))
            return weighted_sum(adv + self.cfg.lambda_au * reg, beta), {"adv": adv, "label": reg}
        if name == "D_global":
            adv = d_adv_loss(self.m.D_global(b.images), self.m.D_global(g.composed.detach())).mean()
            return adv, {"adv": adv}
        if name == "G":
            return self._generator(b, g, beta, known_s, known_t, prior)
        raise ValueError(f"unknown phase {name!r}; phases are {PHASES}")

    def _noise(self, like: torch.Tensor, b: Batch, prior: torch.Generator | None) -> torch.Tensor:
        """Instance noise on what D_local and R see (LossConfig.judge_noise), from the step's generator."""
        return instance_noise(like, self.cfg.judge_noise, prior, b.rows, b.total)

    def _generator(self, b: Batch, g: GenOut, beta, known_s, known_t, prior=None):
        c = self.cfg
        maps = b.win.maps[:, :, None]
        pix = pixel_loss(g.recon, g.source, b.win.maps, known_s)
        adv_z = g_adv_loss(self.m.D_z(g.z))
        fake_logit, fake_r = self.m.D_local(maps * g.judged + self._noise(g.judged, b, prior), b.targets)
        adv_au = g_adv_loss(fake_logit, known_t)
        label = regression_loss(fake_r, self.grouping.labels(effective_targets(b.targets, b.labels)))
        carg = pix + c.lambda_1 * adv_z + c.lambda_2 * (adv_au + c.lambda_au * c.g_label * label)  # Eq. 9 with Eq. 7
        terms = {"pixel": pix, "adv_z": adv_z, "adv_au": adv_au, "label": label}
        if c.lambda_latent > 0:
            lat = latent_loss(self.m.D_lat(g.z), self.grouping.labels(b.labels), confuse=True)
            carg = carg + c.lambda_latent * lat
            terms["latent"] = lat
        if c.lambda_pair > 0 and b.partner is not None:  # the edit toward a partner's labels looks like the partner
            mask = known_t & b.paired[:, None]
            pair = pixel_loss(g.fake, gather_windows(b.partner, b.win), b.win.maps, mask)
            carg = carg + c.lambda_pair * pair
            terms["pair"] = pair
        tv = tv_loss(g.composed)
        total = weighted_sum(carg, beta) + c.lambda_4 * tv  # Eq. 10
        terms["tv"] = tv
        if c.lambda_edit_tv > 0:
            tv_edit = tv_loss(g.composed - b.images)
            total = total + c.lambda_edit_tv * tv_edit
            terms["tv_edit"] = tv_edit
        if c.lambda_img > 0:
            adv_img = g_adv_loss(self.m.D_global(g.composed)).mean()
            total = total + c.lambda_img * adv_img
            terms["adv_img"] = adv_img
        if self.id_features is not None and c.lambda_3 > 0:
            n = b.head(c.id_faces)  # the step's first id_faces faces (under torchrun: those on this rank)
            if n:
                with torch.no_grad():
                    real = list(self.id_features(b.images[:n]))
                fake = list(self.id_features(g.composed[:n]))
            else:  # none on this rank: it still joins the term's reductions over the ranks
                fake = real = [g.composed.new_zeros(0)] * len(c.id_alphas)
            ident = identity_loss(fake, real, c.id_alphas)
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
