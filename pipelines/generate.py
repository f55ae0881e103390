"""Sharded generation: the plan's frames, edited by LAC-GAN or GANimation, written shard by shard, in this process or over Dask.

`generate(plan, store, checkpoint, out)` splits the plan into shards of `frames_per_shard` frames and runs
`pipelines.shard_task.generate_shard` for each one not done yet:

- `workers=0`: in this process, through `ShardStream` (reading the next shard and writing the previous one
  overlap with editing the current one);
- `workers=W` (default 2): a `LocalCluster` of W worker processes, one task at a time each, with this machine's
  cores split between them (`threads` torch threads each, default cores // W);
- `gpus=N`: a `dask_cuda.LocalCUDACluster`, one worker per GPU (the optional extra `lacgan-augment[gpu]`);
- `scheduler=ADDRESS`: any existing Dask cluster (`dask scheduler` + `dask worker` / `dask cuda worker`, or
  dask-jobqueue on Slurm; docs/pipeline.md); each worker picks its device through `lacgan.device.pick_device`.

Each worker process loads the editor once and keeps it (`shard_task.load_editor`). Before the shards, the
editor's generator path (grouped or per-AU loop) is chosen on a worker, for the device that will run it: by
`PATH_RULE` (`path="auto"`) or a one-off measurement (`path="measure"`), and recorded in generation.json; a
resumed run reuses the recorded choice.

Resumption and faults (see pipelines.synth_store): a shard is done only when its manifest part exists. A task
writes its shard's images in one write, then the part (temp name, rename). Re-running the same command skips
done shards. A worker that dies mid-shard has its task rescheduled by Dask (the shard is rewritten whole); a
task that raises (e.g. disk full) leaves its shard undone, the other shards finish, and the run ends with a
GenerationError that lists the failed shards. Shards are the unit of work, so no two writers share one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from pipelines import synth_store as ss
from pipelines.plan import plan_config, plan_sha256, read_plan, store_frames, validate_plan
from pipelines.shard_task import (DEFAULT_EDITOR, GenerationError, ShardJob, ShardStream, device_rule,
                                  generate_shard, load_editor, tune, warm)

log = logging.getLogger("lacgan.generate")

__all__ = ["DEFAULT_EDITOR", "GenerateConfig", "GenerateSummary", "GenerationError", "ShardJob", "generate",
           "generate_shard", "load_editor", "synthetic_manifest"]

PATHS = {"grouped": {"loop": False}, "loop": {"loop": True}}  # editor settings of each generator path
# path="auto": per device type. CPU: the per-AU loop, faster at 64 and 200 px at 1 and 2 threads on an idle
# 2-core machine (1.2x, 1.4-1.7x; docs/pipeline.md); CUDA: grouped, one kernel per layer instead of 12.
PATH_RULE = {"cpu": "loop", "cuda": "grouped"}
PRECISIONS = ("float32", "bf16")


@dataclass(frozen=True)
class GenerateConfig:
    frames_per_shard: int = 64  # frames per Zarr shard = per task (a shard is written by one task only)
    batch_size: int = 32  # frames per Editor.edit call
    workers: int = 2  # LocalCluster worker processes; 0 = run the shards in this process, no Dask
    gpus: int = 0  # > 0: a dask_cuda.LocalCUDACluster with one worker per GPU (extra "gpu"); overrides `workers`
    scheduler: str | None = None  # address of an existing Dask scheduler; overrides `workers` and `gpus`
    threads: int | None = None  # torch threads per worker; None = cores // workers (local clusters), as is (scheduler)
    device: str | None = None  # torch device for the workers; None = CUDA if present, else CPU
    path: str = "auto"  # "grouped", "loop" (per AU), "auto" (PATH_RULE by device) or "measure" (timed once)
    precision: str = "float32"  # "float32" or "bf16" (generator under bfloat16 autocast, where supported)
    strength: float | None = None  # LAC-GAN's edit strength (lacgan.losses.draw); None = the checkpoint's own
    #                                (its net.edit_strength). Recorded: a resumed run must use the same
    editor: str = DEFAULT_EDITOR  # "auto" (by the checkpoint's model kind) or "module:Class" with .load/.edit

    def __post_init__(self):
        if self.path not in ("auto", "measure", *PATHS):
            raise GenerationError(f"path must be auto, measure, grouped or loop, got {self.path!r}")
        if self.precision not in PRECISIONS:
            raise GenerationError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.frames_per_shard < 1 or self.batch_size < 1 or self.workers < 0 or self.gpus < 0:
            raise GenerationError("frames_per_shard and batch_size must be >= 1, workers and gpus >= 0")
        if self.strength is not None and not self.strength > 0:
            raise GenerationError(f"strength must be > 0 (or None: the checkpoint's), got {self.strength}")
        if self.threads is not None and self.threads < 1:
            raise GenerationError(f"threads must be >= 1 (or None), got {self.threads}")

    @property
    def in_process(self) -> bool:
        return self.workers == 0 and not self.gpus and not self.scheduler


@dataclass(frozen=True)
class GenerateSummary:
    out: str
    frames: int  # frames in the plan
    shards: int  # shards in total
    generated: int  # shards generated by this run
    skipped: int  # shards already done before this run
    seconds: float  # wall time of this run's shard work
    frames_per_s: float  # frames generated by this run per wall second
    model_s: float  # summed over tasks: time inside Editor.edit
    io_s: float  # summed over tasks: reading sources and writing shards/parts
    load_s: float  # summed over worker processes: checkpoint loading
    write_s: float  # summed over tasks: writing the shards' images (part of io_s; the parts are not counted)
    bytes_written: int  # image bytes written by this run
    tune_s: float = 0.0  # choosing the generator path on a worker (rule or measurement; before `seconds` starts)
    settings: dict | None = None  # editor settings the shards ran with (e.g. {"loop": true})
    threads: int | None = None  # torch threads per worker (None: left to the worker / the caller)


# ---- the run ----------------------------------------------------------------------------------------------
def _prepare(plan_path, store_path, checkpoint, out, cfg: GenerateConfig):
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise GenerationError(f"{checkpoint}: no LAC-GAN checkpoint here (train one first: "
                              f"`lacgan train --store STORE --out {checkpoint}`)")
    plan = validate_plan(read_plan(plan_path), str(plan_path), store_frames(store_path))
    if plan.empty:
        raise GenerationError(f"{plan_path}: the plan is empty; nothing to generate")
    from lacgan.checkpoint import CheckpointError

    try:
        editor = load_editor(str(checkpoint), cfg.device if cfg.in_process else "cpu", cfg.editor)  # hashes, size
    except CheckpointError as e:
        raise GenerationError(f"{e} (editor {cfg.editor!r})") from e
    from manifests.aligned import AlignedStore

    size = AlignedStore.open(store_path).size
    if int(editor.size) != size:
        raise GenerationError(f"{checkpoint}: the model edits {editor.size}px faces but the aligned store "
                              f"{store_path} holds {size}px crops")
    held_out = getattr(editor, "test_fold", None)
    planned = plan_config(plan_path) or {}
    if held_out is not None and planned.get("policy") == "match-test" and int(planned["test_fold"]) != held_out:
        raise GenerationError(f"{plan_path}: the plan matches test fold {planned['test_fold']}, but {checkpoint} "
                              f"held out fold {held_out} (it was trained on the plan's subjects); train with "
                              f"--test-fold {planned['test_fold']} or plan for fold {held_out}")
    attrs = dict(plan=str(Path(plan_path).resolve()), plan_sha256=plan_sha256(plan_path),
                 store=str(Path(store_path).resolve()), checkpoint=str(checkpoint.resolve()),
                 checkpoint_sha256=editor.checkpoint_sha256, config_hash=editor.config_hash,
                 frames_per_shard=cfg.frames_per_shard, size=size, package_version=ss.package_version(),
                 test_fold=held_out, source_policy=str(plan["source_policy"].iloc[0]),
                 edit_strength=cfg.strength)  # None: the checkpoint's (its hash is recorded too)
    ss.create_store(out, plan, size, cfg.frames_per_shard, attrs)
    return plan, attrs, hasattr(editor, "configure")


def _settings(cfg: GenerateConfig, out: Path, attrs: dict, configurable: bool) -> tuple[dict, bool]:
    """(editor settings fixed by the config or by an earlier run of this output, whether the path is still to be
    chosen on a worker). A resumed run keeps the recorded path, so its shards match the ones already written."""
    settings = {} if cfg.precision == "float32" else {"precision": cfg.precision}
    if cfg.strength is not None:
        settings["strength"] = cfg.strength
    if not configurable:
        if settings or cfg.path not in ("auto", "measure"):
            raise GenerationError(f"editor {cfg.editor} has no configure(): it takes no path/precision/strength "
                                  f"settings")
        return {}, False
    if cfg.path in PATHS:
        return {**settings, **PATHS[cfg.path]}, False
    try:
        before = json.loads((out / "generation.json").read_text())
    except (OSError, ValueError):
        before = {}
    recorded = before.get("editor_settings") or {}
    if before.get("checkpoint_sha256") == attrs["checkpoint_sha256"] and "loop" in recorded:
        return {**settings, "loop": recorded["loop"]}, False
    return settings, True


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _threads(cfg: GenerateConfig) -> int | None:
    """torch threads per worker: given, or this machine's cores split between the local cluster's workers."""
    if cfg.threads or cfg.in_process or cfg.scheduler:
        return cfg.threads
    return max(1, _cores() // (cfg.gpus or cfg.workers))


def _check_cluster(cfg: GenerateConfig) -> None:
    """Fail before anything is written when the asked-for cluster cannot start."""
    if cfg.gpus and not cfg.scheduler:
        try:
            import dask_cuda  # noqa: F401
        except ImportError:
            raise GenerationError(f"--gpus {cfg.gpus} needs dask-cuda, which is not installed: pip install "
                                  f"'lacgan-augment[gpu]' (or start `dask cuda worker`s and pass --scheduler)"
                                  ) from None


# Dask's nanny starts its workers with MALLOC_TRIM_THRESHOLD_=65536 (to hand freed memory back to the OS). Setting
# it also fixes glibc's mmap threshold, so every large tensor torch allocates on the CPU is a fresh mmap that page-
# faults in: the generator ran 2.3-2.8x slower in a worker than in this process (64 px, 1 thread: 53-63 vs 140-151
# frames/s, measured side by side). The local clusters started here leave it unset (a value the user exported
# still reaches the workers through the environment); for `dask worker`s started elsewhere, see docs/pipeline.md.
WORKER_ENV = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def _client(cfg: GenerateConfig):
    import dask
    from distributed import Client, LocalCluster

    if cfg.scheduler:
        return Client(cfg.scheduler), None
    logging.getLogger("distributed").setLevel(logging.WARNING)  # cluster start-up chatter; failures still show
    common = dict(threads_per_worker=1, dashboard_address="127.0.0.1:0", silence_logs=logging.WARNING)
    with dask.config.set(WORKER_ENV):
        if cfg.gpus:
            from dask_cuda import LocalCUDACluster

            try:
                cluster = LocalCUDACluster(n_workers=cfg.gpus, **common)
            except (ValueError, RuntimeError) as e:
                raise GenerationError(f"--gpus {cfg.gpus}: dask-cuda could not start its workers ({e})") from e
        else:
            cluster = LocalCluster(n_workers=cfg.workers, processes=True, **common)
    return Client(cluster), cluster


def generate(plan_path, store_path, checkpoint, out, cfg: GenerateConfig = GenerateConfig()) -> GenerateSummary:
    """Generate every shard of the plan that is not done yet into `out` (see module doc)."""
    out = Path(out)
    _check_cluster(cfg)
    plan, attrs, configurable = _prepare(plan_path, store_path, checkpoint, out, cfg)
    settings, measure = _settings(cfg, out, attrs, configurable)
    ranges = ss.shard_ranges(len(plan), cfg.frames_per_shard)
    done = ss.done_shards(out, ranges)
    todo = [k for k in range(len(ranges)) if k not in done]
    log.info("generate %s: %d frames in %d shards, %d already done, %d to do", out, len(plan), len(ranges),
             len(done), len(todo))
    threads = _threads(cfg)
    jobs = [ShardJob(str(out), str(plan_path), attrs["plan_sha256"], str(store_path), str(checkpoint), k,
                     *ranges[k], cfg.batch_size, cfg.device, cfg.editor, (), threads) for k in todo]
    try:  # a resumed run keeps the record of how its path was chosen (so generation.json stays the same)
        recorded = json.loads((out / "generation.json").read_text()).get("path_measurement") or {}
    except (OSError, ValueError):
        recorded = {}
    with _Executor(cfg) as ex:
        tuning, tune_s = ({} if measure else recorded), 0.0
        if measure and jobs:
            t0 = time.perf_counter()
            candidates = {k: {**settings, **v} for k, v in PATHS.items()}
            tuning = ex.call(tune, jobs[0], candidates) if cfg.path == "measure" else \
                ex.call(device_rule, jobs[0], PATH_RULE, candidates)
            tune_s = time.perf_counter() - t0
            settings = tuning.get("settings", settings)
            log.info("generator path: %s (%s)", tuning.get("choice"), tuning.get("rule") or ", ".join(
                f"{k} {v:.1f} frames/s" for k, v in tuning.get("frames_per_s", {}).items()))
        ss.write_json(out / "generation.json", {**attrs, "config": asdict(cfg), "editor_settings": settings,
                                                "path_measurement": tuning, "threads_per_worker": threads})
        jobs = [_with_settings(j, settings) for j in jobs]
        if jobs:
            ex.warm(jobs[0])
        results, failures, seconds = ex.run(jobs)
    frames = sum(r["frames"] for r in results)
    summary = GenerateSummary(str(out), len(plan), len(ranges), len(results), len(done), seconds,
                              frames / seconds if seconds > 0 and frames else 0.0,
                              sum(r["model_s"] for r in results), sum(r["io_s"] for r in results),
                              sum(r["load_s"] for r in results), sum(r["write_s"] for r in results),
                              sum(r["bytes"] for r in results), tune_s, settings, threads)
    log.info("generated %d frames in %.1f s: %.2f frames/s (model %.1f s, I/O %.1f s, loading %.1f s)",
             frames, seconds, summary.frames_per_s, summary.model_s, summary.io_s, summary.load_s)
    if failures:
        lines = "; ".join(f"shard {k}: {msg}" for k, msg in sorted(failures.items())[:5])
        raise GenerationError(f"{out}: {len(failures)} shard(s) failed ({lines}); {len(results) + len(done)} of "
                              f"{len(ranges)} are done. Fix the cause and re-run the same command to resume.")
    return summary


def _with_settings(job: ShardJob, settings: dict) -> ShardJob:
    from dataclasses import replace

    return replace(job, settings=tuple(sorted(settings.items())))


class _Executor:
    """Where the shards run: this process (ShardStream) or a Dask client (one task per shard)."""

    def __init__(self, cfg: GenerateConfig):
        self.cfg, self.client, self.cluster, self.environ = cfg, None, None, None

    def __enter__(self) -> "_Executor":
        if not self.cfg.in_process:
            self.environ = dict(os.environ)
            self.client, self.cluster = _client(self.cfg)
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        if self.environ is not None:  # Dask's LocalCluster sets OMP_NUM_THREADS=1 (and MKL's, OpenBLAS's) in
            #                           THIS process's environment for its workers; left there, every later child
            #                           process (a training step of the flow) would run torch on one thread
            os.environ.clear()
            os.environ.update(self.environ)

    def call(self, fn, *args):
        """fn(*args) once, where the shards will run (a worker's device and threads)."""
        if self.client is None:
            return fn(*args)
        return self.client.submit(fn, *args, pure=False).result()

    def warm(self, job: ShardJob) -> None:
        """Every worker loads the editor now, side by side, as this process did for the path rule (in-process runs
        have it already); workers that join later load it with their first shard."""
        if self.client is not None:
            self.client.run(warm, job)

    def run(self, jobs: list[ShardJob]) -> tuple[list[dict], dict[int, str], float]:
        """Run the jobs; returns (results, {shard: error}, seconds from the start of the first shard)."""
        results: list[dict] = []
        failures: dict[int, str] = {}
        if not jobs:
            return results, failures, 0.0
        bar = tqdm(total=len(jobs), desc="shards", unit="shard")
        t0 = time.perf_counter()

        def record(r: dict):
            results.append(r)
            bar.update(1)
            done_frames = sum(x["frames"] for x in results)
            log.info("shard %d done (%d/%d), %.2f frames/s", r["shard"], len(results), len(jobs),
                     done_frames / max(time.perf_counter() - t0, 1e-9))

        try:
            if self.client is None:
                ShardStream().run(jobs, record, failures.__setitem__)
                return results, failures, time.perf_counter() - t0
            from distributed import as_completed

            futures = {self.client.submit(generate_shard, job, pure=False,
                                          key=f"shard-{job.shard}-{os.urandom(4).hex()}"): job for job in jobs}
            for fut in as_completed(futures):
                job = futures[fut]
                try:
                    record(fut.result())
                except Exception as e:  # KilledWorker, GenerationError, or a bug in one shard: record, go on
                    failures[job.shard] = f"{type(e).__name__}: {e}"
            return results, failures, time.perf_counter() - t0
        finally:
            bar.close()


def synthetic_manifest(out) -> pd.DataFrame:
    """The finished run's provenance table (error if some shard is not done)."""
    return ss.read_parts(out)
