"""The JAA-Net network (JAA-Net v1 of Shao et al., ECCV 2018), sized by `unit` (channels) and `crop` (input px).

    region_learning   two hierarchical multi-scale region layers, each followed by 2× max-pooling
    align             feature stack + two linear layers -> 49 landmarks (crop pixels)
    predefined maps   from the predicted landmarks, not differentiated (detectors.jaanet.landmarks)
    refine            per AU, four unpadded 3×3 convs with sigmoid: (map+8)² -> map² attention
    local             per AU, a feature stack on region features × refined attention, averaged over AUs
    global            a feature stack on the region features
    au_head           [align, global, local] features -> two linear layers -> (B, 2, 12) log-probabilities

Per-patch and per-AU weights are stored as grouped convolutions: the patches (or AUs) are moved into the channel
axis, so one kernel runs all of them with their own weights. How the per-AU stacks (refine, local) *run* depends on
the device (`JaaNet.au_loop`): on the CPU, in eval mode, they run one AU at a time as ordinary convolutions on
that AU's slice of the grouped weights, with each batch norm folded into its convolution (the alignment and
global stacks too), in channels-last layout, the refine stack only where the AU's map can reach
(`refine_where_nonzero`), every convolution's weight reordered once into oneDNN's own layout with its ReLU fused
(`EvalConv`) — oneDNN runs 12 dense convolutions 2-3x faster than one 12-group convolution (measured on 2 cores;
see docs/detectors.md). Training, and CUDA, use the grouped convolutions. Both give the same outputs to float
tolerance (tests/test_detectors_jaanet.py) and share one state_dict.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from detectors.jaanet.landmarks import N_POINTS, predefined_maps
from manifests.aus import N_AUS


def _fused_conv_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


class EvalConv:
    """One eval-mode convolution of the CPU path (stride 1, one group; a batch norm already folded into weight and
    bias; optionally followed by ReLU). With `prepack` (and a float32 CPU input outside autocast, on a build with
    oneDNN), the weight is reordered into oneDNN's blocked layout once per input shape instead of on every call,
    and the ReLU runs inside the convolution (oneDNN's fused op, the one PyTorch's own compiler uses for frozen
    CPU models); otherwise F.conv2d. The same numbers either way (tests/test_detectors_jaanet.py)."""

    SHAPES_KEPT = 8  # packed weights kept per convolution (the best layout depends on the input's shape)

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding, relu: bool, prepack: bool = True):
        self.weight, self.bias = weight.detach().contiguous(), bias.detach().contiguous()
        self.padding, self.relu = [int(p) for p in padding], relu
        self.prepack = prepack and _fused_conv_available()
        self._packed: OrderedDict = OrderedDict()  # input shape -> weight in oneDNN's layout

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if (self.prepack and x.device.type == "cpu" and x.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu")):
            shape = tuple(x.shape)
            w = self._packed.get(shape)
            if w is None:
                w = torch._C._nn.mkldnn_reorder_conv2d_weight(self.weight.to_mkldnn(), self.padding, [1, 1], [1, 1],
                                                              1, list(shape))
                self._packed[shape] = w
                if len(self._packed) > self.SHAPES_KEPT:
                    self._packed.popitem(last=False)
            return torch.ops.mkldnn._convolution_pointwise(x, w, self.bias, self.padding, [1, 1], [1, 1], 1,
                                                           "relu" if self.relu else "none", [], "")
        y = F.conv2d(x, self.weight, self.bias, padding=self.padding)
        return F.relu_(y) if self.relu else y


def _weights_key(module: nn.Module) -> tuple:
    """Changes whenever any parameter or buffer of `module` is replaced or changed in place (load_state_dict, an
    optimizer step, .to()): the eval path's folded and packed weights are rebuilt then."""
    return tuple((t.data_ptr(), t._version) for t in module.state_dict(keep_vars=True).values())


