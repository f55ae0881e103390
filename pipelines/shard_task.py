"""One shard of sharded generation, and the per-process state it reuses (the run is pipelines.generate).

A shard has three stages: read (its plan rows and, in one bulk read, their source crops and landmarks), edit
(the editor, batch by batch), write (the shard's images in one Zarr write, then its manifest part, whose rename
is the commit mark). `generate_shard` runs them in turn: the Dask task. `ShardStream` runs a sequence of shards
in one process with the stages overlapped: a reader thread prefetches shard k+1 and a writer thread commits
shard k-1 while the editor works on shard k. Either way a process loads the editor, the plan and the store
handles once and keeps them, and the bytes written are those of editing each shard's batches in turn.

The editor is a black box with `load(path, device)`, `edit(images, landmarks, targets, batch_size)`, `size`,
`config_hash` and `checkpoint_sha256`; one that also has `configure(**settings)` gets the run's settings (for
LAC-GAN: the generator path and precision), and `tune` measures which of several settings is fastest.
"""

from __future__ import annotations

import functools
import importlib
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from manifests.aus import AU_COLUMNS
from pipelines import synth_store as ss
from pipelines.plan import read_plan

AUTO = "auto"  # the editor of the checkpoint's own model kind (lacgan.editors.GENERATORS)
DEFAULT_EDITOR = AUTO


class GenerationError(RuntimeError):
    """Generation could not start or some shards failed; the message says which and why."""


@dataclass(frozen=True)
class ShardJob:
    out: str  # output folder
    plan: str  # plan Parquet
    plan_sha256: str  # of the plan file (keys the per-process plan cache)
    store: str  # aligned store the sources come from
    checkpoint: str  # LAC-GAN run or checkpoint directory
    shard: int  # shard index
    start: int  # first plan row of the shard
    stop: int  # one past the last plan row
    batch_size: int  # frames per editor.edit call
    device: str | None  # torch device for the editor; None = CUDA if present, else CPU
    editor: str  # "module:Class" of the editor
    settings: tuple = ()  # (name, value) pairs for editor.configure; () = the editor's defaults
    threads: int | None = None  # torch threads in the process that runs the job; None = leave as it is


@dataclass
class ShardInputs:
    job: ShardJob
    plan: object  # the shard's plan rows (DataFrame)
    images: np.ndarray  # (n, S, S, 3) uint8 sources
    landmarks: np.ndarray  # (n, 68, 2) float32
    targets: np.ndarray  # (n, 12) int8
    read_s: float
    labels: np.ndarray  # (n, 12) int8 the sources' own AU labels (editors that read them: `uses_source_labels`)


