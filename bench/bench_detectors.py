"""Frames per second of each detector's scoring (`Detector.score`), printed as a Markdown table; JAA-Net's
network against the public PyTorch-JAANet v1 modules at the paper's size, side by side; and one JAA-Net training
step in both memory layouts (training uses channels-last on the CPU).

    python bench/bench_detectors.py [--store STORE.zarr] [--frames 256] [--jaanet DIR] [--hogsvm DIR]
    python bench/bench_detectors.py --only reference --reference PATH   # PATH: a fetched PyTorch-JAANet copy
    python bench/bench_detectors.py --only training   # one JAA-Net training step, contiguous vs channels-last

Without --store, random 128-px frames are scored. Without trained weights the trainable detectors run with
freshly initialised ones (same arithmetic, so the same speed; the table says so). OpenFace is timed only when a
FeatureExtraction binary is configured (--openface-bin, $OPENFACE_FEATURE_EXTRACTION or PATH); otherwise its row
says "not installed".

The reference comparison (176² crops, batch 8, eval, no_grad, same random input, fresh weights: speed does not
depend on them, except through where our landmark output puts the attention maps, so ours start at an aligned
neutral face, as training starts them) times our `JaaNet` on its CPU path (per-AU loop), on its grouped path, and the reference's
v1 forward (HMRegionLearning, AlignNet, LocalAttentionRefine, LocalAUNetv1, HLFeatExtractor, AUNet, wired as its
`AU_detection_evalv1`), repetitions interleaved, each timed call right after an untimed one of the same network
(interleaved networks evict each other's oneDNN kernels, which made a first call ~3x slower), medians and best
runs reported; our CPU path with its refine stack on the whole maps (as before it ran only where the maps reach:
the same numbers, more work); our CPU path also under bfloat16 autocast (`JaaNetDetector(precision="bf16")`, not equal
arithmetic: a different precision). The reference's modules are built from its
`network.py` only when a copy is given (`--reference` = a checkout or a bare git directory); it is read and
run, never copied into this project. Without it that row says "not given".
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from detectors.frames import FrameSource


def _frames(store: str | None, n: int, size: int) -> FrameSource:
    if store:
        fs = FrameSource.from_store(store)
        return fs.subset(np.arange(min(n, len(fs))))
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    return FrameSource.from_arrays(imgs, sequences=(np.arange(n) // 32).astype(str))


def _jaanet(weights):
    from detectors.jaanet.detector import JaaNetDetector
    from detectors.jaanet.model import JaaNet
    from detectors.jaanet.config import PRESETS

    if weights:
        return JaaNetDetector.load(weights), "trained"
    cfg = PRESETS["cpu"]
    return JaaNetDetector(JaaNet(crop=cfg.crop, unit=cfg.unit, regions=cfg.regions), cfg, {}), "fresh weights (cpu preset)"


def _hogsvm(weights, dim_from: FrameSource):
    from detectors.hogsvm import PRESETS, HogSvmDetector, extract

    if weights:
        return HogSvmDetector.load(weights), "trained"
    cfg = PRESETS["cpu"]
    d = extract(dim_from.subset(np.arange(1)), cfg).shape[1]
    rng = np.random.default_rng(0)
    aus = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
    det = HogSvmDetector(cfg, aus, rng.normal(size=(12, d)).astype(np.float32), np.zeros(12, np.float32),
                         np.zeros(d, np.float32), np.ones(d, np.float32))
    return det, "random coefficients (cpu preset)"


def _openface(binary):
    from detectors.openface import OpenFaceDetector, OpenFaceNotFound

    try:
        return OpenFaceDetector.load(binary=binary), "installed"
    except OpenFaceNotFound:
        return None, "not installed"


def _reference_network(path: str):
    """The reference's network.py as a module, from a checkout or a bare git directory (never kept)."""
    src = Path(path) / "network.py"
    if src.exists():
        text = src.read_text()
    else:
        r = subprocess.run(["git", "--git-dir", str(path), "show", "HEAD:network.py"], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{path}: neither a checkout with network.py nor a git directory holding it")
        text = r.stdout
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "jaanet_reference_network.py"
        f.write_text(text)
        spec = importlib.util.spec_from_file_location("jaanet_reference_network", f)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    return mod


def _reference_forward(ref, crop: int, unit: int, n_aus: int = 12):
    """The reference's v1 evaluation forward (its util.AU_detection_evalv1 wiring) on fresh modules."""
    map_size = crop // 4
    feat = 20 * unit * (map_size // 8) ** 2
    mods = [ref.HMRegionLearning(input_dim=3, unit_dim=unit),
            ref.AlignNet(crop_size=crop, map_size=map_size, au_num=n_aus, land_num=49, input_dim=unit * 8,
                         unit_dim=unit),
            ref.LocalAttentionRefine(au_num=n_aus, unit_dim=unit),
            ref.LocalAUNetv1(au_num=n_aus, input_dim=unit * 8, unit_dim=unit),
            ref.HLFeatExtractor(input_dim=unit * 8, unit_dim=unit),
            ref.AUNet(au_num=n_aus, input_dim=3 * feat, unit_dim=unit)]
    for m in mods:
        m.eval()
    region, align, refine, local, glob, head = mods

    def forward(x):
        f = region(x)
        align_feat, _, maps = align(f)
        r = refine(maps)
        return head(torch.cat((align_feat, glob(f), local(f, r)), 1))

    return forward


def aligned_landmarks49(input_size: int, crop: int) -> np.ndarray:
    """(49, 2) points of the cohort's neutral face aligned as the pipeline aligns faces, in crop px: where a fresh
    network's landmarks start (JaaNet.init_landmarks), so its attention maps sit where a real face has its AUs
    (the CPU path's refine cost depends on where the maps are)."""
    from detectors.jaanet import data
    from detectors.jaanet.landmarks import to_49
    from manifests.cohort.geometry import template
    from pipelines.align import similarity_matrix, transform_points

    pts = template()
    lm = transform_points(similarity_matrix(pts, input_size), pts)
    return to_49(lm).astype(np.float32) - data.centre_offset(input_size, crop)


def jaanet_vs_reference(reference: str | None, crop: int = 176, unit: int = 8, batch: int = 8,
                        reps: int = 3) -> list[tuple[str, float, float]]:
    """[(name, median frames/s, best frames/s)]: our JaaNet (CPU path, grouped path, CPU path in bf16) and the
    reference, interleaved."""
    from detectors.jaanet.model import JaaNet

    torch.manual_seed(0)
    x = torch.randn(batch, 3, crop, crop)
    mean = aligned_landmarks49(round(crop / 0.88), crop)
    nets = {}
    for name in ("loop", "unpacked", "whole", "grouped"):
        nets[name] = JaaNet(crop=crop, unit=unit).eval()
        nets[name].init_landmarks(mean)  # as training starts it: attention maps where an aligned face has its AUs
    nets["unpacked"].prepack = False
    nets["whole"].refine_crop = False
    nets["grouped"].au_loop = False

    def bf16(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return nets["loop"](x)

    runs = {"ours (per-AU loop, CPU path)": nets["loop"],
            "ours (CPU path, F.conv2d instead of prepacked weights: before)": nets["unpacked"],
            "ours (CPU path, refine on the whole maps)": nets["whole"],
            "ours (grouped convolutions)": nets["grouped"], "ours (CPU path, bf16 autocast)": bf16}
    if reference:
        runs["PyTorch-JAANet v1 modules (reference)"] = _reference_forward(_reference_network(reference), crop, unit)
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.no_grad():
        for _ in range(reps):
            for k, f in runs.items():
                f(x)  # warm-up right before each timed call: the networks' oneDNN kernels evict each other
                t = time.perf_counter()
                f(x)
                times[k].append(time.perf_counter() - t)
    return [(k, batch / statistics.median(v), batch / min(v)) for k, v in times.items()]


def jaanet_training_step(preset: str = "demo", reps: int = 5) -> list[tuple[str, float, float]]:
    """[(layout, median s/step, best s/step)]: one JAA-Net training step (`train._train_step`: forward, the
    JAA-Net loss, backward, SGD) at a preset's sizes, the network in PyTorch's default (contiguous) layout and in
    channels-last (`train.training_layout`, what training uses on the CPU); same weights, same batch, repetitions
    interleaved."""
    from detectors.jaanet.config import PRESETS
    from detectors.jaanet.model import JaaNet
    from detectors.jaanet.train import _train_step, build_optimizer, training_layout

    cfg = PRESETS[preset]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (cfg.batch_size, cfg.crop, cfg.crop, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, (cfg.batch_size, 12))
    lm = np.repeat(aligned_landmarks49(cfg.input_size, cfg.crop)[None], cfg.batch_size, 0).astype(np.float32)
    w = torch.ones(12)
    runs, dev = {}, torch.device("cpu")
    for layout in ("contiguous", "channels-last"):
        torch.manual_seed(0)
        net = JaaNet(crop=cfg.crop, unit=cfg.unit, regions=cfg.regions)
        net.init_landmarks(lm[0])
        if layout == "channels-last":
            net = training_layout(net, dev)
        runs[layout] = (net.train(), build_optimizer(net, cfg))
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(reps):
        for k, (net, opt) in runs.items():
            _train_step(net, opt, x, labels, lm, w, cfg, dev)  # warm-up right before each timed call
            t = time.perf_counter()
            _train_step(net, opt, x, labels, lm, w, cfg, dev)
            times[k].append(time.perf_counter() - t)
    return [(k, statistics.median(v), min(v)) for k, v in times.items()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=None)
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--size", type=int, default=128, help="frame size when no store is given")
    ap.add_argument("--jaanet", default=None, help="trained JAA-Net weights folder")
    ap.add_argument("--hogsvm", default=None, help="trained HOG+SVM weights folder")
    ap.add_argument("--openface-bin", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--reference", default=None, help="a fetched PyTorch-JAANet copy (checkout or git dir)")
    ap.add_argument("--only", choices=("scoring", "reference", "training"), default=None,
                    help="run one of the three tables")
    ap.add_argument("--reps", type=int, default=3, help="reference comparison: interleaved repetitions")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.only in (None, "training"):
        rows = jaanet_training_step(reps=args.reps + 2)
        base = rows[0][1]
        print(f"JAA-Net training step, demo preset sizes, CPU, torch threads {torch.get_num_threads()}, "
              f"{args.reps + 2} interleaved repetitions")
        print("| layout | s/step (median) | vs contiguous | s/step (best) |\n|---|---|---|---|")
        for name, med, best in rows:
            print(f"| {name} | {med:.3f} | {med / base:.2f} | {best:.3f} |")
        if args.only == "training":
            return 0
        print()
    if args.only != "scoring":
        rows = jaanet_vs_reference(args.reference, reps=args.reps)
        ref = {name: (med, best) for name, med, best in rows}.get("PyTorch-JAANet v1 modules (reference)")
        print(f"JAA-Net network, 176² crops, batch 8, eval, CPU, torch threads {torch.get_num_threads()}, "
              f"{args.reps} interleaved repetitions; the machine may be shared (the best run is the least disturbed)")
        print("| network | frames/s (median) | vs reference | frames/s (best) | vs reference |\n|---|---|---|---|---|")
        for name, med, best in rows:
            print(f"| {name} | {med:.2f} | {f'{med / ref[0]:.2f}' if ref else '-'} | {best:.2f} | "
                  f"{f'{best / ref[1]:.2f}' if ref else '-'} |")
        if not ref:
            print("| PyTorch-JAANet v1 modules (reference) | not given (--reference PATH) | - | - | - |")
        if args.only == "reference":
            return 0
        print()
    frames = _frames(args.store, args.frames, args.size)
    rows = []
    for name, (det, note) in (("jaanet", _jaanet(args.jaanet)), ("hogsvm", _hogsvm(args.hogsvm, frames)),
                              ("openface", _openface(args.openface_bin))):
        if det is None:
            rows.append((name, note, "−", "−"))
            continue
        det.score(frames.subset(np.arange(min(8, len(frames)))))  # warm-up
        t = time.perf_counter()
        det.score(frames)
        dt = time.perf_counter() - t
        rows.append((name, note, f"{len(frames) / dt:.1f}", f"{dt:.2f}"))
    print(f"frames: {len(frames)} of {frames.size}×{frames.size} px ({args.store or 'random'}); "
          f"torch threads {torch.get_num_threads()}; device cpu unless CUDA is present for jaanet")
    print("| detector | weights | frames/s | seconds |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