class PatchConv(nn.Module):
    """Split the map into a grid×grid of patches; per patch its own BN, ReLU and 3×3 conv (padding 1)."""

    def __init__(self, grid: int, cin: int, cout: int):
        super().__init__()
        self.grid, self.cout = grid, cout
        g = grid * grid
        self.bn = nn.BatchNorm2d(g * cin)  # per patch and channel, as separate BNs per patch would be
        self.conv = nn.Conv2d(g * cin, g * cout, 3, padding=1, groups=g)

    def forward(self, x):
        b, c, h, w = x.shape
        k = self.grid
        if h % k or w % k:
            raise ValueError(f"PatchConv: {h}×{w} feature map does not split into a {k}×{k} grid")
        ph, pw = h // k, w // k
        p = x.view(b, c, k, ph, k, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, k * k * c, ph, pw)
        p = self.conv(F.relu(self.bn(p)))
        return p.view(b, k, k, self.cout, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, self.cout, h, w)

    def eval_convs(self, prepack: bool = True) -> list[EvalConv]:
        """One EvalConv per patch (row-major), for forward_eval."""
        w, b, n = self.conv.weight, self.conv.bias, self.cout
        return [EvalConv(w[i * n:(i + 1) * n], b[i * n:(i + 1) * n], (1, 1), relu=False, prepack=prepack)
                for i in range(self.grid * self.grid)]

    def forward_eval(self, x, convs: list[EvalConv], out=None):
        """Eval on the CPU, x channels-last: the same numbers without moving patches into channels. The batch
        norm (running statistics: an affine map per patch and channel) and ReLU in one pass over the image, then
        one ordinary convolution per patch (`convs`, from eval_convs), written into its place in `out` (oneDNN
        runs these far faster than the 64-group convolution, and the image never changes layout)."""
        b, c, h, w = x.shape
        k, ph, pw = self.grid, h // self.grid, w // self.grid
        bn = self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale

        def per_pixel(v):  # (k·k·c,) in (patch row, patch column, channel) order -> (1, c, h, w)
            v = v.view(k, k, c).permute(2, 0, 1)[:, :, None, :, None].expand(c, k, ph, k, pw)
            return v.reshape(1, c, h, w).contiguous(memory_format=torch.channels_last)

        y = torch.empty_like(x, memory_format=torch.channels_last)
        torch.addcmul(per_pixel(shift), x, per_pixel(scale), out=y).relu_()
        if out is None:
            out = x.new_empty((b, self.cout, h, w)).contiguous(memory_format=torch.channels_last)
        for i in range(k):
            for j in range(k):
                rows, cols = slice(i * ph, (i + 1) * ph), slice(j * pw, (j + 1) * pw)
                out[:, :, rows, cols] = convs[i * k + j](y[:, :, rows, cols])
        return out


