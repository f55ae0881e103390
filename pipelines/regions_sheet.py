"""A PNG that lets a person check the 12 AU attention maps: one labelled panel per AU, each a mosaic of several
aligned faces (different subjects where the manifest says so) with that AU's map overlaid in red, its two
centres marked and its crop box outlined."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from lacgan.atomic import replacing
from lacgan.regions import attention_maps, au_centres, region_boxes
from manifests.aligned import AlignedStore, StoreError
from manifests.aus import AU_NAMES, AUS

log = logging.getLogger(__name__)

TINT = np.array([255.0, 40.0, 40.0])  # region colour
CENTRE = np.array([40, 230, 255], np.uint8)  # centre marks
BOX = np.array([255, 230, 0], np.uint8)  # crop box outline


def pick_rows(store: AlignedStore, n: int) -> np.ndarray:
    """n aligned rows, one per subject in turn (middle frame of each subject's aligned rows) when the store's
    manifest is readable, else evenly spaced."""
    ok = store.ok_rows()
    if len(ok) == 0:
        raise StoreError(f"{store.path}: no aligned faces (status OK) to draw")
    try:
        from manifests.schema import read_manifest

        subjects = read_manifest(store.group.attrs["manifest"])["subject"].to_numpy()[ok]
    except Exception as e:  # the sheet still works from the store alone
        log.warning("%s: manifest unreadable (%s); picking evenly spaced faces", store.path, e)
        return ok[np.linspace(0, len(ok) - 1, min(n, len(ok))).round().astype(int)]
    per_subject = [ok[subjects == s] for s in dict.fromkeys(subjects)]
    rows, k = [], 0
    while len(rows) < min(n, len(ok)):
        rows_s = per_subject[k % len(per_subject)]
        j = len(rows_s) // 2 + (k // len(per_subject)) * max(1, len(rows_s) // 4)
        rows.append(rows_s[j % len(rows_s)])
        k += 1
    return np.array(rows)


def overlay(face: np.ndarray, amap: np.ndarray, centres: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 face with a map (S, S) in [0, 1] tinted in, centres (2, 2) marked, box (4,) outlined."""
    a = amap[..., None].astype(np.float64)
    out = face.astype(np.float64) * (0.45 + 0.55 * a)  # dim outside the region
    out = (1 - 0.45 * a) * out + 0.45 * a * TINT
    out = out.clip(0, 255).astype(np.uint8)
    s = face.shape[0]
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 > x0 and y1 > y0:
        out[y0:y1, [x0, x1 - 1]] = BOX
        out[[y0, y1 - 1], x0:x1] = BOX
    r = max(1, s // 64)
    for x, y in np.round(centres).astype(int):
        if 0 <= x < s and 0 <= y < s:
            out[max(y - r, 0):y + r + 1, max(x - r, 0):x + r + 1] = CENTRE
    return out


def mosaic(tiles: list[np.ndarray], cols: int) -> np.ndarray:
    s = tiles[0].shape[0]
    rows = math.ceil(len(tiles) / cols)
    out = np.full((rows * s, cols * s, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * s:(r + 1) * s, c * s:(c + 1) * s] = t
    return out


def write_regions_sheet(store_path, out_png, n: int = 6) -> Path:
    """Write the sheet for `n` faces of the aligned store; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    store = AlignedStore.open(store_path)
    rows = pick_rows(store, n)
    images, landmarks, _ = store.read(rows)
    s = store.size
    maps = attention_maps(landmarks, s)
    centres, boxes = au_centres(landmarks), region_boxes(landmarks, s)
    cols = min(3, len(rows))
    panels = [mosaic([overlay(images[k], maps[k, i], centres[k, i], boxes[k, i]) for k in range(len(rows))], cols)
              for i in range(len(AUS))]
    ph, pw = panels[0].shape[:2]
    fig_w = 4 * pw / 100 * 1.05
    fig, axes = plt.subplots(3, 4, figsize=(max(fig_w, 8), max(3 * ph / 100 * 1.15 + 0.6, 5)), dpi=100)
    for ax, panel, au in zip(axes.flat, panels, AUS):
        ax.imshow(panel, interpolation="nearest")
        ax.set_title(f"AU{au} {AU_NAMES[au]}", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"AU attention maps on {len(rows)} aligned faces ({store.path.name}, {s}px; red: map, "
                 f"cyan: centres, yellow: crop box)", fontsize=10)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
