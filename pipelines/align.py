"""Similarity-align every manifest frame to an S×S crop, as JAA-Net preprocesses BP4D, into the aligned store.

The transform (JAA-Net's `face_transform`, re-derived):
1. rotate about the origin so the line from the right-eye centre (iBUG 36..41, image left) to the left-eye
   centre (42..47) is horizontal;
2. take the axis-aligned box of five rotated points: both eye centres, the nose tip (30), the mouth corners
   (48, 54); its longer side L, enlarged `enlarge` (2.9) times, becomes the crop's span S-1, and the box centre
   becomes the crop centre ((S-1)/2, (S-1)/2);
3. warp the image with that similarity (OpenCV warpAffine, bilinear, grey border as JAA-Net) and map the 68
   landmarks with the same matrix. Pixel centres are at integer coordinates throughout.

So the canonical places are: eyes level; the five-point box centred; its longer side (S-1)/2.9 ≈ 0.345·S. For a
typical face the eye centres are the box's widest points, so they land at x ≈ 0.328·S and 0.672·S (docs/data.md
gives the measured places on the cohort).

`align_manifest` writes the store of `manifests.aligned`: chunks of rows are the unit of work and of resumption,
failed rows (manifest status not ok, unreadable image, no face) are FAILED with the reason; the store's
failures.csv lists them all with their image paths.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import multiprocessing
import os
import shutil
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from lacgan.atomic import write_text
from manifests.aligned import AlignedStore, StoreError
from manifests.aus import AU_COLUMNS
from manifests.schema import STATUS_OK, manifest_root, read_manifest

log = logging.getLogger(__name__)

ENLARGE = 2.9  # JAA-Net's box_enlarge
BOX_POINTS = "eye centres (mean 36-41, 42-47), nose tip 30, mouth corners 48 54"
BORDER = (128, 128, 128)  # JAA-Net's border value
LANDMARK_SOURCES = ("auto", "cohort", "dlib")
FAILURE_LIST = "failures.csv"  # in the store: every failed row and its reason (write_failure_list)


# ---- the transform (pure) -------------------------------------------------------------------------------

def similarity_matrix(landmarks: np.ndarray, size: int, enlarge: float = ENLARGE) -> np.ndarray:
    """(68, 2) landmarks (x, y) in image pixels -> (2, 3) float64 matrix mapping image to crop pixels."""
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"landmarks must be finite (68, 2), got shape {lm.shape}")
    eye_r, eye_l = lm[36:42].mean(0), lm[42:48].mean(0)
    d = eye_l - eye_r
    dist = float(np.hypot(*d))
    if dist < 1e-3:
        raise ValueError("degenerate landmarks: the eye centres coincide")
    c, s = d / dist
    rot = np.array([[c, s], [-s, c]])  # rotates the eye line onto +x
    box = np.stack([eye_r, eye_l, lm[30], lm[48], lm[54]]) @ rot.T
    lo, hi = box.min(0), box.max(0)
    half = 0.5 * enlarge * float((hi - lo).max())
    scale = (size - 1) / 2.0 / half
    centre = (lo + hi) / 2
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = (size - 1) / 2.0 - scale * centre
    return m


def transform_points(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (..., 2) points."""
    p = np.asarray(points, np.float64)
    return p @ m[:, :2].T + m[:, 2]


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int,
               enlarge: float = ENLARGE) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 image and its (68, 2) landmarks -> ((size, size, 3) uint8 crop, (68, 2) float32 landmarks)."""
    m = similarity_matrix(landmarks, size, enlarge)
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=BORDER)
    return crop, transform_points(m, landmarks).astype(np.float32)


# ---- one chunk of rows (runs in a worker process) -------------------------------------------------------

_CTX: dict = {}


def _init_worker(root: str, size: int, source: str) -> None:
    cv2.setNumThreads(1)
    _CTX.update(root=Path(root), size=size, source=source)
    _cohort_sequence.cache_clear()


@functools.lru_cache(maxsize=16)
def _cohort_sequence(root: Path, subject: str, task: str) -> tuple[dict[int, int], np.ndarray]:
    from manifests.cohort import load_landmarks

    frames, points = load_landmarks(root, subject, task)
    return {int(f): i for i, f in enumerate(frames)}, np.asarray(points, np.float32)


def _landmarks_for(rgb: np.ndarray, subject: str, task: str, frame: int, path: str) -> np.ndarray | str:
    """The frame's 68 points, or the reason there are none."""
    if _CTX["source"] == "cohort":
        try:
            index, points = _cohort_sequence(_CTX["root"], subject, task)
        except (OSError, ValueError, KeyError) as e:
            return f"no cohort landmarks for {subject}/{task}: {e}"
        if frame not in index:
            return f"no cohort landmarks for {subject}/{task} frame {frame}"
        return points[index[frame]]
    from pipelines.landmarks import dlib_landmarker

    det = dlib_landmarker()(rgb)
    return f"no face found by dlib: {path}" if det is None else det.points


