"""LAC-GAN networks (Sec. 3, 4.1). The G region generators run as ONE grouped computation.

A generator group is one CARG with its latent discriminator D_z, its local discriminator D and AU regressor R
(sharing D's first 4 conv layers) and its latent AU classifier C. `NetConfig.generators` decides the groups:

    per-au       12 groups, one AU each (the paper: a CARG per AU; AUs whose maps coincide are then drawn by
                 several CARGs on the same pixels and averaged by Eq. 2)
    per-region   9 groups, one per distinct region (lacgan.regions.REGION_GROUPS): the lip-corner generator is
                 conditioned on AU12, AU14 and AU15 together, the lip-centre one on AU23 and AU24, so each AU is
                 controlled on its own and nothing is averaged

Groups are independent, so each network is stored once with stacked weights: convolutions with `groups=G` over
channel-stacked regions, fully connected layers as a batched matmul (`GroupedLinear`). A group's condition is the
label code of each of its AUs (+1 present, −1 absent, 0 unknown) in `slots` = max AUs per group places (unused
places 0), each place tiled to label_dim / slots. `CARGStack.forward_loop` runs the same weights one group at a
time (the reference for tests and the benchmark).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lacgan.config import OUTPUT_CHANNELS, NetConfig
from lacgan.distributed import BatchNorm2d
from lacgan.regions import REGION_GROUPS
from manifests.aus import AUS


def region_groups(cfg: NetConfig) -> tuple[tuple[int, ...], ...]:
    """The AUs of each generator group, in order."""
    return tuple((a,) for a in AUS) if cfg.generators == "per-au" else REGION_GROUPS


def group_index(groups) -> tuple[torch.Tensor, torch.Tensor]:
    """(index (G, slots) into the 12 AUs, valid (G, slots) bool) for gathering per-group label codes."""
    slots = max(len(g) for g in groups)
    idx = torch.zeros(len(groups), slots, dtype=torch.long)
    valid = torch.zeros(len(groups), slots, dtype=torch.bool)
    for k, g in enumerate(groups):
        for j, a in enumerate(g):
            idx[k, j], valid[k, j] = AUS.index(a), True
    return idx, valid


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


def _cat_groups(a: torch.Tensor, b: torch.Tensor, groups: int) -> torch.Tensor:
    """Concatenate two grouped feature maps (B, G·ca, h, w), (B, G·cb, h, w) group by group -> (B, G·(ca+cb), h, w)."""
    B, _, h, w = a.shape
    return torch.cat([a.reshape(B, groups, -1, h, w), b.reshape(B, groups, -1, h, w)], 2).reshape(B, -1, h, w)


def label_code(labels: torch.Tensor) -> torch.Tensor:
    """int labels (…) in {1, 0, -1} -> float condition +1 present, -1 absent, 0 unknown."""
    return torch.where(labels > 0, 1.0, torch.where(labels == 0, -1.0, 0.0))


class Grouping(nn.Module):
    """Maps the 12 AU labels onto the generator groups' slots (a fixed, weight-free buffer)."""

    def __init__(self, groups):
        super().__init__()
        self.groups = tuple(tuple(g) for g in groups)
        idx, valid = group_index(self.groups)
        self.register_buffer("idx", idx, persistent=False)
        self.register_buffer("valid", valid, persistent=False)

    @property
    def n(self) -> int:
        return len(self.groups)

    @property
    def slots(self) -> int:
        return int(self.idx.shape[1])

    def codes(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, 12) int labels -> (B, G, slots) float codes, 0 in unused slots."""
        return label_code(labels)[:, self.idx] * self.valid

    def labels(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, 12) -> (B, G, slots) int labels, -1 (unknown) in unused slots."""
        return torch.where(self.valid, labels[:, self.idx], torch.full_like(labels[:, self.idx], -1))

    def ungroup(self, values: torch.Tensor, fill: float = -1) -> torch.Tensor:
        """(B, G, slots) per-slot values -> (B, 12) per AU (`fill` for AUs no group holds)."""
        out = values.new_full((values.shape[0], len(AUS)), fill)
        out[:, self.idx[self.valid]] = values[:, self.valid]
        return out

    def active(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, 12) targets -> (B, G) bool: the group has a known target for at least one of its AUs."""
        return (self.labels(labels) >= 0).any(-1)


def reads_mask(reads, groups) -> torch.Tensor:
    """NetConfig.reads (the AUs each generator reads) -> (G, 12) float mask; each group must read its own AUs."""
    if reads is None:
        raise ValueError("NetConfig.reads is None: condition_on 'overlap' needs it fitted first "
                         "(lacgan.data.fit_to_faces)")
    if len(reads) != len(groups):
        raise ValueError(f"NetConfig.reads has {len(reads)} entries for {len(groups)} generators")
    mask = torch.zeros(len(groups), len(AUS))
    for g, (aus, own) in enumerate(zip(reads, groups)):
        if not set(own) <= set(aus):
            raise ValueError(f"NetConfig.reads[{g}] = {aus} leaves out the generator's own AUs {own}")
        mask[g, [AUS.index(a) for a in aus]] = 1.0
    return mask


def colour_mask(geometry_only, groups) -> torch.Tensor | None:
    """(G,) 1.0 where generator group g adds colour to its move ("warp"), 0.0 where it only moves the source
    (a group holding any AU of NetConfig.geometry_only); None when no group is geometry-only."""
    if not geometry_only:
        return None
    return torch.tensor([0.0 if set(g) & set(geometry_only) else 1.0 for g in groups])


class CARGStack(nn.Module):
    """G conditional AU region generators (Sec. 3.2).

    Encoder: 5 conv 5×5/2 + FC to z (N_z), tanh so that z lives where the uniform prior on [-1, 1] does.
    Decoder: [z, group condition tiled to label_dim] -> FC -> 5 transposed conv 5×5/2 -> tanh, cropped to the window.
    """

    def __init__(self, cfg: NetConfig, window: tuple[int, int]):
        super().__init__()
        self.grouping = Grouping(region_groups(cfg))
        G = self.grouping.n
        self.condition_on = cfg.condition_on
        if cfg.condition_on == "overlap":  # (G, 12) 1 where generator g reads AU j's code, else its code is held at 0
            self.register_buffer("reads", reads_mask(cfg.reads, self.grouping.groups), persistent=False)
        self.register_buffer("colour", colour_mask(cfg.geometry_only, self.grouping.groups), persistent=False)
        S = self.grouping.slots if cfg.condition_on == "region" else len(AUS)  # label codes each generator reads
        if cfg.label_dim % S:
            raise ValueError(f"label_dim {cfg.label_dim} must be a multiple of {S} (AUs per generator)")
        self.window, self.z_dim, self.label_dim, self.G = tuple(window), cfg.z_dim, cfg.label_dim, G
        self.out_ch = OUTPUT_CHANNELS[cfg.output]  # an image (+ a 2-channel displacement field)
        ch, k = (3, *cfg.enc_channels), cfg.kernel
        self.enc = nn.ModuleList(nn.Conv2d(G * a, G * b, k, 2, k // 2, groups=G) for a, b in zip(ch, ch[1:]))
        self.h5, self.w5 = _down(window[0], 5), _down(window[1], 5)
        flat = ch[-1] * self.h5 * self.w5
        self.enc_fc = GroupedLinear(G, flat, cfg.z_dim)
        self.dec_fc = GroupedLinear(G, cfg.z_dim + cfg.label_dim, flat)
        rch = (*ch[:0:-1], self.out_ch)  # c5 .. c1, output channels
        # with skips, decoder layer i (i >= 1) also reads the output of encoder layer 4 - i (its size)
        extra = [0] + [ch[5 - i] for i in range(1, 5)] if cfg.skips else [0] * 5
        self.skips = cfg.skips
        # condition "every-scale": every decoder layer also reads the group's label codes as constant planes
        self.planes = S if cfg.condition == "every-scale" else 0
        self.dec = nn.ModuleList(nn.ConvTranspose2d(G * (a + e + self.planes), G * b, k, 2, k // 2, output_padding=1,
                                                    groups=G)
                                 for a, b, e in zip(rch, rch[1:], extra))
        self.sizes = [window]
        for _ in range(5):
            self.sizes.append(((self.sizes[-1][0] + 1) // 2, (self.sizes[-1][1] + 1) // 2))  # after enc layer k
        self.c5 = ch[-1]

    def codes(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, 12) labels -> (B, G, n) the codes each generator reads (NetConfig.condition_on): its own AUs'
        (`Grouping.codes`, n = slots), all 12 (n = 12), or those of the AUs whose regions overlap its own (n = 12,
        0 = the "unknown" code for the others, so their changes cannot reach it)."""
        if self.condition_on == "all":
            return label_code(labels)[:, None, :].expand(-1, self.G, -1)
        if self.condition_on == "overlap":
            return label_code(labels)[:, None, :] * self.reads
        return self.grouping.codes(labels)

    def condition(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., n) label codes (`codes`) -> (..., label_dim) decoder condition."""
        return codes.repeat_interleave(self.label_dim // codes.shape[-1], dim=-1)

    # ---- batched (the fast path) -----------------------------------------------------------------------
    def encode(self, x: torch.Tensor, with_features: bool = False):
        """(B, G, 3, h, w) regions -> z (B, G, N_z) in [-1, 1]; with `with_features` also the encoder layers'
        outputs (for the skips)."""
        B = x.shape[0]
        h = x.reshape(B, self.G * 3, *x.shape[-2:])
        feats = []
        for conv in self.enc:
            h = F.leaky_relu(conv(h), 0.2)
            feats.append(h)
        z = torch.tanh(self.enc_fc(h.reshape(B, self.G, -1)))
        return (z, feats) if with_features else z

    def decode(self, z: torch.Tensor, labels: torch.Tensor, feats: list | None = None) -> torch.Tensor:
        """z (B, G, N_z), labels (B, 12) int in {1, 0, -1} (and the encoder features when the CARG has skips)
        -> regions (B, G, out_ch, h, w) in [-1, 1] (out_ch 3, or 5 for the "warp" and "flow" outputs: image + displacement)."""
        B = z.shape[0]
        codes = self.codes(labels).to(z.dtype)  # (B, G, n); also the "every-scale" planes
        h = F.relu(self.dec_fc(torch.cat([z, self.condition(codes)], dim=-1)))
        h = h.reshape(B, self.G * self.c5, self.h5, self.w5)
        for i, deconv in enumerate(self.dec):
            if self.skips and i > 0:
                h = _cat_groups(h[..., : self.sizes[5 - i][0], : self.sizes[5 - i][1]], feats[4 - i], self.G)
            if self.planes:
                planes = codes[..., None, None].expand(-1, -1, -1, *h.shape[-2:]).reshape(B, -1, *h.shape[-2:])
                h = _cat_groups(h, planes, self.G)
            h = deconv(h)
            h = torch.tanh(h) if i == len(self.dec) - 1 else F.relu(h)
        return h[..., : self.window[0], : self.window[1]].reshape(B, self.G, self.out_ch, *self.window)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.skips:
            z, feats = self.encode(x, with_features=True)
            return self.decode(z, labels, feats)
        return self.decode(self.encode(x), labels)

    def encode_decode(self, x: torch.Tensor, labels: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode once, decode for each label set: (z, [regions for labels[0], ...])."""
        z, feats = self.encode(x, with_features=True)
        n = len(labels)
        both = self.decode(torch.cat([z] * n), torch.cat(labels), [torch.cat([f] * n) for f in feats])
        return z, list(both.chunk(n))

    # ---- one group at a time, same weights (reference) -------------------------------------------------
    def forward_loop(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        codes = self.codes(labels)
        return torch.stack([self.forward_single(x[:, g], codes[:, g], g) for g in range(self.G)], dim=1)

    def forward_single(self, x: torch.Tensor, codes: torch.Tensor, g: int) -> torch.Tensor:
        """Group g alone: x (B, 3, h, w), its label codes (B, n) (`codes`) -> (B, out_ch, h, w)."""
        G = self.G
        h = x
        feats = []
        for conv in self.enc:
            n = conv.out_channels // G
            h = F.leaky_relu(F.conv2d(h, conv.weight[g * n:(g + 1) * n], conv.bias[g * n:(g + 1) * n], 2,
                                      conv.padding), 0.2)
            feats.append(h)
        z = torch.tanh(self.enc_fc.single(h.flatten(1), g))
        cond = self.condition(codes).to(z.dtype)
        h = F.relu(self.dec_fc.single(torch.cat([z, cond], -1), g)).reshape(-1, self.c5, self.h5, self.w5)
        for i, dc in enumerate(self.dec):
            if self.skips and i > 0:
                h = torch.cat([h[..., : self.sizes[5 - i][0], : self.sizes[5 - i][1]], feats[4 - i]], 1)
            if self.planes:
                h = torch.cat([h, codes.to(h.dtype)[..., None, None].expand(-1, -1, *h.shape[-2:])], 1)
            n_in, n_out = dc.in_channels // G, dc.out_channels // G
            h = F.conv_transpose2d(h, dc.weight[g * n_in:(g + 1) * n_in], dc.bias[g * n_out:(g + 1) * n_out], 2,
                                   dc.padding, dc.output_padding)
            h = torch.tanh(h) if i == len(self.dec) - 1 else F.relu(h)
        return h[..., : self.window[0], : self.window[1]]


class LatentDiscriminator(nn.Module):
    """D_z per group (Eq. 6): 4 FC layers on z; a logit for "drawn from the uniform prior"."""

    def __init__(self, cfg: NetConfig, out: int = 1):
        super().__init__()
        G = len(region_groups(cfg))
        dims = (cfg.z_dim, *cfg.dz_hidden, out)
        self.single_logit = out == 1
        self.layers = nn.ModuleList(GroupedLinear(G, a, b) for a, b in zip(dims, dims[1:]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, G, N_z) -> logits (B, G) (D_z), or (B, G, out) for out > 1 (C)."""
        h = z
        for i, fc in enumerate(self.layers):
            h = fc(h)
            if i < len(self.layers) - 1:
                h = F.leaky_relu(h, 0.2)
        return h[..., 0] if self.single_logit else h


class LatentClassifier(LatentDiscriminator):
    """C per group: the same 4 FC layers, reading the group's AU labels from z (one logit per slot). Trained to
    read them, while the encoder is trained to hide them (`LossConfig.lambda_latent`), so the decoder must take
    the AU state from its condition, not from z."""

    def __init__(self, cfg: NetConfig):
        super().__init__(cfg, out=max(len(g) for g in region_groups(cfg)))
        self.single_logit = False  # (B, G, slots) logits, even for one AU per group


class LocalDiscriminator(nn.Module):
    """Local AU discriminator D(X, l) and regressor R (Eq. 7, 8), sharing 4 conv 5×5/2 + batch-norm layers.

    D is conditioned on the group's labels by projection (Miyato & Koyama 2018): logit = ψ(f) + Σ_k c_k ⟨v_k, f⟩
    with c_k = ±1 the label codes; R reads the same features f but never the labels (it must find each AU in the
    image): one output per slot."""

    def __init__(self, cfg: NetConfig, window: tuple[int, int]):
        super().__init__()
        self.grouping = Grouping(region_groups(cfg))
        G, S = self.grouping.n, self.grouping.slots
        self.G = G
        ch, k = (3, *cfg.local_channels), cfg.kernel
        self.convs = nn.ModuleList(nn.Conv2d(G * a, G * b, k, 2, k // 2, groups=G) for a, b in zip(ch, ch[1:]))
        # none on the first layer (DCGAN); statistics over every rank's share under torchrun (lacgan.distributed)
        self.norms = nn.ModuleList(BatchNorm2d(G * b) for b in ch[2:])
        flat = ch[-1] * _down(window[0], 4) * _down(window[1], 4)
        self.d_head = GroupedLinear(G, flat, 1 + S)  # [ψ(f), ⟨v_1, f⟩, ...]
        self.r_head = GroupedLinear(G, flat, S)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        h = x.reshape(B, self.G * 3, *x.shape[-2:])
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i > 0:
                h = self.norms[i - 1](h)
            h = F.leaky_relu(h, 0.2)
        return h.reshape(B, self.G, -1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """regions (B, G, 3, h, w), labels (B, 12) -> (D logits (B, G), R predictions (B, G, slots))."""
        f = self.features(x)
        d = self.d_head(f)
        logit = d[..., 0] + (self.grouping.codes(labels).to(d.dtype) * d[..., 1:]).sum(-1)
        return logit, self.r_head(f)


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
    D_lat: LatentClassifier

    def named(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D_z": self.D_z, "D_local": self.D_local, "D_global": self.D_global,
                "D_lat": self.D_lat}

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
        raise ValueError("NetConfig.window is None: resolve it first (lacgan.data.fit_to_faces)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Models(CARGStack(cfg, cfg.window), LatentDiscriminator(cfg), LocalDiscriminator(cfg, cfg.window),
                      GlobalDiscriminator(cfg), LatentClassifier(cfg))
