"""A GPU check a person can run: generation frames/s and training s/step of LAC-GAN (and GANimation), on one GPU
and on all of them, with each process's peak GPU memory, in one table and under 5 minutes.

    bash bench/gpu_check.sh [--device auto|cuda|cpu] [--gpus N] [--steps 20] [--frames F] [--keep]

Rows (each one its own process, so its peak memory is its own and a failing row fails alone):

- generation, 1 GPU: `pipelines.generate.generate` in this process's child, `workers=0` (ShardStream);
- generation, all GPUs: the same with `gpus=N` (a `dask_cuda.LocalCUDACluster`, one worker per GPU); each
  worker's peak (and the frames and checkpoint load of its shards) is written by a Dask worker plugin
  (`PeakMemory`) that a client preload of this module registers on the library's own client; frames/s leaves
  out the longest worker's checkpoint load, as the in-process row loads it before the shards;
- training, 1 GPU: `lacgan train` (flows.cli, the real CLI) for `--steps` steps; s/step is the median of
  stats.jsonl's `time/step_s` after the first (warm-up) step;
- training, DDP on all: the same command under `torchrun --standalone --nproc_per_node N`; every rank writes its
  own peak; rank 0 writes stats.jsonl;
- GANimation generation (1 / all) and training (1 process; its trainer has no DDP), when the baseline builds.

Inputs are built once (bench/bench_generate.py's `_inputs`: a random 6-subject store with jittered landmarks, a
1-step LAC-GAN checkpoint, a balanced plan); GANimation's generation rows edit with its training row's checkpoint
(speed does not depend on the weights). On CUDA: 200-px crops with the paper presets. Without CUDA, or with
`--device cpu`, the CPU fallback runs the same rows on the CPU at 64 px (demo presets): in-process and on 2 Dask
workers, DDP on 2 gloo processes, each process with its share of the cores as torch threads, peak GPU memory
"n/a (cpu)". Exit 0 when no row failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
for _p in (str(ROOT), str(ROOT / "tests"), str(BENCH)):
    if _p not in sys.path:
        sys.path.append(_p)

PEAKS_ENV = "GPU_CHECK_PEAKS"  # folder where the Dask workers of a generation row write their peak memory


# ---- what runs ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    device: str  # "cuda" or "cpu"
    procs: int  # GPUs used by the "all" rows (CPU fallback: Dask workers and gloo processes)
    fallback: str | None = None  # why this is the CPU fallback; None on CUDA

    def where(self, many: bool) -> str:
        if self.device == "cpu":
            return f"{self.procs} CPU processes" if many else "1 CPU process"
        return f"{self.procs} GPU{'s' if self.procs > 1 else ''}" if many else "1 GPU"


@dataclass(frozen=True)
class Sizes:
    size: int  # crop side px: 200 runs the paper presets, 64 the demo presets (bench_generate.PRESET)
    frames: int  # frames each generation row edits (the same plan for every row)
    frames_per_shard: int  # frames per shard = per Dask task
    batch: int  # frames per Editor.edit call
    train_batch: int  # global batch of a training step (DDP: split between the processes)
    steps: int  # training steps per training row; the first is a warm-up, left out of s/step
    preset: str | None = None  # config preset of the training rows (and so of GANimation's generation rows);
    #                            None = the size's (bench_generate.PRESET: paper at 200 px, demo at 64)
    identity: str = "auto"  # LAC-GAN's identity network (lacgan train --identity)

    @property
    def size_preset(self) -> str:
        """The preset of the LAC-GAN generation rows' checkpoint (bench_generate's 1-step training)."""
        from bench_generate import PRESET

        return PRESET.get(self.size, "demo")

    @property
    def train_preset(self) -> str:
        return self.preset or self.size_preset


@dataclass(frozen=True)
class Row:
    key: str  # what --rows names
    model: str  # "lacgan" or "ganimation"
    kind: str  # "gen" or "train"
    many: bool  # all devices (Dask / DDP) rather than one

    def label(self, setup: Setup) -> str:
        name = {"lacgan": "LAC-GAN", "ganimation": "GANimation"}[self.model]
        if self.kind == "gen":
            how = f"{setup.where(True)} via Dask" if self.many else setup.where(False)
            return f"{name} generation, {how}"
        how = f"DDP on {setup.where(True)}" if self.many else setup.where(False)
        return f"{name} training, {how}"


ROWS = (  # table order; run order is RUN_ORDER (GANimation's generation needs its training row's checkpoint)
    Row("lacgan-gen-1", "lacgan", "gen", False),
    Row("lacgan-gen-all", "lacgan", "gen", True),
    Row("lacgan-train-1", "lacgan", "train", False),
    Row("lacgan-train-ddp", "lacgan", "train", True),
    Row("ganimation-gen-1", "ganimation", "gen", False),
    Row("ganimation-gen-all", "ganimation", "gen", True),
    Row("ganimation-train-1", "ganimation", "train", False),
)
BY_KEY = {r.key: r for r in ROWS}
RUN_ORDER = ("lacgan-gen-1", "lacgan-gen-all", "lacgan-train-1", "lacgan-train-ddp", "ganimation-train-1",
             "ganimation-gen-1", "ganimation-gen-all")


def choose_setup(requested: str, cuda_devices: int, gpus: int | None) -> Setup:
    """The device and process count of the run: CUDA when asked for or seen, else the CPU fallback."""
    if requested not in ("auto", "cuda", "cpu"):
        raise ValueError(f"--device must be auto, cuda or cpu, got {requested!r}")
    if gpus is not None and gpus < 1:
        raise ValueError(f"--gpus must be >= 1, got {gpus}")
    if requested == "cuda" and cuda_devices == 0:
        raise ValueError("--device cuda: torch sees no CUDA device")
    if requested == "cpu" or cuda_devices == 0:
        why = "--device cpu was given" if requested == "cpu" else "torch sees no CUDA device"
        return Setup("cpu", gpus or 2, why)
    if gpus is not None and gpus > cuda_devices:
        raise ValueError(f"--gpus {gpus}: torch sees only {cuda_devices} CUDA device(s)")
    return Setup("cuda", gpus or cuda_devices)


def default_sizes(setup: Setup) -> Sizes:
    """GPU: the paper's 200-px models, 288 frames per GPU (9 shards each); CPU fallback: tiny 64-px demo models.
    Frames are a multiple of bench_generate's 6 subjects (its balanced plan gives each the same count)."""
    if setup.device == "cuda":
        return Sizes(size=200, frames=288 * setup.procs, frames_per_shard=32, batch=32,
                     train_batch=max(16, setup.procs), steps=20)
    return Sizes(size=64, frames=48, frames_per_shard=16, batch=16, train_batch=8, steps=20)