class RegionLayer(nn.Module):
    """3×3 conv, then patch convs on 8×8, 4×4, 2×2 grids in cascade (out/2, out/4, out/4 channels),
    concatenated and added to the conv output, then BN + ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.p8 = PatchConv(8, cout, cout // 2)
        self.p4 = PatchConv(4, cout // 2, cout // 4)
        self.p2 = PatchConv(2, cout // 4, cout - cout // 2 - cout // 4)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = self.conv(x)
        a = self.p8(x)
        b = self.p4(a)
        c = self.p2(b)
        return F.relu(self.bn(x + torch.cat([a, b, c], 1)))

    def eval_convs(self, prepack: bool = True) -> dict:
        """The EvalConvs forward_eval runs: the layer's own convolution and each patch layer's."""
        c = self.conv
        return {"conv": EvalConv(c.weight, c.bias, c.padding, relu=False, prepack=prepack),
                "p8": self.p8.eval_convs(prepack), "p4": self.p4.eval_convs(prepack), "p2": self.p2.eval_convs(prepack)}

    def forward_eval(self, x, convs: dict):
        """forward() in eval on the CPU for a channels-last x (PatchConv.forward_eval; `convs` from eval_convs);
        the same numbers."""
        x = convs["conv"](x)
        cat = torch.empty_like(x, memory_format=torch.channels_last)  # the three patch outputs, written in place
        c8, c4 = self.p8.cout, self.p4.cout
        a = self.p8.forward_eval(x, convs["p8"], out=cat[:, :c8])
        b = self.p4.forward_eval(a, convs["p4"], out=cat[:, c8:c8 + c4])
        self.p2.forward_eval(b, convs["p2"], out=cat[:, c8 + c4:])
        return F.relu_(self.bn(cat.add_(x)))


def _folded(seq: nn.Sequential, prepack: bool = True) -> list[list]:
    """An eval-mode conv-BN-ReLU / max-pool / sigmoid stack of G groups (grouped convolutions) as G programs, one
    per group, for run_program: EvalConv (each batch norm folded into the convolution before it, the ReLU after it
    fused), "pool" and "sigmoid"."""
    steps, mods, i = [], list(seq), 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Conv2d):
            w, b = m.weight, m.bias
            if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
                bn = mods[i + 1]
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                w, b = w * scale[:, None, None, None], (b - bn.running_mean) * scale + bn.bias
                i += 1
            relu = i + 1 < len(mods) and isinstance(mods[i + 1], nn.ReLU)
            steps.append((w, b, m.padding, m.groups, relu))
            i += 1 + relu
        elif isinstance(m, nn.MaxPool2d):
            steps.append("pool")
            i += 1
        elif isinstance(m, nn.Sigmoid):
            steps.append("sigmoid")
            i += 1
        else:
            raise TypeError(f"_folded: unexpected layer {type(m).__name__}")
    groups = {s[3] for s in steps if isinstance(s, tuple)}.pop()

    def group(g: int) -> list:
        prog = []
        for step in steps:
            if isinstance(step, str):
                prog.append(step)
            else:
                w, b, pad, _, relu = step
                n = w.shape[0] // groups
                prog.append(EvalConv(w[g * n:(g + 1) * n], b[g * n:(g + 1) * n], pad, relu, prepack))
        return prog

    return [group(g) for g in range(groups)]


def run_program(program: list, x: torch.Tensor) -> torch.Tensor:
    """One group's folded stack (from _folded) on its own input x (B, C_in per group, H, W)."""
    for step in program:
        if step == "pool":
            x = F.max_pool2d(x, 2)
        elif step == "sigmoid":
            x = torch.sigmoid(x)
        else:
            x = step(x)
    return x


def refine_where_nonzero(program: list, pre: torch.Tensor) -> torch.Tensor:
    """One AU's folded refine stack (unpadded convs: (B, 1, M, M) -> (B, 1, m, m)) computed only where the
    predefined map can reach: the map is exactly 0 outside its AU's boxes, so every output whose (M − m + 1)²
    receptive field holds only zeros is the same number, the stack's answer to an all-zero input. That number
    fills the rest. Same result as the whole map (to float summation order); on the paper's 52-cell maps the
    boxes reach about 40 % of the outputs (bench/bench_detectors.py)."""
    b, _, M, _ = pre.shape
    m = _out_size(program, M)
    k = M - m  # receptive field − 1
    const = run_program(program, pre.new_zeros(1, 1, k + 1, k + 1))  # (1, 1, 1, 1)
    out = const.expand(b, 1, m, m).clone()
    nz = pre.ne(0).any(0)[0]  # (M, M): any frame of the batch
    rows, cols = nz.any(1).nonzero().flatten(), nz.any(0).nonzero().flatten()
    if len(rows) == 0:
        return out
    r0, r1 = max(int(rows[0]) - k, 0), min(int(rows[-1]), m - 1)  # outputs whose field meets the boxes
    c0, c1 = max(int(cols[0]) - k, 0), min(int(cols[-1]), m - 1)
    part = pre[:, :, r0:r1 + k + 1, c0:c1 + k + 1].contiguous(memory_format=torch.channels_last)
    out[:, :, r0:r1 + 1, c0:c1 + 1] = run_program(program, part)
    return out


