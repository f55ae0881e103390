"""LAC-GAN networks (Sec. 3, 4.1). The 12 per-AU networks run as ONE grouped computation.

Per AU i the paper has a CARG (encoder, decoder), a latent discriminator D_z and a local discriminator D with an
AU regressor R sharing its first 4 conv layers. These are independent across AUs, so each is stored once with
stacked weights: convolutions with `groups=12` over channel-stacked regions (channels [AU0's c, AU1's c, ...]),
fully connected layers as a batched matmul (`GroupedLinear`). `CARGStack.forward_loop` runs the same weights one
AU at a time (the reference for tests and the benchmark).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lacgan.config import NetConfig
from manifests.aus import N_AUS

G = N_AUS  # groups: one per AU


class GroupedLinear(nn.Module):
    """G independent linear layers applied to (B, G, in) -> (B, G, out)."""

    def __init__(self, groups: int, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(groups, n_in, n_out))
        self.bias = nn.Parameter(torch.empty(groups, n_out))
        bound = 1 / math.sqrt(n_in)  # nn.Linear's default initialisation, per group
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bgi,gio->bgo", x, self.weight) + self.bias

    def single(self, x: torch.Tensor, g: int) -> torch.Tensor:
        """Group g alone on (B, in) -> (B, out)."""
        return x @ self.weight[g] + self.bias[g]


def _down(n: int, layers: int) -> int:
    for _ in range(layers):
        n = (n + 1) // 2  # conv 5×5, stride 2, padding 2: ceil(n / 2)
    return n


def label_code(labels: torch.Tensor) -> torch.Tensor:
    """int labels (…) in {1, 0, -1} -> float condition +1 present, -1 absent, 0 unknown."""
    return torch.where(labels > 0, 1.0, torch.where(labels == 0, -1.0, 0.0))


class CARGStack(nn.Module):
    """12 conditional AU region generators (Sec. 3.2).

    Encoder: 5 conv 5×5/2 + FC to z (N_z), tanh so that z lives where the uniform prior on [-1, 1] does.
    Decoder: [z, label code tiled to label_dim] -> FC -> 5 transposed conv 5×5/2 -> tanh, cropped to the window.
    """

    def __init__(self, cfg: NetConfig, window: tuple[int, int]):
        super().__init__()
        self.window, self.z_dim, self.label_dim = tuple(window), cfg.z_dim, cfg.label_dim
        ch, k = (3, *cfg.enc_channels), cfg.kernel
        self.enc = nn.ModuleList(nn.Conv2d(G * a, G * b, k, 2, k // 2, groups=G) for a, b in zip(ch, ch[1:]))
        self.h5, self.w5 = _down(window[0], 5), _down(window[1], 5)
        flat = ch[-1] * self.h5 * self.w5
        self.enc_fc = GroupedLinear(G, flat, cfg.z_dim)
        self.dec_fc = GroupedLinear(G, cfg.z_dim + cfg.label_dim, flat)
        rch = ch[::-1]  # c5 .. c1, 3
        self.dec = nn.ModuleList(nn.ConvTranspose2d(G * a, G * b, k, 2, k // 2, output_padding=1, groups=G)
                                 for a, b in zip(rch, rch[1:]))
        self.c5 = ch[-1]

    # ---- batched (the fast path) -----------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 12, 3, h, w) regions -> z (B, 12, N_z) in [-1, 1]."""
        B = x.shape[0]
        h = x.reshape(B, G * 3, *x.shape[-2:])
        for conv in self.enc:
            h = F.leaky_relu(conv(h), 0.2)
        return torch.tanh(self.enc_fc(h.reshape(B, G, -1)))

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """z (B, 12, N_z), labels (B, 12) int in {1, 0, -1} -> regions (B, 12, 3, h, w) in [-1, 1]."""
        B = z.shape[0]
        cond = label_code(labels).to(z.dtype)[..., None].expand(B, G, self.label_dim)
        h = F.relu(self.dec_fc(torch.cat([z, cond], dim=-1))).reshape(B, G * self.c5, self.h5, self.w5)
        for i, deconv in enumerate(self.dec):
            h = deconv(h)
            h = torch.tanh(h) if i == len(self.dec) - 1 else F.relu(h)
        return h[..., : self.window[0], : self.window[1]].reshape(B, G, 3, *self.window)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), labels)

    # ---- one AU at a time, same weights (reference) ----------------------------------------------------
    def forward_loop(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.forward_single(x[:, g], labels[:, g], g) for g in range(G)], dim=1)

    def forward_single(self, x: torch.Tensor, labels: torch.Tensor, g: int) -> torch.Tensor:
        """AU g alone: x (B, 3, h, w), labels (B,) -> (B, 3, h, w)."""
        h = x
        for conv in self.enc:
            n = conv.out_channels // G
            h = F.leaky_relu(F.conv2d(h, conv.weight[g * n:(g + 1) * n], conv.bias[g * n:(g + 1) * n], 2,
                                      conv.padding), 0.2)
        z = torch.tanh(self.enc_fc.single(h.flatten(1), g))
        cond = label_code(labels).to(z.dtype)[:, None].expand(-1, self.label_dim)
        h = F.relu(self.dec_fc.single(torch.cat([z, cond], -1), g)).reshape(-1, self.c5, self.h5, self.w5)
        for i, dc in enumerate(self.dec):
            n_in, n_out = dc.in_channels // G, dc.out_channels // G
            h = F.conv_transpose2d(h, dc.weight[g * n_in:(g + 1) * n_in], dc.bias[g * n_out:(g + 1) * n_out], 2,
                                   dc.padding, dc.output_padding)
            h = torch.tanh(h) if i == len(self.dec) - 1 else F.relu(h)
        return h[..., : self.window[0], : self.window[1]]