# ---- results and the table --------------------------------------------------------------------------------
@dataclass
class Result:
    status: str  # "ok", "failed" (the check exits 1) or "n/a" (not measurable here; the note says why)
    value: float | None = None  # frames/s or s/step
    unit: str = ""
    peaks: list[dict] = field(default_factory=list)  # one peak_record() per process that did the work
    note: str = ""


def peak_record() -> dict:
    """This process's peak memory: torch.cuda.max_memory_allocated of its current CUDA device (None when it used
    no CUDA), and its peak resident host memory."""
    rec = {"pid": os.getpid(), "host_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "device": "cpu", "peak_mb": None}
    torch = sys.modules.get("torch")  # never imported here just to ask
    if torch is not None and torch.cuda.is_initialized():
        d = torch.cuda.current_device()
        rec.update(device=f"cuda:{d}", name=torch.cuda.get_device_name(d),
                   visible=os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                   peak_mb=torch.cuda.max_memory_allocated(d) / 2**20)
    return rec


def memory_cell(peaks: list[dict], device: str) -> str:
    if device == "cpu":
        return "n/a (cpu)"
    mbs = [p["peak_mb"] for p in peaks if p.get("peak_mb") is not None]
    if not mbs:
        return "-"
    if len(mbs) == 1:
        return f"{mbs[0]:.0f}"
    return f"{max(mbs):.0f} (max of {len(mbs)}: {', '.join(f'{m:.0f}' for m in mbs)})"


def device_cell(peaks: list[dict], device: str) -> str:
    if device == "cpu":
        return f"cpu × {len(peaks)}" if len(peaks) > 1 else "cpu"
    names = sorted({p.get("name", p["device"]) for p in peaks if p["device"] != "cpu"}) or ["?"]
    n = sum(p["device"] != "cpu" for p in peaks)
    return f"{n} × {', '.join(names)}" if n > 1 else names[0]


def value_cell(r: Result) -> str:
    if r.status == "failed":
        return f"failed: {r.note}"
    if r.status == "n/a" or r.value is None:
        return "n/a"
    return f"{r.value:.1f} {r.unit}" if r.unit == "frames/s" else f"{r.value:.3g} {r.unit}"


def format_table(results: dict[str, Result], setup: Setup) -> str:
    lines = ["| row | frames/s or s/step | peak GPU memory MB | device | note |", "|---|---|---|---|---|"]
    for row in ROWS:
        r = results.get(row.key)
        if r is None:
            continue
        note = "" if r.status == "failed" else r.note
        cells = (row.label(setup), value_cell(r), memory_cell(r.peaks, setup.device) if r.status == "ok" else "-",
                 device_cell(r.peaks, setup.device) if r.status == "ok" else "-", note)
        lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def header(setup: Setup, sizes: Sizes) -> list[str]:
    lines = []
    if setup.fallback:
        lines.append(f"GPU check: CPU FALLBACK ({setup.fallback}): every row below ran on the CPU; no GPU was "
                     f"measured, and these numbers say nothing about GPU speed.")
    else:
        lines.append(f"GPU check: {setup.procs} CUDA GPU{'s' if setup.procs > 1 else ''}.")
    if setup.device == "cpu":
        lines.append(f"torch threads per process: {cpu_threads(setup.procs)} (the cores split between "
                     f"{setup.procs} processes), in every row")
    lines.append(f"sizes: {sizes.size}-px crops; generation: {sizes.frames} frames in shards of "
                 f"{sizes.frames_per_shard}, batch {sizes.batch} (LAC-GAN: a 1-step {sizes.size_preset} checkpoint, "
                 f"GANimation: its training row's); training: preset {sizes.train_preset}, {sizes.steps} steps, "
                 f"global batch {sizes.train_batch}, identity {sizes.identity}")
    return lines


def exit_code(results: dict[str, Result]) -> int:
    return 1 if any(r.status == "failed" for r in results.values()) else 0


# ---- parsing what the children wrote ------------------------------------------------------------------------
def step_time(lines: list[dict], steps: int, warmup: int = 1) -> float:
    """Median `time/step_s` of steps warmup+1..steps from stats.jsonl lines written one per step; a ValueError when
    a step is missing, or written twice (two processes each trained alone instead of one run)."""
    seen = [int(ln["step"]) for ln in lines]
    if sorted(seen) != list(range(1, steps + 1)):
        twice = sorted({s for s in seen if seen.count(s) > 1})
        why = f"steps {twice[:3]} were written more than once" if twice else \
            f"steps {sorted(set(range(1, steps + 1)) - set(seen))[:3]} are missing"
        raise ValueError(f"stats.jsonl has {len(seen)} lines for {steps} steps: {why}")
    times = [float(ln["time/step_s"]) for ln in lines if int(ln["step"]) > warmup]
    if not times:
        raise ValueError(f"no step after the {warmup} warm-up step(s) to time")
    return statistics.median(times)


def rank_share(batch: int, procs: int) -> str:
    """Faces per rank of a global batch (lacgan.distributed.Shard: contiguous shares differing by at most 1)."""
    low, high = batch // procs, -(-batch // procs)
    return str(low) if low == high else f"{low}-{high}"


ERROR_LINE = re.compile(r"[\w.]*(Error|Exception|Interrupt)\b.*|lacgan \w+: error: .*")  # an exception, a CLI error
LAUNCHER_LINES = ("ChildFailedError", "SignalException")  # torchrun's own summary of a failed rank


def failure_reason(stderr: str, rc: int | None, limit: int = 300) -> str:
    """The last error line a failed child printed (a rank's exception rather than torchrun's summary of it)."""
    if rc is None:
        return "timed out"
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ERROR_LINE.fullmatch(ln) and not any(w in ln for w in LAUNCHER_LINES)]
    line = (errors or lines or [f"exit code {rc}"])[-1]
    return line if len(line) <= limit else line[:limit] + "..."