# ---- per-process state -------------------------------------------------------------------------------------
def _editor_class(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


@functools.lru_cache(maxsize=2)
def load_editor(checkpoint: str, device: str | None, editor: str = DEFAULT_EDITOR):
    """The editor for `checkpoint`, loaded once per process (Dask reuses worker processes across tasks)."""
    if editor == AUTO:
        from lacgan.editors import load_editor as by_model_kind

        return by_model_kind(checkpoint, device=device)
    return _editor_class(editor).load(checkpoint, device=device)


@functools.lru_cache(maxsize=2)
def _plan(path: str, sha256: str):
    return read_plan(path)  # keyed by the file's hash: a changed plan is a new cache entry


@functools.lru_cache(maxsize=2)
def _store(path: str):
    from manifests.aligned import AlignedStore

    return AlignedStore.open(path)


@functools.lru_cache(maxsize=2)
def _images_out(out: str):
    import zarr

    return zarr.open_group(str(Path(out) / ss.STORE_NAME), mode="r+", zarr_format=3)["images"]


def set_threads(n: int | None) -> None:
    """torch's intra-op threads for this process (a Dask worker's share of the cores)."""
    if n:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def _editor(job: ShardJob):
    """(editor configured for the job, seconds spent loading it here: 0 when this process had it already)."""
    t0 = time.perf_counter()
    cached = load_editor.cache_info().currsize
    editor = load_editor(job.checkpoint, job.device, job.editor)
    load_s = time.perf_counter() - t0 if load_editor.cache_info().currsize > cached else 0.0
    if job.settings:
        editor.configure(**dict(job.settings))
    return editor, load_s


def warm(job: ShardJob) -> float:
    """Load (and configure) the job's editor in this process ahead of the shards; the seconds it took (0 when it
    was loaded already). Run on every worker before the shards, so no worker loads it in the middle of the run."""
    set_threads(job.threads)
    return _editor(job)[1]


# ---- the three stages --------------------------------------------------------------------------------------
def read_inputs(job: ShardJob) -> ShardInputs:
    """The shard's plan rows and sources: one read of the distinct source rows, then indexed in memory."""
    t0 = time.perf_counter()
    plan = _plan(job.plan, job.plan_sha256).iloc[job.start:job.stop]
    rows, inverse = np.unique(plan["source_row"].to_numpy(), return_inverse=True)
    images, landmarks, labels = _store(job.store).read(rows)
    return ShardInputs(job, plan, images[inverse], landmarks[inverse].astype(np.float32),
                       plan[list(AU_COLUMNS)].to_numpy(np.int8), time.perf_counter() - t0, labels[inverse])


def edit_inputs(editor, x: ShardInputs) -> tuple[np.ndarray, float]:
    """(edited images, seconds in editor.edit), batch by batch."""
    import torch

    t0 = time.perf_counter()
    out = np.empty_like(x.images)
    b = x.job.batch_size
    for i in range(0, len(out), b):
        j = min(i + b, len(out))
        torch.manual_seed(int(x.plan["seed"].iloc[i]))  # anything random in the editor is fixed by the plan
        extra = {"source_labels": x.labels[i:j]} if getattr(editor, "uses_source_labels", False) else {}
        out[i:j] = editor.edit(x.images[i:j], x.landmarks[i:j], x.targets[i:j], batch_size=b, **extra)
    return out, time.perf_counter() - t0


def write_outputs(x: ShardInputs, out: np.ndarray, editor) -> tuple[float, float]:
    """Write the shard's images in one write, then commit its part; (image write s, total write s)."""
    job = x.job
    t0 = time.perf_counter()
    try:
        _images_out(job.out)[job.start:job.stop] = out  # exactly one shard: one atomic shard-file write
        t_images = time.perf_counter() - t0
        part = x.plan.assign(shard=job.shard, checkpoint_sha256=editor.checkpoint_sha256,
                             config_hash=editor.config_hash, package_version=ss.package_version())
        ss.write_part(job.out, job.shard, part)
    except OSError as e:
        raise GenerationError(f"{job.out}: writing shard {job.shard} failed ({e}); the shard is not counted "
                              f"done and will be redone on the next run") from e
    return t_images, time.perf_counter() - t0


def _result(x: ShardInputs, out: np.ndarray, load_s: float, model_s: float, writes: tuple[float, float]) -> dict:
    return dict(shard=x.job.shard, frames=len(out), load_s=load_s, io_s=x.read_s + writes[1], write_s=writes[0],
                model_s=model_s, bytes=int(out.nbytes), pid=os.getpid())


def generate_shard(job: ShardJob) -> dict:
    """Edit and write plan rows [start, stop) as shard `job.shard`; returns timings. Idempotent."""
    set_threads(job.threads)
    editor, load_s = _editor(job)
    x = read_inputs(job)
    out, model_s = edit_inputs(editor, x)
    return _result(x, out, load_s, model_s, write_outputs(x, out, editor))


def device_rule(job: ShardJob, rule: dict[str, str], candidates: dict[str, dict]) -> dict:
    """The setting `rule` names for the device the editor runs on here ({"cpu": "loop", "cuda": "grouped"});
    {} for an editor without `configure`."""
    set_threads(job.threads)
    editor, _ = _editor(job)
    if not hasattr(editor, "configure"):
        return {}
    import torch

    device = torch.device(getattr(editor, "device", None) or "cpu")
    choice = rule.get(device.type, rule["cpu"])
    return {"choice": choice, "settings": candidates[choice], "rule": f"{device.type}: {choice}",
            "device": str(device), "threads": job.threads}


def tune(job: ShardJob, candidates: dict[str, dict], frames: int = 8, reps: int = 2) -> dict:
    """A one-off measurement: editor.edit on the first `frames` frames of the job's shard under each candidate
    setting (repetitions interleaved, the first one a warm-up; each setting's best repetition counts, the one
    least disturbed by other work on a shared machine); returns the fastest and the rates. An editor without
    `configure` has nothing to choose: {}."""
    set_threads(job.threads)
    editor, _ = _editor(job)
    if not hasattr(editor, "configure"):
        return {}
    x = read_inputs(job)
    n = min(frames, len(x.images))
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for rep in range(reps + 1):
        for name, settings in candidates.items():
            editor.configure(**settings)
            t0 = time.perf_counter()
            editor.edit(x.images[:n], x.landmarks[:n], x.targets[:n], batch_size=job.batch_size)
            if rep:
                times[name].append(time.perf_counter() - t0)
    rates = {k: n / min(v) for k, v in times.items()}
    best = max(rates, key=rates.get)
    return {"choice": best, "settings": candidates[best], "frames_per_s": rates, "frames": n,
            "device": str(getattr(editor, "device", job.device)), "threads": job.threads}


# ---- a sequence of shards in one process, stages overlapped ---------------------------------------------------
def _get(q: queue.Queue, stop: threading.Event):
    """The next item, or None once `stop` is set (a failed writer stops the reader, which then puts nothing)."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return None


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class ShardStream:
    """Runs shard jobs in this process: a reader thread prefetches the next shard, a writer thread commits the
    previous one, the calling thread edits. A shard whose write fails (GenerationError) is reported to
    `on_failure` and the others go on; any other error stops the stream and is raised."""

    def run(self, jobs: list[ShardJob], on_result, on_failure) -> None:
        reads: queue.Queue = queue.Queue(maxsize=1)  # one shard read ahead
        writes: queue.Queue = queue.Queue(maxsize=1)  # one shard waiting to be written
        stop, errors = threading.Event(), []

        def reader():
            for job in jobs:
                try:
                    item = (read_inputs(job), None)
                except Exception as e:  # raised in the calling thread
                    item = (None, e)
                if not _put(reads, item, stop) or item[1] is not None:
                    return
            _put(reads, None, stop)

        def writer():
            while True:
                item = writes.get()
                if item is None:
                    return
                x, out, editor, load_s, model_s = item
                try:
                    on_result(_result(x, out, load_s, model_s, write_outputs(x, out, editor)))
                except GenerationError as e:
                    on_failure(x.job.shard, str(e))
                except Exception as e:
                    errors.append(e)
                    stop.set()
                    return

        threads = [threading.Thread(target=reader, daemon=True), threading.Thread(target=writer, daemon=True)]
        for t in threads:
            t.start()
        try:
            while not errors:
                item = _get(reads, stop)
                if item is None:
                    break
                x, err = item
                if err is not None:
                    raise err
                set_threads(x.job.threads)
                editor, load_s = _editor(x.job)
                out, model_s = edit_inputs(editor, x)
                if not _put(writes, (x, out, editor, load_s, model_s), stop):
                    break
        except BaseException:
            stop.set()
            raise
        finally:
            while threads[1].is_alive():  # let the writer finish the shard it holds, then end
                try:
                    writes.put(None, timeout=0.1)
                    break
                except queue.Full:
                    continue
            threads[1].join()
        if errors:
            raise errors[0]