def _align_chunk(start: int, rows: list[tuple]) -> tuple[int, np.ndarray, np.ndarray, dict[int, str]]:
    """rows: (row_id, subject, task, frame, image_path, status) -> (start, images, landmarks, failures)."""
    size, root = _CTX["size"], _CTX["root"]
    images = np.zeros((len(rows), size, size, 3), np.uint8)
    points = np.full((len(rows), 68, 2), np.nan, np.float32)
    failures: dict[int, str] = {}
    for i, (rid, subject, task, frame, path, status) in enumerate(rows):
        if status != STATUS_OK:
            failures[rid] = f"manifest status: {status}"
            continue
        bgr = cv2.imread(str(root / path), cv2.IMREAD_COLOR)
        if bgr is None:
            failures[rid] = f"unreadable image: {path}"
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        lm = _landmarks_for(rgb, subject, task, int(frame), path)
        if isinstance(lm, str):
            failures[rid] = lm
            continue
        try:
            images[i], points[i] = align_face(rgb, lm, size)
        except ValueError as e:
            failures[rid] = f"cannot align {path}: {e}"
    return start, images, points, failures


# ---- the job ----------------------------------------------------------------------------------------------

def resolve_landmark_source(landmarks: str, root: Path) -> str:
    """"auto" -> "cohort" for an embedded cohort root, else "dlib"; "cohort" on a non-cohort root is an error."""
    from manifests.cohort import is_cohort

    if landmarks not in LANDMARK_SOURCES:
        raise ValueError(f"landmarks must be one of {LANDMARK_SOURCES}, got {landmarks!r}")
    if landmarks == "auto":
        return "cohort" if is_cohort(root) else "dlib"
    if landmarks == "cohort" and not is_cohort(root):
        raise ValueError(f"{root}: not an embedded cohort, so it has no landmarks of its own; use dlib")
    return landmarks


def manifest_fingerprint(df: pd.DataFrame) -> str:
    """A hash of what the store holds from the manifest (rows, paths, statuses, labels, folds), to refuse mixing
    stores of two manifests."""
    cols = ["row_id", "subject", "task", "frame", "image_path", "status", *AU_COLUMNS, "fold"]
    return format(int(pd.util.hash_pandas_object(df[cols], index=False).sum()) & (2**64 - 1), "016x")


def _version() -> str:
    try:
        return f"lacgan-augment {importlib.metadata.version('lacgan-augment')}"
    except importlib.metadata.PackageNotFoundError:
        return "lacgan-augment (not installed)"