# ---- children: running them --------------------------------------------------------------------------------
def run_child(cmd: list[str], timeout: float, env: dict | None = None) -> tuple[int | None, str, str]:
    """(exit code or None on timeout, stdout, stderr) of `cmd` in its own session; on timeout its whole process
    group (torchrun's ranks, Dask's workers) is killed."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err
    except subprocess.TimeoutExpired:
        _kill_group(p)
        out, err = p.communicate()
        return None, out, err
    except BaseException:  # Ctrl-C: take the child's ranks and workers down too
        _kill_group(p)
        raise


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def cpu_threads(procs: int, cores: int | None = None) -> int:
    """torch threads of every CPU-fallback process: its share of the cores when `procs` run at once, as the Dask
    rows' thread rule gives each worker; so one process against N compares like one GPU against N, and no
    process spins 2 OpenMP threads on a busy core (30x slower steps, seen on this shared machine)."""
    cores = cores or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    return max(1, cores // procs)


def child_env(setup: Setup) -> dict:
    """The environment of every child: bench/ importable (Dask workers unpickle gpu_check.PeakMemory); on the
    CPU, OMP_NUM_THREADS = cpu_threads (torchrun keeps a value that is set)."""
    old = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH)] + ([old] if old else []))}
    if setup.device == "cpu":
        env["OMP_NUM_THREADS"] = str(cpu_threads(setup.procs))
    return env


def train_command(model: str, store: str, out: Path, config: Path, device: str, identity: str, peaks: Path,
                  procs: int | None) -> list[str]:
    """`lacgan train` for one training row, through train_rank (which records the peak memory of each rank);
    under torchrun when `procs` is given."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] \
        if procs else [sys.executable]
    return launch + [str(Path(__file__).resolve()), "--train-rank", str(peaks), "--", "train", "--model", model,
                     "--store", store, "--out", str(out), "--config", str(config), "--device", device,
                     "--identity", identity, "--no-progress"]


