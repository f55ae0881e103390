"""Write the embedded cohort in BP4D's on-disk layout; read its landmarks back.

    <root>/<Subject>/<Task>/<frame>.jpg               4-digit frame numbers (0103.jpg, 2440.jpg)
    <root>/AUCoding/AU_OCC/<Subject>_<Task>.csv       header 0,1,2,4,...: frame, then AU columns, 0/1/9
    <root>/Landmarks68/<Subject>_<Task>.npz           frames int32 (F,), points float32 (F, 68, 2), pixels
    <root>/cohort.json                                config, version, label statistics (marks a cohort)

Every file is written to a temporary name and renamed, and a sequence's CSV is written last, so a sequence
whose CSV exists is complete; re-running skips complete sequences and redoes the rest.
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from manifests.aus import AUS

from . import labels as lab
from .config import OCC_COLUMNS, TASK_EMOTIONS, UNCODED_EXTRA, CohortConfig, subject_names, task_names
from .sequence import plan_sequence, render_sequence

MARKER = "cohort.json"
_PARTIAL = "cohort.partial.json"
KIND = "lacgan-embedded-cohort"


class CohortError(ValueError):
    """A cohort file that is missing, corrupt, or written with another configuration."""


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lacgan-augment")
    except Exception:  # not installed (running from a checkout)
        return "0.1.0+checkout"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    """An .npz archive with a fixed timestamp, so the same arrays give byte-identical files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def occ_csv(frames: np.ndarray, codes: np.ndarray) -> str:
    """AU_OCC text: header `0,1,2,4,...`, one row per coded frame; the 12 AUs from `codes`, extras 0 or 9."""
    cols = []
    for au in OCC_COLUMNS:
        if au in AUS:
            cols.append(codes[:, AUS.index(au)].astype(int))
        else:
            cols.append(np.full(len(frames), 9 if au in UNCODED_EXTRA else 0))
    table = np.column_stack([np.asarray(frames, int)] + cols)
    lines = [",".join(["0"] + [str(a) for a in OCC_COLUMNS])]
    lines += [",".join(map(str, row)) for row in table.tolist()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Job:
    root: str
    config: CohortConfig
    subject_index: int
    task_index: int


def _paths(root: Path, subject: str, task: str) -> tuple[Path, Path, Path]:
    return (
        root / subject / task,
        root / "AUCoding" / "AU_OCC" / f"{subject}_{task}.csv",
        root / "Landmarks68" / f"{subject}_{task}.npz",
    )


def _complete(root: Path, subject: str, task: str, frames: np.ndarray) -> bool:
    img_dir, csv, npz = _paths(root, subject, task)
    return csv.is_file() and npz.is_file() and all((img_dir / f"{fr:04d}.jpg").is_file() for fr in frames)


def _write_sequence(job: _Job) -> int:
    """Render and write one sequence; returns the number of frames written (0 when it was complete)."""
    import cv2

    cv2.setNumThreads(1)
    root, cfg = Path(job.root), job.config
    subject = subject_names(cfg.subjects)[job.subject_index]
    task = task_names(cfg.tasks)[job.task_index]
    plan = plan_sequence(cfg, job.subject_index, job.task_index)
    if _complete(root, subject, task, plan.frames):
        return 0
    img_dir, csv, npz = _paths(root, subject, task)
    for d in (img_dir, csv.parent, npz.parent):
        d.mkdir(parents=True, exist_ok=True)
    points = np.zeros((len(plan.frames), 68, 2), np.float32)
    for i, (frame, jpeg, lm) in enumerate(render_sequence(cfg, plan)):
        _atomic_write(img_dir / f"{frame:04d}.jpg", jpeg)
        points[i] = lm
    _atomic_write(npz, _npz_bytes(frames=plan.frames.astype(np.int32), points=points))
    _atomic_write(csv, occ_csv(plan.frames[plan.coded], plan.labels).encode())
    return len(plan.frames)


def _check_config(root: Path, config: CohortConfig) -> None:
    for name in (MARKER, _PARTIAL):
        path = root / name
        if path.is_file():
            try:
                old = json.loads(path.read_text())["config"]
            except (ValueError, KeyError) as e:
                raise CohortError(f"{path}: unreadable cohort description ({e}); remove it or use another --out")
            mine = config.to_dict()
            diff = {k: (old.get(k), v) for k, v in mine.items() if k != "workers" and old.get(k) != v}
            if diff:
                raise CohortError(
                    f"{path}: this folder holds a cohort written with other settings {diff} (old, new); "
                    "use another --out or the same settings to resume"
                )


def cohort_statistics(config: CohortConfig) -> dict:
    """Label statistics of the cohort `config` describes (recomputed from the plans; no files read)."""
    codes, tasks = [], []
    for s in range(config.subjects):
        for t in range(config.tasks):
            plan = plan_sequence(config, s, t)
            codes.append(plan.labels)
            tasks.append(np.full(len(plan.labels), t))
    return lab.label_statistics(np.concatenate(codes), np.concatenate(tasks), task_names(config.tasks))


def write_cohort(root: str | os.PathLike, config: CohortConfig = CohortConfig(), progress: bool = True) -> Path:
    """Write (or finish writing) the cohort `config` describes under `root`; returns `root` as a Path."""
    return write_cohort_timed(root, config, progress)[0]


def write_cohort_timed(root, config: CohortConfig, progress: bool = True) -> tuple[Path, int, float]:
    """write_cohort, also returning (frames rendered in this run, seconds taken)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _check_config(root, config)
    header = {"kind": KIND, "config": config.to_dict(), "seed": config.seed, "version": _version()}
    _atomic_write(root / _PARTIAL, json.dumps(header, indent=2).encode())
    jobs = [_Job(str(root), config, s, t) for s in range(config.subjects) for t in range(config.tasks)]
    t0, written = time.perf_counter(), 0
    bar = tqdm(total=len(jobs), desc="cohort sequences", unit="seq", disable=not progress)
    if config.workers == 1 or mp.current_process().daemon:  # daemonic processes (e.g. pool workers) cannot fork
        results = map(_write_sequence, jobs)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(config.workers)
        results = pool.imap_unordered(_write_sequence, jobs)
    try:
        for n in results:
            written += n
            bar.update(1)
            bar.set_postfix(frames=written)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    seconds = time.perf_counter() - t0
    description = dict(
        header,
        subjects=subject_names(config.subjects),
        tasks={name: TASK_EMOTIONS[i] for i, name in enumerate(task_names(config.tasks))},
        layout={
            "images": "<Subject>/<Task>/<frame:04d>.jpg",
            "labels": "AUCoding/AU_OCC/<Subject>_<Task>.csv",
            "landmarks": "Landmarks68/<Subject>_<Task>.npz (frames int32 (F,), points float32 (F, 68, 2) x,y px)",
        },
        statistics=cohort_statistics(config),
    )
    _atomic_write(root / MARKER, json.dumps(description, indent=2).encode())
    (root / _PARTIAL).unlink(missing_ok=True)
    return root, written, seconds


def is_cohort(root: str | os.PathLike) -> bool:
    """True when `root` holds a finished embedded cohort (its cohort.json names the kind)."""
    path = Path(root) / MARKER
    try:
        return json.loads(path.read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


def load_landmarks(root: str | os.PathLike, subject: str, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(frames int32 (F,), points float32 (F, 68, 2)) of one sequence; CohortError naming the file otherwise."""
    path = Path(root) / "Landmarks68" / f"{subject}_{task}.npz"
    if not path.is_file():
        raise CohortError(f"{path}: no landmark file for {subject}/{task}")
    try:
        with np.load(path, allow_pickle=False) as z:
            frames, points = z["frames"], z["points"]
    except Exception as e:  # zipfile/ValueError/KeyError: all mean a damaged file
        raise CohortError(f"{path}: unreadable landmark file ({type(e).__name__}: {e})") from None
    if frames.ndim != 1 or points.shape != (len(frames), 68, 2):
        raise CohortError(f"{path}: expected frames (F,) and points (F, 68, 2), got {frames.shape} and {points.shape}")
    return frames.astype(np.int32), points.astype(np.float32)
