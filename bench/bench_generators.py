"""Generation speed of LAC-GAN and GANimation side by side, in one process: frames/s and their ratios.

    python bench/bench_generators.py [--store STORE.zarr] [--device cpu|cuda] [--batch 8] [--frames 16] [--reps 3]

For each setting (64 px with the demo presets, 64 px with the paper widths, 200 px with the paper presets) the
generators are built with fresh weights (speed does not depend on training) and timed in interleaved rounds
(A B C D, A B C D, ...) so that a shared machine's load falls on all of them alike; the median round is reported.
Each call goes through the library's own batched edit function (lacgan.infer.generate with the grouped or the
per-AU loop path, lacgan.ganimation.infer.generate), uint8 in and out. Targets are random 0/1 for all 12 AUs;
the "GANimation, −1 targets" column asks for one AU and leaves the rest −1, so its critic reads the source too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

SETTINGS = (  # (label, LAC-GAN preset, GANimation preset, size)
    ("64 px, demo presets", "demo", "demo", 64),
    ("64 px, paper widths", "paper", "paper", 64),
    ("200 px, paper presets", "paper", "paper", 200),
)
METHODS = ("LAC-GAN grouped", "LAC-GAN per-AU loop", "GANimation", "GANimation, −1 targets")


def _editors(lac_preset: str, gan_preset: str, size: int, landmarks: np.ndarray, device, batch: int):
    """{method: fn(images, landmarks, targets) -> uint8} for one setting."""
    from lacgan import infer as lac_infer
    from lacgan.compose import fit_window
    from lacgan.config import preset as lac_config
    from lacgan.data import fit_to_faces
    from lacgan.ganimation import infer as gan_infer
    from lacgan.ganimation.config import preset as gan_config
    from lacgan.ganimation.networks import build_models as build_gan
    from lacgan.networks import build_models as build_lac

    lc = fit_to_faces(lac_config(lac_preset).replace(net={"size": size, "window": fit_window(landmarks, size)}),
                      landmarks)
    G = build_lac(lc.net).G.to(device).eval()
    gc = gan_config(gan_preset).replace(net={"size": size})
    gan = build_gan(gc.net).to(device).eval()
    return {
        METHODS[0]: lambda im, lm, t: lac_infer.generate(G, im, lm, t, size, device, batch),
        METHODS[1]: lambda im, lm, t: lac_infer.generate(G, im, lm, t, size, device, batch, loop=True),
        METHODS[2]: lambda im, lm, t: gan_infer.generate(gan, im, t, device, batch),
        METHODS[3]: lambda im, lm, t: gan_infer.generate(gan, im, _single_au(t), device, batch),
    }, lc.net.window


def _single_au(t: np.ndarray) -> np.ndarray:
    one = np.full_like(t, -1)
    one[np.arange(len(t)), np.arange(len(t)) % t.shape[1]] = 1
    return one


def measure(setting, store, device, batch: int, frames: int, reps: int) -> dict[str, float]:
    from bench_lacgan import _faces

    label, lac_preset, gan_preset, size = setting
    imgs, lm, labels = _faces(frames, size, store)
    targets = np.random.default_rng(0).integers(0, 2, labels.shape).astype(np.int8)
    fns, window = _editors(lac_preset, gan_preset, size, lm, device, batch)
    for fn in fns.values():  # warm-up
        fn(imgs[:batch], lm[:batch], targets[:batch])
    times: dict[str, list[float]] = {m: [] for m in fns}
    for _ in range(reps):
        for m, fn in fns.items():
            t0 = time.perf_counter()
            fn(imgs, lm, targets)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[m].append(time.perf_counter() - t0)
    return {m: frames / float(np.median(ts)) for m, ts in times.items()} | {"window": window}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", help="aligned store to take faces from (when its size matches a setting)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8, help="frames per generator call")
    ap.add_argument("--frames", type=int, default=16, help="frames per timed round")
    ap.add_argument("--reps", type=int, default=3, help="timed rounds per method (median reported)")
    a = ap.parse_args()
    from lacgan.device import pick_device

    device = pick_device(a.device)
    torch.set_grad_enabled(False)
    print(f"generator bench, device {device}, torch threads {torch.get_num_threads()}, batch {a.batch}, "
          f"{a.frames} frames x {a.reps} rounds, load average {os.getloadavg()[0]:.1f}\n")
    print("| setting | LAC-GAN window | " + " | ".join(f"{m} (frames/s)" for m in METHODS)
          + " | grouped / GANimation | loop / GANimation |")
    print("|---" * (len(METHODS) + 4) + "|")
    for setting in SETTINGS:
        r = measure(setting, a.store, device, a.batch, a.frames, a.reps)
        g = r["GANimation"]
        print(f"| {setting[0]} | {tuple(r['window'])} | " + " | ".join(f"{r[m]:.2f}" for m in METHODS)
              + f" | {r[METHODS[0]] / g:.2f}x | {r[METHODS[1]] / g:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