def train_config(model: str, sizes: Sizes, path: Path) -> Path:
    """The preset's config for the training rows: `steps` steps, one statistics line per step, one checkpoint and
    one sample grid at the end."""
    from lacgan.run import model_preset, write_model_config

    cfg = model_preset(model, sizes.train_preset).replace(train=dict(
        steps=sizes.steps, batch_size=sizes.train_batch, log_every=1, sample_every=sizes.steps,
        checkpoint_every=sizes.steps, keep_checkpoints=1))
    return write_model_config(cfg, path)


def train_row(row: Row, setup: Setup, sizes: Sizes, inputs: dict, work: Path, timeout: float) -> Result:
    out, peaks = work / f"run-{row.key}", work / f"peaks-{row.key}"
    config = train_config(row.model, sizes, work / f"config-{row.model}.json")
    procs = setup.procs if row.many else None
    cmd = train_command(row.model, inputs["store"], out, config, setup.device, sizes.identity, peaks, procs)
    rc, stdout, stderr = run_child(cmd, timeout, child_env(setup))
    if rc != 0:
        return Result("failed", note=failure_reason(stderr + stdout, rc))
    return train_result(out, peaks, procs, sizes, stdout)


def train_result(out: Path, peaks: Path, procs: int | None, sizes: Sizes, stdout: str = "") -> Result:
    """A finished training row from what its processes wrote: one peak record per process (with the world size
    each saw, when its process group still existed), and rank 0's stats.jsonl, one line per step."""
    from lacgan.stats import read_stats

    ranks = [json.loads(p.read_text()) for p in sorted(peaks.glob("rank-*.json"))]
    want = procs or 1
    if len(ranks) != want:
        return Result("failed", note=f"{len(ranks)} of {want} processes recorded their peak memory")
    worlds = {r["world"] for r in ranks if r.get("world") is not None}
    if procs and worlds - {procs}:
        return Result("failed", note=f"the {procs} ranks were not one process group (world size seen: "
                                     f"{', '.join(map(str, sorted(worlds)))})")
    try:  # ranks that each trained alone would each have written every step
        s = step_time(read_stats(out / "stats.jsonl"), sizes.steps)
    except (OSError, ValueError) as e:
        return Result("failed", note=str(e))
    identity = re.search(r"identity loss (on|off)", stdout)
    per_rank = f", {rank_share(sizes.train_batch, procs)} per rank" if procs else ""
    timed = f"median of steps 2-{sizes.steps}" if sizes.steps > 2 else "step 2"
    note = (f"{sizes.steps} steps, batch {sizes.train_batch}{per_rank}; {timed}"
            + (f"; identity loss {identity.group(1)}" if identity else ""))
    return Result("ok", s, "s/step", ranks, note)