def _out_size(program: list, size: int) -> int:
    """Side of a folded conv stack's output for a size² input (an unpadded 3×3 conv shrinks it by 2)."""
    for step in program:
        if isinstance(step, EvalConv):
            size = size + 2 * step.padding[0] - (step.weight.shape[-1] - 1)
    return size


def feature_stack(cin: int, unit: int, groups: int = 1) -> nn.Sequential:
    """Three stages of two 3×3 conv-BN-ReLU and a 2× max-pool (12, 16, 20 × unit channels, per group)."""
    layers, c = [], cin
    for width in (12 * unit, 16 * unit, 20 * unit):
        for _ in range(2):
            layers += [nn.Conv2d(c * groups, width * groups, 3, padding=1, groups=groups),
                       nn.BatchNorm2d(width * groups), nn.ReLU(inplace=True)]
            c = width
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class JaaNet(nn.Module):
    def __init__(self, crop: int = 176, unit: int = 8, n_aus: int = N_AUS, regions: str = "wide"):
        super().__init__()
        if crop % 16 or crop < 48:
            raise ValueError(f"JaaNet: crop {crop} must be a multiple of 16 and ≥ 48 (8×8 patch grids at full and "
                             f"half size; three 2× pools after the region layers)")
        self.crop, self.unit, self.n_aus, self.regions = crop, unit, n_aus, regions
        self.map_size = crop // 4  # region features and refined attention maps
        s = self.map_size // 2 // 2 // 2  # after a feature stack (floor at each pool: 44 -> 5)
        feat = 20 * unit * s * s
        self.region = nn.Sequential(RegionLayer(3, 4 * unit), nn.MaxPool2d(2), RegionLayer(4 * unit, 8 * unit),
                                    nn.MaxPool2d(2))
        self.align = feature_stack(8 * unit, unit)
        self.align_out = nn.Sequential(nn.Linear(feat, 64 * unit), nn.Linear(64 * unit, 2 * N_POINTS))
        r = 8 * unit
        self.refine = nn.Sequential(  # per AU (groups = n_aus), unpadded: (map+8)² -> map²
            nn.Conv2d(n_aus, n_aus * r, 3, groups=n_aus), nn.BatchNorm2d(n_aus * r), nn.ReLU(inplace=True),
            nn.Conv2d(n_aus * r, n_aus * r, 3, groups=n_aus), nn.BatchNorm2d(n_aus * r), nn.ReLU(inplace=True),
            nn.Conv2d(n_aus * r, n_aus * r, 3, groups=n_aus), nn.BatchNorm2d(n_aus * r), nn.ReLU(inplace=True),
            nn.Conv2d(n_aus * r, n_aus, 3, groups=n_aus), nn.Sigmoid())
        self.local = feature_stack(8 * unit, unit, groups=n_aus)
        self.glob = feature_stack(8 * unit, unit)
        self.au_head = nn.Sequential(nn.Linear(3 * feat, 64 * unit), nn.Linear(64 * unit, 2 * n_aus))
        self.au_loop: bool | None = None  # per-AU stacks one AU at a time; None = in eval mode on the CPU
        self.refine_crop = True  # the per-AU loop's refine runs only where the maps reach (refine_where_nonzero)
        self.prepack = True  # the CPU path's convolutions with weights in oneDNN's layout, ReLU fused (EvalConv)
        self._eval_cache: tuple | None = None  # (weights key, programs) of the CPU path, see _eval_programs

    def _loop(self, x: torch.Tensor) -> bool:
        return (not self.training and x.device.type == "cpu") if self.au_loop is None else self.au_loop

    def init_landmarks(self, mean_lm49: np.ndarray):
        """Start the alignment output at the training set's mean shape (a short CPU run then begins with usable
        attention maps instead of maps drawn from random points)."""
        last = self.align_out[-1]
        with torch.no_grad():
            last.weight.mul_(0.01)
            last.bias.copy_(torch.as_tensor(np.asarray(mean_lm49, np.float32).reshape(-1)))

    def __getstate__(self):  # copies and pickles leave the CPU path's cache out (oneDNN tensors do neither)
        state = self.__dict__.copy()
        state["_eval_cache"] = None
        return state

    def _eval_programs(self) -> dict:
        """The CPU path's convolutions (batch norms folded, EvalConv), built once per set of weights: rebuilt when
        any parameter or buffer changes (_weights_key) or `prepack` is switched."""
        key = (self.prepack, _weights_key(self))
        if self._eval_cache is None or self._eval_cache[0] != key:
            with torch.no_grad():
                programs = {name: _folded(getattr(self, name), self.prepack)
                            for name in ("align", "glob", "refine", "local")}
                programs["region"] = [layer.eval_convs(self.prepack) if isinstance(layer, RegionLayer) else None
                                      for layer in self.region]
            self._eval_cache = (key, programs)
        return self._eval_cache[1]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x (B, 3, crop, crop) in [-1, 1] -> dict: au_logp (B, 2, A), landmarks (B, 49, 2), maps (B, A, m+8, m+8)
        predefined, refined (B, A, m, m)."""
        b = x.shape[0]
        loop = self._loop(x)
        if loop and self.training:
            raise RuntimeError("JaaNet: the per-AU loop folds batch norms, so it runs in eval mode only")
        programs = self._eval_programs() if loop else {}
        if loop:  # the eval CPU path: channels-last throughout, region layers patch by patch, batch norms folded
            feat = x.contiguous(memory_format=torch.channels_last)
            for layer, convs in zip(self.region, programs["region"]):
                feat = layer.forward_eval(feat, convs) if isinstance(layer, RegionLayer) else layer(feat)
            feat = feat.contiguous(memory_format=torch.channels_last)
        else:
            feat = self.region(x)
        align_feat = run_program(programs["align"][0], feat) if loop else self.align(feat)
        with torch.autocast(x.device.type, enabled=False):  # landmarks and AU logits in float32 under autocast
            lm = self.align_out(align_feat.float().flatten(1)).view(b, N_POINTS, 2)
        m = self.map_size
        # Maps are drawn at (m+8)² around the same centre so the unpadded refine convs return m²:
        # a (m+8)-px map over a crop scaled by (m+8)/m; shift landmarks by 4 map px = 4·crop/m crop px.
        pad = 4 * self.crop / m
        pre = predefined_maps(lm.detach().float().cpu().numpy() + pad, self.crop + 2 * pad, m + 8, self.regions)
        pre = torch.from_numpy(pre).to(x.device)
        if loop:
            refined, local = self._per_au_loop(feat, pre, programs["refine"], programs["local"])
        else:
            refined = self.refine(pre)
            local_in = (feat.unsqueeze(1) * refined.unsqueeze(2)).flatten(1, 2)  # (B, A·C, m, m)
            local = self.local(local_in)
            local = local.view(b, self.n_aus, -1, *local.shape[2:]).mean(1)
        glob = run_program(programs["glob"][0], feat) if loop else self.glob(feat)
        z = torch.cat([align_feat.flatten(1), glob.flatten(1), local.flatten(1)], 1)
        with torch.autocast(x.device.type, enabled=False):
            logits = self.au_head(z.float()).view(b, 2, self.n_aus)
        return {"au_logp": F.log_softmax(logits, 1), "landmarks": lm, "maps": pre, "refined": refined}

    def _per_au_loop(self, feat: torch.Tensor, pre: torch.Tensor, refine: list, local: list
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """refine and local one AU at a time (eval: batch norms folded with their running statistics; `refine`
        and `local` are the per-AU programs of _folded)."""
        refined, total = [], None
        for g in range(self.n_aus):
            if self.refine_crop:
                r = refine_where_nonzero(refine[g], pre[:, g:g + 1])
            else:
                r = run_program(refine[g], pre[:, g:g + 1].contiguous(memory_format=torch.channels_last))
            refined.append(r)
            out = run_program(local[g], feat * r)
            total = out.float() if total is None else total.add_(out)  # summed in float32 (also under autocast)
        return torch.cat(refined, 1).contiguous(), (total / self.n_aus).contiguous()
