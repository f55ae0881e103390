"""Counterfactual ground truth for edits of the embedded cohort: "this frame, with these AUs", drawn by the renderer.

The cohort is rendered, so for a plan row (source frame, target AUs) the true answer exists: the source frame's
subject, pose, light, gaze and sensor-noise draw (`manifests.cohort.sequence.FrameScene`) rendered with the
target AU intensities, JPEG-encoded as the cohort writes its frames, decoded as the aligner decodes them, and
warped with the *source's* similarity transform, so pixels correspond to the source crop one to one. Re-rendering
a frame with its own intensities reproduces the cohort's JPEG bytes, so an unchanged target gives the source
crop exactly (tests/test_counterfactual.py).

Target intensities (labels are binary, the renderer needs an intensity per AU):

    target 1, source present   the source's own intensity (the AU is already there; keep it as it is)
    target 1, source absent    the subject's median intensity of that AU over its present frames (all its
                               sequences); the cohort-wide median when the subject never shows it
    target 0                   0 (absent)
    target -1 (unknown)        the source's own intensity (the region is left as the source)

The set is written in the synthetic store's layout (`pipelines.synth_store`: sharded Zarr + one provenance part
per shard, resumable shard by shard) so scoring and reports read it like a synthetic set; its
`checkpoint_sha256` is the hash of the cohort description, its `config_hash` that of this rule. For a dataset
without a renderer (BP4D) there is no counterfactual: `available(store)` says why, and reports print
"not available", never a number.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from manifests.aus import AU_COLUMNS
from pipelines import synth_store as ss

INTENSITY_RULE = "keep-source-else-subject-median/1"


class CounterfactualError(ValueError):
    """No counterfactual can be drawn (not a cohort, aligned with other landmarks); names the path."""


@dataclass(frozen=True)
class CounterfactualConfig:
    frames_per_shard: int = 64  # frames per shard (the synthetic store's unit of resumption)
    workers: int = 2  # render processes (spawned); 1 renders in this process


# ---- where the truth comes from ---------------------------------------------------------------------------
def cohort_root(store_path) -> Path:
    """The embedded cohort an aligned store was made from, or CounterfactualError saying why there is none."""
    from manifests.aligned import AlignedStore
    from manifests.cohort import is_cohort

    attrs = dict(AlignedStore.open(store_path).group.attrs)
    root = Path(attrs.get("root", ""))
    if not is_cohort(root):
        raise CounterfactualError(f"{store_path}: made from {root}, which is not an embedded cohort (no renderer, "
                                  f"so no counterfactual frames)")
    if attrs.get("landmark_source") != "cohort":
        raise CounterfactualError(f"{store_path}: aligned with {attrs.get('landmark_source')} landmarks; the "
                                  f"counterfactual needs the cohort's own (align with --landmarks cohort)")
    return root


def available(store_path) -> str | None:
    """None when counterfactual frames can be drawn for this store, else the reason they cannot."""
    try:
        cohort_root(store_path)
    except (CounterfactualError, ValueError) as e:
        return str(e)
    return None


@functools.lru_cache(maxsize=4)
def _cohort(root: str) -> tuple:
    """(CohortConfig, cohort description hash) of a cohort folder."""
    from manifests.cohort import CohortConfig
    from manifests.cohort.writer import MARKER

    text = (Path(root) / MARKER).read_text()
    cfg = json.loads(text)["config"]
    return CohortConfig(**{**cfg, "workers": 1}), hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=64)
def _sequence(root: str, subject: str, task: str):
    """(identity, frame -> index, intensities (n, 12), scenes, render landmarks (n, 68, 2)) of one sequence."""
    from manifests.cohort import load_landmarks, subject_identity, subject_names, task_names
    from manifests.cohort.sequence import plan_sequence, sequence_scenes

    cfg, _ = _cohort(root)
    s, t = subject_names(cfg.subjects).index(subject), task_names(cfg.tasks).index(task)
    plan = plan_sequence(cfg, s, t)
    frames, points = load_landmarks(root, subject, task)
    if not np.array_equal(frames, plan.frames):
        raise CounterfactualError(f"{root}: landmarks of {subject}/{task} do not match its plan; the cohort was "
                                  f"written by another version")
    index = {int(f): i for i, f in enumerate(plan.frames)}
    return subject_identity(cfg.seed, s), index, plan.intensity, sequence_scenes(cfg, plan), points


@functools.lru_cache(maxsize=4)
def typical_intensity(root: str) -> dict[str, np.ndarray]:
    """{subject: (12,) median present intensity per AU}, with the cohort-wide median where a subject has none."""
    from manifests.cohort import subject_names, task_names
    from manifests.cohort.sequence import plan_sequence

    cfg, _ = _cohort(root)
    per_subject = {}
    for s, name in enumerate(subject_names(cfg.subjects)):
        inten = np.concatenate([plan_sequence(cfg, s, t).intensity for t in range(cfg.tasks)])
        per_subject[name] = inten
    every = np.concatenate(list(per_subject.values()))
    overall = np.array([np.median(c[c > 0]) if (c > 0).any() else 0.675 for c in every.T])
    out = {}
    for name, inten in per_subject.items():
        med = np.array([np.median(c[c > 0]) if (c > 0).any() else np.nan for c in inten.T])
        out[name] = np.where(np.isnan(med), overall, med)
    return out


def target_intensity(source: np.ndarray, target: np.ndarray, typical: np.ndarray) -> np.ndarray:
    """The rule of the module doc: source (12,) intensities, target (12,) labels, typical (12,) -> (12,)."""
    source = np.asarray(source, np.float64)
    out = source.copy()
    add = (target == 1) & (source <= 0)
    out[add] = typical[add]
    out[target == 0] = 0.0
    return out.astype(np.float32)


def render_counterfactual(root, subject: str, task: str, frame: int, target: np.ndarray, size: int) -> np.ndarray:
    """The aligned (size, size, 3) uint8 crop of frame `frame` of subject/task rendered with `target` labels."""
    from manifests.cohort.sequence import render_frame
    from pipelines.align import align_face, similarity_matrix

    root = str(root)
    cfg, _ = _cohort(root)
    ident, index, inten, scenes, points = _sequence(root, subject, task)
    i = index[int(frame)]
    aus = target_intensity(inten[i], np.asarray(target), typical_intensity(root)[subject])
    jpeg, _ = render_frame(cfg, ident, aus, scenes[i])
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)  # as the aligner reads its files
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    m = similarity_matrix(points[i], size)  # the SOURCE frame's transform: pixels correspond to its crop
    crop = cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=_border())
    return crop


def _border():
    from pipelines.align import BORDER

    return BORDER


# ---- the set ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Shard:
    out: str
    root: str
    shard: int
    start: int
    stop: int
    size: int
    rows: tuple  # (plan_row, subject, task, frame, target labels tuple) per frame


def _render_shard(job: _Shard) -> int:
    import zarr

    cv2.setNumThreads(1)
    imgs = np.empty((job.stop - job.start, job.size, job.size, 3), np.uint8)
    for k, (_, subject, task, frame, target) in enumerate(job.rows):
        imgs[k] = render_counterfactual(job.root, subject, task, frame, np.asarray(target, np.int8), job.size)
    arr = zarr.open_group(str(Path(job.out) / ss.STORE_NAME), mode="r+", zarr_format=3)["images"]
    arr[job.start:job.stop] = imgs  # one whole shard per task: one atomic shard-file write
    return len(imgs)


def write_counterfactuals(plan_path, store_path, out, cfg: CounterfactualConfig = CounterfactualConfig()) -> Path:
    """Render every plan row's counterfactual into `out` (synthetic-store layout); resumes shard by shard."""
    from manifests.aligned import AlignedStore
    from pipelines.plan import plan_sha256, read_plan, store_frames, validate_plan

    root = cohort_root(store_path)
    size = AlignedStore.open(store_path).size
    frames = store_frames(store_path).set_index("row_id")
    plan = validate_plan(read_plan(plan_path), str(plan_path), frames.reset_index())
    _, cohort_hash = _cohort(str(root))
    rule_hash = hashlib.sha256(json.dumps({"rule": INTENSITY_RULE, "size": size}).encode()).hexdigest()
    attrs = dict(plan=str(Path(plan_path).resolve()), plan_sha256=plan_sha256(plan_path),
                 store=str(Path(store_path).resolve()), checkpoint=str(root.resolve()), checkpoint_sha256=cohort_hash,
                 config_hash=rule_hash, frames_per_shard=cfg.frames_per_shard, size=size,
                 package_version=ss.package_version(), kind="counterfactual", intensity_rule=INTENSITY_RULE)
    out = Path(out)
    ss.create_store(out, plan, size, cfg.frames_per_shard, attrs)
    ss.write_json(out / "generation.json", {**attrs, "config": asdict(cfg)})
    src = frames.loc[plan["source_row"].to_numpy()]
    targets = plan[list(AU_COLUMNS)].to_numpy(np.int8)
    ranges = ss.shard_ranges(len(plan), cfg.frames_per_shard)
    done = ss.done_shards(out, ranges)
    jobs = []
    for k, (a, b) in enumerate(ranges):
        if k in done:
            continue
        rows = tuple((int(plan["plan_row"].iat[i]), str(src["subject"].iat[i]), str(src["task"].iat[i]),
                      int(src["frame"].iat[i]), tuple(int(v) for v in targets[i])) for i in range(a, b))
        jobs.append(_Shard(str(out), str(root), k, a, b, size, rows))
    t0 = time.perf_counter()
    bar = tqdm(total=sum(j.stop - j.start for j in jobs), desc="counterfactual frames", unit="frame",
               disable=not jobs)

    def commit(job: _Shard) -> None:  # the part is the shard's commit mark, written after its images
        part = plan.iloc[job.start:job.stop].assign(shard=job.shard, checkpoint_sha256=cohort_hash,
                                                   config_hash=rule_hash, package_version=ss.package_version())
        ss.write_part(out, job.shard, part)
        bar.update(job.stop - job.start)

    try:
        if cfg.workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                _render_shard(job)
                commit(job)
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(cfg.workers, mp_context=ctx) as pool:
                for job, _ in zip(jobs, pool.map(_render_shard, jobs)):
                    commit(job)
    finally:
        bar.close()
    n = sum(j.stop - j.start for j in jobs)
    if n:
        bar.write(f"counterfactual: {n} frames in {time.perf_counter() - t0:.1f} s -> {out}")
    return out