def gen_row(row: Row, setup: Setup, sizes: Sizes, inputs: dict, work: Path, timeout: float) -> Result:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", row.key, "--setup", json.dumps(asdict(setup)),
           "--sizes", json.dumps(asdict(sizes)), "--inputs", json.dumps(inputs), "--work", str(work)]
    rc, stdout, stderr = run_child(cmd, timeout, child_env(setup))
    if rc != 0:
        return Result("failed", note=failure_reason(stderr, rc))
    try:
        return Result(**json.loads(stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError, TypeError):
        return Result("failed", note=f"the row printed no result line: {stdout.strip()[-200:]!r}")


# ---- children: what they do ---------------------------------------------------------------------------------
class PeakMemory(WorkerPlugin):
    """On each Dask worker: after every finished task, write the process's peak_record() to FOLDER/worker-PID.json
    (the peak only grows, so the last write is the run's), with the frames of the shards it ran and the longest
    checkpoint load among them (from generate_shard's result, which the worker holds once the task is done)."""

    name = "gpu-check-peak-memory"

    def __init__(self, folder: str):
        self.folder, self.worker, self.frames, self.load_s = folder, None, 0, 0.0

    def setup(self, worker) -> None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
        self.worker = worker
        Path(self.folder).mkdir(parents=True, exist_ok=True)

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish != "memory":
            return
        result = self.worker.data.get(key) if self.worker is not None else None
        if isinstance(result, dict) and {"frames", "load_s"} <= result.keys():  # a shard's timings
            self.frames += int(result["frames"])
            self.load_s = max(self.load_s, float(result["load_s"]))
        _write_json(Path(self.folder) / f"worker-{os.getpid()}.json",
                    {**peak_record(), "frames": self.frames, "load_s": self.load_s})


async def dask_setup(client) -> None:
    """Client preload (`distributed.client.preload`, set by the generation rows): PeakMemory on every worker of
    the library's own client, registered before its first task. From a thread: the sync API may not run on the
    client's event loop, which is where preloads run."""
    import asyncio

    folder = os.environ.get(PEAKS_ENV)
    if folder:
        await asyncio.to_thread(client.register_plugin, PeakMemory(folder))


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)


def measure_generation(row: Row, setup: Setup, sizes: Sizes, inputs: dict, work: Path) -> dict:
    """One generation row in this (child) process: the library's generate(), in-process or over Dask."""
    import dask

    from pipelines.generate import GenerateConfig, GenerationError, generate

    common = dict(frames_per_shard=sizes.frames_per_shard, batch_size=sizes.batch)
    if not row.many:
        cfg = GenerateConfig(workers=0, device=setup.device, **common)
    elif setup.device == "cuda":
        cfg = GenerateConfig(gpus=setup.procs, **common)  # each worker picks its own GPU (cuda:0 of its view)
    else:
        cfg = GenerateConfig(workers=setup.procs, device="cpu", **common)
    peaks = work / f"peaks-{row.key}"
    os.environ[PEAKS_ENV] = str(peaks)
    t0 = time.perf_counter()
    try:
        with dask.config.set({"distributed.client.preload": ["gpu_check"]}):
            s = generate(inputs["plan"], inputs["store"], inputs["checkpoints"][row.model], work / f"out-{row.key}",
                         cfg)
    except GenerationError as e:
        if cfg.gpus and importlib.util.find_spec("dask_cuda") is None:
            return asdict(Result("n/a", note=str(e)))  # the library's one line: install the extra
        raise
    wall = time.perf_counter() - t0
    records = [json.loads(p.read_text()) for p in sorted(peaks.glob("worker-*.json"))] if row.many \
        else [peak_record()]
    if row.many and (len(records) != setup.procs or sum(r["frames"] for r in records) != s.frames):
        raise RuntimeError(f"{len(records)} of {setup.procs} Dask workers recorded their peak memory, for "
                           f"{sum(r['frames'] for r in records)} of {s.frames} frames")
    rate, load = loaded_rate(s.frames, s.seconds, [r.get("load_s", 0.0) for r in records])
    path = "loop" if (s.settings or {}).get("loop") else "grouped"
    note = f"{s.frames} frames, {s.shards} shards, path {path}; "
    if load:
        note += (f"{s.frames_per_s:.1f} frames/s over the {s.seconds:.1f} s of shards, of which up to {load:.1f} s "
                 f"a worker loading its checkpoint; ")
    note += f"{wall - s.seconds:.1f} s start-up"
    return asdict(Result("ok", rate, "frames/s", records, note))