def _open_or_create(out: Path, df: pd.DataFrame, size: int, chunk: int, attrs: dict) -> AlignedStore:
    if out.exists():
        store = AlignedStore.open(out, mode="r+")
        want = {"size": size, "chunk": chunk, "rows": len(df), "manifest_fingerprint": attrs["manifest_fingerprint"],
                "landmark_source": attrs["landmark_source"]}
        have = {**dict(store.group.attrs), "rows": len(store)}
        diff = [f"{k}: store has {have.get(k)!r}, asked {v!r}" for k, v in want.items() if have.get(k) != v]
        if diff:
            raise StoreError(f"{out}: an aligned store of something else is already here ({'; '.join(diff)}); "
                             f"delete it or choose another --out")
        return store
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    store = AlignedStore.create(tmp, n=len(df), size=size, chunk=chunk, attrs=attrs)
    store.group["row_id"][:] = df["row_id"].to_numpy(np.int64)
    store.group["labels"][:] = df[list(AU_COLUMNS)].to_numpy(np.int8)
    store.group["fold"][:] = df["fold"].to_numpy(np.int8)
    os.replace(tmp, out)  # the store appears complete (all rows PENDING) or not at all
    return AlignedStore.open(out, mode="r+")


def align_manifest(manifest_path, out_store, size: int = 200, landmarks: str = "auto", chunk: int = 64,
                   workers: int = 1) -> Path:
    """Align every row of the manifest into the store at `out_store`; resumes a store made by the same call."""
    manifest_path, out = Path(manifest_path).resolve(), Path(out_store)
    if size < 16 or chunk < 1 or workers < 1:
        raise ValueError(f"need size >= 16, chunk >= 1, workers >= 1 (got {size}, {chunk}, {workers})")
    df = read_manifest(manifest_path)
    root = manifest_root(manifest_path)
    if not root.is_dir():
        raise FileNotFoundError(f"{manifest_path}: its dataset root {root} does not exist")
    source = resolve_landmark_source(landmarks, root)
    attrs = {"manifest": str(manifest_path), "manifest_fingerprint": manifest_fingerprint(df), "root": str(root),
             "landmark_source": source, "created_by": _version(),
             "template": {"rule": "jaanet-similarity", "enlarge": ENLARGE, "box_points": BOX_POINTS,
                          "eyes": "level", "box_centre": "(S-1)/2", "interpolation": "bilinear",
                          "border": list(BORDER)}}
    store = _open_or_create(out, df, size, chunk, attrs)
    pending = store.pending_chunks()
    cols = ["row_id", "subject", "task", "frame", "image_path", "status"]
    rows = list(df[cols].itertuples(index=False, name=None))
    tasks = [(s, rows[s:s + chunk]) for s in pending]
    bar = tqdm(total=len(tasks), unit="chunk", desc=f"align {out.name}", disable=not tasks)
    if workers == 1:
        _init_worker(str(root), size, source)
        for t in tasks:
            store.write_chunk(*_align_chunk(*t))
            bar.update()
    else:
        _run_pool(store, tasks, workers, (str(root), size, source), bar)
    bar.close()
    write_failure_list(store, df)
    return out


def write_failure_list(store: AlignedStore, df: pd.DataFrame) -> Path:
    """STORE/failures.csv: every FAILED row (row_id, subject, task, frame, image_path, reason), rewritten whole
    after each run, so the files a person has to look at are one list (the reasons live per chunk in
    STORE/failures/, the unit of resumption)."""
    failures = store.failures()
    rows = df.set_index("row_id").loc[sorted(failures), ["subject", "task", "frame", "image_path"]]
    table = rows.reset_index().assign(reason=[failures[r] for r in rows.index])
    path = store.path / FAILURE_LIST
    write_text(path, table.to_csv(index=False))
    return path


def _run_pool(store: AlignedStore, tasks: list, workers: int, initargs: tuple, bar: tqdm) -> None:
    """Chunks in worker processes (models loaded once each), at most 2 per worker in flight; the parent writes."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=initargs) as pool:
        todo, running = list(reversed(tasks)), set()
        while todo or running:
            while todo and len(running) < 2 * workers:
                running.add(pool.submit(_align_chunk, *todo.pop()))
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                store.write_chunk(*fut.result())
                bar.update()