class LatentDiscriminator(nn.Module):
    """D_z per AU (Eq. 6): 4 FC layers on z; a logit for "drawn from the uniform prior"."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        dims = (cfg.z_dim, *cfg.dz_hidden, 1)
        self.layers = nn.ModuleList(GroupedLinear(G, a, b) for a, b in zip(dims, dims[1:]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, 12, N_z) -> logits (B, 12)."""
        h = z
        for i, fc in enumerate(self.layers):
            h = fc(h)
            if i < len(self.layers) - 1:
                h = F.leaky_relu(h, 0.2)
        return h[..., 0]


class LocalDiscriminator(nn.Module):
    """Local AU discriminator D(X, l) and regressor R (Eq. 7, 8), sharing 4 conv 5×5/2 + batch-norm layers.

    D is conditioned on the AU label by projection (Miyato & Koyama 2018): logit = ψ(f) + c · ⟨v, f⟩ with
    c = ±1 the label code; R reads the same features f but never the label (it must find the AU in the image)."""

    def __init__(self, cfg: NetConfig, window: tuple[int, int]):
        super().__init__()
        ch, k = (3, *cfg.local_channels), cfg.kernel
        self.convs = nn.ModuleList(nn.Conv2d(G * a, G * b, k, 2, k // 2, groups=G) for a, b in zip(ch, ch[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm2d(G * b) for b in ch[2:])  # none on the first layer (DCGAN)
        flat = ch[-1] * _down(window[0], 4) * _down(window[1], 4)
        self.d_head = GroupedLinear(G, flat, 2)  # [ψ(f), ⟨v, f⟩]
        self.r_head = GroupedLinear(G, flat, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        h = x.reshape(B, G * 3, *x.shape[-2:])
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i > 0:
                h = self.norms[i - 1](h)
            h = F.leaky_relu(h, 0.2)
        return h.reshape(B, G, -1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """regions (B, 12, 3, h, w), labels (B, 12) -> (D logits (B, 12), R predictions (B, 12))."""
        f = self.features(x)
        d = self.d_head(f)
        logit = d[..., 0] + label_code(labels).to(d.dtype) * d[..., 1]
        return logit, self.r_head(f)[..., 0]


class GlobalDiscriminator(nn.Module):
    """D_img (Eq. 3): conv 4×4/2 layers on the whole face, then a 3×3 conv to patch logits."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        ch = (3, *cfg.global_channels)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 4, 2, 1) for a, b in zip(ch, ch[1:]))
        self.out = nn.Conv2d(ch[-1], 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> patch logits (B, P)."""
        h = x
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
        return self.out(h).flatten(1)


@dataclass
class Models:
    """Every network of LAC-GAN (the identity network is frozen and lives outside, see losses.py)."""

    G: CARGStack
    D_z: LatentDiscriminator
    D_local: LocalDiscriminator
    D_global: GlobalDiscriminator

    def named(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D_z": self.D_z, "D_local": self.D_local, "D_global": self.D_global}

    def to(self, device) -> "Models":
        for m in self.named().values():
            m.to(device)
        return self

    def train(self, mode: bool = True) -> "Models":
        for m in self.named().values():
            m.train(mode)
        return self


def build_models(cfg: NetConfig, seed: int = 0) -> Models:
    """All networks of a config with resolved window, initialised from `seed`."""
    if cfg.window is None:
        raise ValueError("NetConfig.window is None: resolve it first (lacgan.data.resolve_window)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Models(CARGStack(cfg, cfg.window), LatentDiscriminator(cfg), LocalDiscriminator(cfg, cfg.window),
                      GlobalDiscriminator(cfg))