def loaded_rate(frames: int, seconds: float, loads: list[float]) -> tuple[float, float]:
    """(frames/s once the editors are loaded, the load left out): the library's rate counts the checkpoint loads
    of workers whose first shard loaded it (in parallel, so the longest one); in-process, the editor is loaded
    before the shards, so nothing is left out."""
    load = max(loads, default=0.0)
    if seconds <= 0 or not frames:
        return 0.0, 0.0
    if not load or load >= seconds:
        return frames / seconds, 0.0
    return frames / (seconds - load), load


def train_rank(peaks: Path, argv: list[str]) -> int:
    """One training process (alone, or one torchrun rank): the real CLI, then this process's peak memory."""
    import torch.distributed as dist

    from flows.cli import main as cli

    rc = cli(argv)
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else None
    rank = int(os.environ.get("RANK", "0"))
    peaks.mkdir(parents=True, exist_ok=True)
    _write_json(peaks / f"rank-{rank}.json", {**peak_record(), "rank": rank, "world": world, "rc": rc})
    return rc


# ---- the check ---------------------------------------------------------------------------------------------
def build_inputs(sizes: Sizes, work: Path) -> dict:
    """bench_generate's inputs (random store, 1-step LAC-GAN checkpoint, balanced plan) at the check's size."""
    from bench_generate import _inputs

    folder = work / "inputs"
    folder.mkdir(parents=True)
    i = _inputs(folder, sizes.size, sizes.frames)
    return {"store": i["store"], "plan": i["plan"], "checkpoints": {"lacgan": i["ckpt"]}}


def run_check(setup: Setup, sizes: Sizes, work: Path, keys: list[str], budget: float, timeout: float,
              log=print) -> dict[str, Result]:
    """The rows `keys` in RUN_ORDER, each given what is left of `budget` seconds (at most `timeout`)."""
    deadline = time.monotonic() + budget
    results: dict[str, Result] = {}
    try:
        inputs = build_inputs(sizes, work)
    except (SystemExit, Exception) as e:  # bench_generate raises SystemExit with the trainer's message
        return {k: Result("failed", note=f"building the inputs failed: {str(e).strip()[-200:]}") for k in keys}
    no_gan = None if importlib.util.find_spec("lacgan.ganimation") else "no GANimation baseline in this checkout"
    for key in (k for k in RUN_ORDER if k in keys):
        row = BY_KEY[key]
        left = deadline - time.monotonic()
        t0 = time.monotonic()
        if row.model == "ganimation" and no_gan:
            results[key] = Result("n/a", note=no_gan)
        elif row.model == "ganimation" and row.kind == "gen" and "ganimation" not in inputs["checkpoints"]:
            results[key] = Result("failed", note="no GANimation checkpoint (its training row did not run or failed)")
        elif left < 5:
            results[key] = Result("failed", note=f"not run: the {budget:.0f}-s budget is spent")
        else:
            run = train_row if row.kind == "train" else gen_row
            results[key] = run(row, setup, sizes, inputs, work, min(timeout, left))
            if row.key == "ganimation-train-1" and results[key].status == "ok":
                inputs["checkpoints"]["ganimation"] = str(work / f"run-{row.key}")
        r = results[key]
        log(f"{row.label(setup)}: {value_cell(r)} ({time.monotonic() - t0:.0f} s)")
    return results


