"""GANimation's networks (Pumarola et al. 2018, Sec. 4 and the reference's networks/*_wasserstein_gan.py).

Generator G(I, y): the face and its condition y (the 12 AU codes tiled over the image) -> a colour image C and an
attention mask A, then I_out = A ⊙ I + (1 − A) ⊙ C: where A = 1 the source pixel is kept.
    7×7 conv (conv_dim) -> 2 × [4×4/2 conv, doubling] -> res_blocks × residual(3×3, 3×3) ->
    2 × [4×4/2 transposed conv, halving] -> colour head 7×7 conv + tanh, attention head 7×7 conv + sigmoid.
    Instance norm (affine) and ReLU after every conv of the trunk, no conv biases (as the reference).
Critic D(I): critic_layers × [4×4/2 conv + LeakyReLU 0.01] -> a 3×3 conv to WGAN patch scores, and a conv
covering the whole last feature map to the 12 AU regressions.
"""

from __future__ import annotations

import torch
from torch import nn

from lacgan.ganimation.config import NetConfig
from lacgan.networks import label_code
from manifests.aus import N_AUS


def condition(labels: torch.Tensor) -> torch.Tensor:
    """int labels (B, 12) in {1, 0, -1} -> the generator's condition: +1 present, −1 absent, 0 unknown
    (LAC-GAN's label code; the editor replaces unknown targets before they get here, see infer.py)."""
    return label_code(labels)


def fill_unknown(labels: torch.Tensor, au_reading: torch.Tensor) -> torch.Tensor:
    """Labels (B, 12) with each −1 replaced by the critic's reading of the face (AU regression > 0.5: present).
    GANimation has no notion of "leave this AU's region alone"; "keep the source's state" is the nearest it has."""
    return torch.where(labels < 0, (au_reading > 0.5).to(labels.dtype), labels)


def attend(source: torch.Tensor, colour: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """I_out = A ⊙ source + (1 − A) ⊙ colour; A (B, 1, S, S) broadcasts over the channels."""
    return attention * source + (1 - attention) * colour


def _norm_relu(channels: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(channels, affine=True), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, bias=False), *_norm_relu(dim),
                                  nn.Conv2d(dim, dim, 3, 1, 1, bias=False), nn.InstanceNorm2d(dim, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        d = cfg.conv_dim
        layers: list[nn.Module] = [nn.Conv2d(3 + N_AUS, d, 7, 1, 3, bias=False), *_norm_relu(d)]
        for _ in range(2):
            layers += [nn.Conv2d(d, 2 * d, 4, 2, 1, bias=False), *_norm_relu(2 * d)]
            d *= 2
        layers += [ResidualBlock(d) for _ in range(cfg.res_blocks)]
        for _ in range(2):
            layers += [nn.ConvTranspose2d(d, d // 2, 4, 2, 1, bias=False), *_norm_relu(d // 2)]
            d //= 2
        self.trunk = nn.Sequential(*layers)
        self.colour = nn.Conv2d(d, 3, 7, 1, 3, bias=False)
        self.attention = nn.Conv2d(d, 1, 7, 1, 3, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, S, S) in [-1, 1], cond (B, 12) float -> (colour (B, 3, S, S) in [-1, 1], A (B, 1, S, S))."""
        c = cond.to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        h = self.trunk(torch.cat([x, c], dim=1))
        return torch.tanh(self.colour(h)), torch.sigmoid(self.attention(h))

    def edit(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the edited face A ⊙ x + (1 − A) ⊙ C, its attention mask A)."""
        colour, a = self(x, cond)
        return attend(x, colour, a), a


class Critic(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        layers: list[nn.Module] = []
        a, b = 3, cfg.critic_dim
        for _ in range(cfg.critic_layers):
            layers += [nn.Conv2d(a, b, 4, 2, 1), nn.LeakyReLU(0.01, inplace=True)]
            a, b = b, 2 * b
        self.trunk = nn.Sequential(*layers)
        side = cfg.size >> cfg.critic_layers  # each 4×4/2 conv with padding 1 halves (rounding down)
        self.score = nn.Conv2d(a, 1, 3, 1, 1, bias=False)
        self.aus = nn.Conv2d(a, N_AUS, side, bias=False)  # one output per AU from the whole feature map

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> (WGAN patch scores (B, P), AU regressions (B, 12); 1 present, 0 absent)."""
        h = self.trunk(x)
        return self.score(h).flatten(1), self.aus(h).flatten(1)


class Models(nn.Module):
    """GANimation's two networks; `.to()` and `.train()` are nn.Module's."""

    def __init__(self, G: Generator, D: Critic):
        super().__init__()
        self.G, self.D = G, D

    def named(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}


def _init(m: nn.Module, std: float) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, std)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_models(cfg: NetConfig, seed: int = 0) -> Models:
    """Both networks, initialised from `seed` (conv weights N(0, init_std), as the reference)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        models = Models(Generator(cfg), Critic(cfg))
        for m in models.named().values():
            m.apply(lambda mod: _init(mod, cfg.init_std))
    return models
