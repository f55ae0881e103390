"""GANimation's losses: small pure functions, and `GanimationLoss`, which composes them per training phase.

Reductions follow the reference (models/ganimation.py) so that its weights mean what they meant there:
the WGAN terms are means of the critic's patch scores; the AU regression is the mean squared error divided once
more by the batch size (the reference's `MSELoss(...) / B`); the cycle loss is a mean L1; the attention
saturation term is mean(A); the attention total variation is a *sum* over pixels and faces.

Phases, in the order the loop runs them: "D" (WGAN critic + AU regression on real faces), "D_gp" (the gradient
penalty, its own critic step as in the reference), "G" (every `critic_steps`-th step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lacgan.ganimation.config import LossConfig
from lacgan.ganimation.networks import Models, condition, fill_unknown
from lacgan.losses import regression_loss

PHASES = ("D", "D_gp", "G")
STEPPED = {"D": "D", "D_gp": "D", "G": "G"}  # phase -> network it updates


# ---- pure loss terms ------------------------------------------------------------------------------------
def critic_adv_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """WGAN critic: −E[D(real)] + E[D(fake)] over faces and patches."""
    return -real_scores.mean() + fake_scores.mean()


def generator_adv_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """WGAN generator: −E[D(fake)]."""
    return -fake_scores.mean()


def au_regression_loss(pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Conditional term: squared error of the critic's AU regression against the labels as 0/1, averaged over
    the known entries (label −1 has no target) and divided by the batch size, as the reference does."""
    known = (labels >= 0).to(pred.dtype)
    sq = (pred - labels.clamp(min=0).to(pred.dtype)) ** 2
    return (sq * known).sum() / known.sum().clamp(min=1.0) / pred.shape[0]


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     alpha: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: E[(‖∇_x D(x)‖₂ − 1)²] at x = α·real + (1 − α)·fake, α (B, 1, 1, 1); the gradient is that of the
    summed patch scores, its norm taken per face over all pixels and channels. Differentiable in D's weights."""
    x = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return ((grad.flatten(1).pow(2).sum(1).sqrt() - 1) ** 2).mean()


def cycle_loss(reconstructed: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """‖G(G(I, y_target), y_source) − I‖₁, mean over pixels."""
    return (reconstructed - source).abs().mean()


def attention_saturation(a: torch.Tensor) -> torch.Tensor:
    """mean(A): without it A saturates to 1 and the generator keeps every source pixel (does nothing)."""
    return a.mean()


def attention_tv(a: torch.Tensor) -> torch.Tensor:
    """Total variation of the mask, summed: Σ|A[i, j+1] − A[i, j]| + Σ|A[i+1, j] − A[i, j]|."""
    return (a[..., :, 1:] - a[..., :, :-1]).abs().sum() + (a[..., 1:, :] - a[..., :-1, :]).abs().sum()


# ---- composition per phase --------------------------------------------------------------------------------
@dataclass
class Batch:
    images: torch.Tensor  # (B, 3, S, S) float in [-1, 1]
    labels: torch.Tensor  # (B, 12) int64 source labels {1, 0, -1}
    targets: torch.Tensor  # (B, 12) int64 target labels {1, 0}


class GanimationLoss:
    """Each phase's objective from the pure terms above; `phase` returns (total, {name: term})."""

    def __init__(self, models: Models, cfg: LossConfig):
        self.m, self.cfg = models, cfg

    def fake(self, b: Batch) -> torch.Tensor:
        """The edited faces G(I, y_target) (what the critic phases see; the caller decides about gradients)."""
        return self.m.G.edit(b.images, condition(b.targets))[0]

    def phase(self, name: str, b: Batch, fake: torch.Tensor, alpha: torch.Tensor | None = None):
        c = self.cfg
        if name == "D":
            real_scores, real_aus = self.m.D(b.images)
            fake_scores, _ = self.m.D(fake.detach())
            adv = critic_adv_loss(real_scores, fake_scores)
            au = au_regression_loss(real_aus, b.labels)
            terms = {"adv": adv, "au": au, "au_mse": regression_loss(real_aus.detach()[..., None], b.labels[..., None])}
            return c.lambda_D_prob * adv + c.lambda_D_cond * au, terms
        if name == "D_gp":
            gp = gradient_penalty(lambda x: self.m.D(x)[0], b.images, fake, alpha)
            return c.lambda_D_gp * gp, {"gp": gp}
        if name == "G":
            return self._generator(b)
        raise ValueError(f"unknown phase {name!r}; phases are {PHASES}")

    def _generator(self, b: Batch):
        c = self.cfg
        edited, a1 = self.m.G.edit(b.images, condition(b.targets))
        scores, aus = self.m.D(edited)
        adv, au = generator_adv_loss(scores), au_regression_loss(aus, b.targets)
        with torch.no_grad():  # a source label that is unknown (-1) is taken as the critic reads the source
            source = fill_unknown(b.labels, self.m.D(b.images)[1])
        rec, a2 = self.m.G.edit(edited, condition(source))
        cyc = cycle_loss(rec, b.images)
        sat = attention_saturation(a1) + attention_saturation(a2)
        tv = attention_tv(a1) + attention_tv(a2)
        total = (c.lambda_D_prob * adv + c.lambda_D_cond * au + c.lambda_cyc * cyc + c.lambda_mask * sat
                 + c.lambda_mask_smooth * tv)
        terms = {"adv": adv, "au": au, "cycle": cyc, "mask": sat, "mask_tv": tv, "attention": a1.detach().mean()}
        return total, terms
