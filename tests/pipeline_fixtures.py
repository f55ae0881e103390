"""Small hand-made aligned stores for the pipeline tests (planning, generation, reports).

Unlike the session fixture `aligned_store` (the embedded cohort, aligned), these are built directly from
arrays in well under a second, so a test can choose subjects, folds, labels and failed rows exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from manifests.aligned import AlignedStore
from manifests.aus import AU_COLUMNS
from manifests.schema import write_manifest


def canonical_landmarks(size: int) -> np.ndarray:
    """68 plausible iBUG points for a frontal face filling an S×S crop (enough for the AU region rules)."""
    s = size / 64.0
    pts = np.zeros((68, 2), np.float32)
    pts[0:17] = np.stack([np.linspace(8, 56, 17), 30 + 24 * np.sin(np.linspace(0, np.pi, 17))], 1)  # jaw
    pts[17:22] = np.stack([np.linspace(14, 28, 5), np.full(5, 20)], 1)  # right brow
    pts[22:27] = np.stack([np.linspace(36, 50, 5), np.full(5, 20)], 1)  # left brow
    pts[27:36] = np.stack([np.full(9, 32), np.linspace(24, 40, 9)], 1)  # nose
    pts[36:42] = np.stack([np.linspace(17, 27, 6), np.full(6, 26)], 1)  # right eye
    pts[42:48] = np.stack([np.linspace(37, 47, 6), np.full(6, 26)], 1)  # left eye
    pts[48:60] = np.stack([22 + 10 * np.cos(np.linspace(np.pi, -np.pi, 12)),
                           47 + 3 * np.sin(np.linspace(np.pi, -np.pi, 12))], 1)  # outer lip
    pts[60:68] = np.stack([24 + np.linspace(0, 16, 8), np.full(8, 47)], 1)  # inner lip
    pts[48], pts[54] = (22, 47), (42, 47)
    pts[51], pts[57] = (32, 44), (32, 50)
    pts[50], pts[52] = (28, 44), (36, 44)
    pts[56], pts[58] = (36, 50), (28, 50)
    return pts * s


def make_store(tmp_path, subjects=("F001", "F002", "M001", "M002", "M003", "F003"), frames=8, size=32,
               failed=(), seed=0, chunk=16, jitter=0.0):
    """Manifest + aligned store: `frames` frames per subject, folds 1,2,3 by subject position, random labels
    (some -1). Rows in `failed` are marked FAILED. `jitter` moves each frame's landmarks by that fraction of the
    crop (normal noise), so region windows vary as on real faces. Returns the store path."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, subj in enumerate(subjects):
        for f in range(frames):
            rows.append(dict(dataset="bp4d", subject=subj, task=f"T{1 + f % 2}", frame=f,
                             image_path=f"{subj}/T{1 + f % 2}/{f}.jpg", fold=1 + i % 3, status="ok"))
    df = pd.DataFrame(rows)
    labels = rng.integers(0, 2, size=(len(df), 12)).astype(np.int8)
    labels[rng.random(labels.shape) < 0.1] = -1
    for j, c in enumerate(AU_COLUMNS):
        df[c] = labels[:, j]
    df.insert(0, "row_id", np.arange(len(df)))
    manifest = tmp_path / "manifest.parquet"
    write_manifest(df, manifest, root=tmp_path)
    path = tmp_path / "aligned.zarr"
    store = AlignedStore.create(path, len(df), size, chunk=chunk, attrs={"manifest": str(manifest)})
    store.group["row_id"][:] = np.arange(len(df))
    store.group["labels"][:] = labels
    store.group["fold"][:] = df["fold"].to_numpy()
    lm = np.broadcast_to(canonical_landmarks(size), (len(df), 68, 2))
    if jitter:
        lm = (lm + rng.normal(0, jitter * size, lm.shape)).astype(np.float32)
    images = rng.integers(0, 256, size=(len(df), size, size, 3), dtype=np.uint8)
    for start in range(0, len(df), chunk):
        stop = min(start + chunk, len(df))
        store.write_chunk(start, images[start:stop], lm[start:stop],
                          {r: "test: marked failed" for r in failed if start <= r < stop})
    return path


def train_smoke_lacgan(store, out) -> str:
    """A real LAC-GAN run directory from the `smoke` preset (20 steps, ~10 s): for tests of the real Editor path."""
    from flows.cli import main

    rc = main(["train", "--store", str(store), "--out", str(out), "--preset", "smoke", "--identity", "none",
               "--no-progress"])
    assert rc == 0
    return str(out)


def make_synthetic(tmp_path, size: int = 32, frames: int = 10):
    """A hand-made store and its match-test synthetic set made by the TEST STAND-IN editor (standin_editor), in
    about a second: for tests of scoring. Returns (store path, synthetic output folder)."""
    from pipelines.generate import GenerateConfig, generate
    from pipelines.plan import PlanConfig, build_plan
    from standin_editor import write_checkpoint

    store = make_store(tmp_path, size=size, frames=frames)
    plan = build_plan(store, tmp_path / "plan.parquet", PlanConfig(policy="match-test", test_fold=3))
    generate(plan, store, write_checkpoint(tmp_path / "ck", size), tmp_path / "synth",
             GenerateConfig(frames_per_shard=8, workers=0, editor="standin_editor:StandInEditor"))
    return store, tmp_path / "synth"
