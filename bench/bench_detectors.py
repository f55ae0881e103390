"""Frames per second of each detector's scoring (`Detector.score`), printed as a Markdown table.

    python bench/bench_detectors.py [--store STORE.zarr] [--frames 256] [--jaanet DIR] [--hogsvm DIR]

Without --store, random 128-px frames are scored. Without trained weights the trainable detectors run with
freshly initialised ones (same arithmetic, so the same speed; the table says so). OpenFace is timed only when a
FeatureExtraction binary is configured (--openface-bin, $OPENFACE_FEATURE_EXTRACTION or PATH); otherwise its row
says "not installed".
"""

from __future__ import annotations

import argparse
import time

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
    from detectors.jaanet.train import PRESETS

    if weights:
        return JaaNetDetector.load(weights), "trained"
    cfg = PRESETS["cpu"]
    return JaaNetDetector(JaaNet(crop=cfg.crop, unit=cfg.unit), cfg, {}), "fresh weights (cpu preset)"


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=None)
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--size", type=int, default=128, help="frame size when no store is given")
    ap.add_argument("--jaanet", default=None, help="trained JAA-Net weights folder")
    ap.add_argument("--hogsvm", default=None, help="trained HOG+SVM weights folder")
    ap.add_argument("--openface-bin", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
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
