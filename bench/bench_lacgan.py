"""LAC-GAN speed and memory: generation frames/s (12 CARGs batched vs one AU at a time) and training step time.

    python bench/bench_lacgan.py [--store STORE.zarr] [--device cpu|cuda] [--quick]

Each measurement runs in its own subprocess so that peak memory is its own: torch.cuda.max_memory_allocated on
CUDA, the process's max RSS (getrusage) on the CPU. Faces come from --store when given (its size must match the
preset's; otherwise they are drawn by tests/test_lacgan_helpers.py's synthetic face generator, which only
matters for the region windows). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def _faces(n: int, size: int, store: str | None):
    import numpy as np

    if store:
        from manifests.aligned import AlignedStore

        s = AlignedStore.open(store)
        if s.size == size:
            rows = s.ok_rows()[:n]
            imgs, lm, labels = s.read(rows)
            reps = -(-n // len(rows))
            return (np.concatenate([imgs] * reps)[:n], np.concatenate([lm] * reps)[:n],
                    np.concatenate([labels] * reps)[:n])
    from test_lacgan_helpers import faces

    return faces(n, size, seed=0)


def _peak(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB


def one(kind: str, preset_name: str, mode: str, store: str | None, device_name: str, quick: bool) -> dict:
    import numpy as np
    import torch

    from lacgan.config import preset
    from lacgan.data import fit_to_faces
    from lacgan.device import pick_device
    from lacgan.networks import build_models

    device = pick_device(device_name)
    cfg = preset(preset_name)
    size = cfg.net.size
    n = 16 if quick else 32
    imgs, lm, labels = _faces(n, size, store)
    cfg = fit_to_faces(cfg, lm)
    models = build_models(cfg.net).to(device)
    if kind == "gen":
        from lacgan.infer import generate

        G = models.G.eval()
        targets = np.random.default_rng(0).integers(0, 2, labels.shape).astype(np.int8)
        loop = mode == "loop"
        generate(G, cfg.net, imgs[:4], lm[:4], targets[:4], device, labels[:4], loop=loop)  # warm-up
        reps = 1 if quick else 2
        t = time.perf_counter()
        for _ in range(reps):
            generate(G, cfg.net, imgs, lm, targets, device, labels, batch_size=16, loop=loop)
        dt = time.perf_counter() - t
        return {"value": reps * n / dt, "unit": "frames/s", "window": cfg.net.window, "mem": _peak(device)}
    # training step time
    from lacgan.data import sample_targets, to_batch
    from lacgan.losses import LacganLoss, identity_features

    bs = min(cfg.train.batch_size, 8 if preset_name == "paper" else cfg.train.batch_size)
    feats = None
    if mode == "id":
        from lacgan.identity import load_dlib_face_net

        feats = identity_features(load_dlib_face_net(device=device))
    loss = LacganLoss(models, cfg.loss, feats, cfg.net)
    opts = {k: torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.9)) for k, m in models.named().items()}
    rng = np.random.default_rng(0)
    steps = 2 if (quick or preset_name == "paper") else 5
    times = []
    for s in range(steps + 1):
        idx = rng.integers(0, len(imgs), bs)
        b = to_batch(imgs[idx], lm[idx], labels[idx], sample_targets(labels[idx], rng, 0.5), cfg.net, device)
        t = time.perf_counter()
        g = loss.generate(b)
        for phase in loss.phases():
            opts[phase].zero_grad(set_to_none=True)
            total, _ = loss.phase(phase, b, g)
            total.backward()
            opts[phase].step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if s > 0:  # the first step warms up
            times.append(time.perf_counter() - t)
    return {"value": float(np.median(times)), "unit": f"s/step (batch {bs})", "window": cfg.net.window,
            "mem": _peak(device)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", help="aligned store to take faces from (when its size matches a preset)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--only", help="comma-separated KIND:PRESET:MODE jobs, e.g. train:paper:no-id")
    ap.add_argument("--one", nargs=3, metavar=("KIND", "PRESET", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(*a.one, a.store, a.device, a.quick)))
        return 0
    jobs = [("gen", p, m) for p in ("demo", "paper") for m in ("batched", "loop")]
    jobs += [("train", p, "no-id") for p in ("smoke", "demo", "paper")] + [("train", "demo", "id")]
    if a.only:
        jobs = [tuple(j.split(":")) for j in a.only.split(",")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(f"LAC-GAN bench, device {a.device}, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| what | preset | size | window | mode | result | peak mem (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for kind, p, mode in jobs:
        cmd = [sys.executable, __file__, "--one", kind, p, mode, "--device", a.device]
        cmd += ["--store", a.store] if a.store else []
        cmd += ["--quick"] if a.quick else []
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            print(f"| {kind} | {p} | | | {mode} | failed: {r.stderr.strip().splitlines()[-1]} | |")
            continue
        res = json.loads(r.stdout.strip().splitlines()[-1])
        from lacgan.config import preset

        what = "generation" if kind == "gen" else "training step"
        print(f"| {what} | {p} | {preset(p).net.size} | {tuple(res['window'])} | {mode} | "
              f"{res['value']:.3g} {res['unit']} | {res['mem']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