def check_options(sizes: Sizes, keys: list[str]) -> str | None:
    """What is wrong with the options (one line), or None."""
    from lacgan.run import model_preset

    unknown = [k for k in keys if k not in BY_KEY]
    if unknown:
        return f"unknown rows {', '.join(unknown)}; choose from {', '.join(BY_KEY)}"
    if sizes.steps < 2:
        return f"--steps must be >= 2 (the first step is a warm-up), got {sizes.steps}"
    size = model_preset("lacgan", sizes.train_preset).net.size
    if size != sizes.size:
        return f"preset {sizes.train_preset} trains {size}-px faces, but the crops are {sizes.size} px (--size)"
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA when torch sees it) | cuda | cpu (the fallback)")
    ap.add_argument("--gpus", type=int, help="GPUs of the 'all' rows (default: every GPU torch sees; CPU fallback: "
                                             "the Dask workers and gloo processes, default 2)")
    ap.add_argument("--size", type=int, help="crop px (default 200 on CUDA: paper presets; 64 on the CPU: demo)")
    ap.add_argument("--frames", type=int,
                    help="frames per generation row, a multiple of 6 (default 288 per GPU; CPU 48)")
    ap.add_argument("--frames-per-shard", type=int, help="frames per shard (default 32; CPU 16)")
    ap.add_argument("--batch-size", type=int, help="frames per edit call (default 32; CPU 16)")
    ap.add_argument("--train-batch-size", type=int, help="global training batch (default 16; CPU 8)")
    ap.add_argument("--steps", type=int, help="training steps per training row (default 20)")
    ap.add_argument("--preset", choices=("paper", "demo", "smoke"),
                    help="config preset of the training rows (default: paper at 200 px, demo at 64)")
    ap.add_argument("--identity", choices=("auto", "dlib", "none"), help="LAC-GAN identity network (default auto)")
    ap.add_argument("--rows", help=f"comma-separated subset of: {', '.join(r.key for r in ROWS)}")
    ap.add_argument("--budget", type=float, default=300, help="seconds for the whole check (rows past it fail)")
    ap.add_argument("--timeout", type=float, default=150, help="seconds per row")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (printed) instead of deleting it")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--setup", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--train-rank", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.train_rank:  # a training process (alone or a torchrun rank)
        return train_rank(Path(a.train_rank), a.rest[1:] if a.rest[:1] == ["--"] else a.rest)
    if a.one:  # a generation row's child
        r = measure_generation(BY_KEY[a.one], Setup(**json.loads(a.setup)), Sizes(**json.loads(a.sizes)),
                               json.loads(a.inputs), Path(a.work))
        print(json.dumps(r))
        return 0

    import torch

    try:
        setup = choose_setup(a.device, torch.cuda.device_count() if torch.cuda.is_available() else 0, a.gpus)
    except ValueError as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        return 2
    sizes = default_sizes(setup)
    given = dict(size=a.size, frames=a.frames, frames_per_shard=a.frames_per_shard, batch=a.batch_size,
                 train_batch=a.train_batch_size, steps=a.steps, preset=a.preset, identity=a.identity)
    sizes = replace(sizes, **{k: v for k, v in given.items() if v is not None})
    sizes = replace(sizes, frames=max(6, sizes.frames // 6 * 6))  # the balanced plan: the same count per subject
    keys = [r.key for r in ROWS] if not a.rows else a.rows.split(",")
    problem = check_options(sizes, keys)
    if problem:
        print(f"gpu_check: {problem}", file=sys.stderr)
        return 2
    for line in header(setup, sizes):
        print(line, flush=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    t0, load0 = time.monotonic(), os.getloadavg()[0]
    try:
        results = run_check(setup, sizes, work, keys, a.budget, a.timeout,
                            log=lambda line: print(line, file=sys.stderr, flush=True))
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(format_table(results, setup))
    print(f"\n{time.monotonic() - t0:.0f} s in all; {os.cpu_count()} CPU cores, load average {load0:.1f} at the "
          f"start, {os.getloadavg()[0]:.1f} at the end" + (f"; work folder kept: {work}" if a.keep else ""))
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
