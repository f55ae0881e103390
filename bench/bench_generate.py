"""Generation throughput, in one run: model-only vs the sharded pipeline at 64 and 200 px (same frames, same
batch), the pipeline in-process vs on 1 and 2 Dask workers, and optionally the same for an older checkout of the
code (before/after), all measured side by side.

    python bench/bench_generate.py [--baseline DIR] [--sizes 64,200] [--frames 3072,512] [--rounds 2]

Inputs, built once per size in a temporary folder and shared by every measurement: an aligned store of random
6-subject crops with jittered landmarks (tests/pipeline_fixtures.make_store; region windows as on real faces), a
LAC-GAN checkpoint after one training step (`lacgan train --steps 1`: preset demo at 64 px, paper at 200 px;
speed does not depend on the weights) and a balanced plan.

Measurements, each in its own subprocess running the code of one checkout (this one, or --baseline DIR, e.g.
`git worktree add /tmp/before <commit>`): `model` = `Editor.edit` on the plan's frames already in memory, in
batches, with the settings (generator path) that the in-process pipeline run of the same round chose;
`0` = `pipelines.generate.generate` in-process; `W` = on W Dask workers with GenerateConfig's thread rule; `WxT` =
W workers with T torch threads each. Pipeline wall time starts once the cluster is up and the path is chosen, and
includes each worker's checkpoint load. The machine may be shared, so the measurements are interleaved in
--rounds rounds (every checkout and configuration once per round) and the table gives medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESET = {64: "demo", 200: "paper"}  # LAC-GAN preset per crop size


# ---- one measurement (a subprocess running one checkout's code) ---------------------------------------------
def _model_only(editor, images, landmarks, targets, labels, batch_size: int) -> float:
    """frames/s of editor.edit over the frames (held in memory), batch by batch as a shard task runs them: with the
    sources' labels when the editor uses them (as pipelines.shard_task.edit_inputs passes them; without them
    LAC-GAN would also run its regressor to read the sources' AUs, work the pipeline does not do)."""
    def edit(sl):
        extra = {"source_labels": labels[sl]} if getattr(editor, "uses_source_labels", False) else {}
        return editor.edit(images[sl], landmarks[sl], targets[sl], batch_size=batch_size, **extra)

    edit(slice(0, batch_size))  # warm-up
    t = time.perf_counter()
    for i in range(0, len(images), batch_size):
        edit(slice(i, i + batch_size))
    return len(images) / (time.perf_counter() - t)


def measure(spec: str, store: str, ckpt: str, plan: str, out: str, batch: int, per_shard: int,
            settings: dict) -> dict:
    import numpy as np
    import torch

    from manifests.aligned import AlignedStore
    from manifests.aus import AU_COLUMNS
    from pipelines import generate as gen
    from pipelines.plan import read_plan

    if spec == "model":
        p = read_plan(plan)
        images, landmarks, labels = AlignedStore.open(store).read(p["source_row"].to_numpy())
        editor = gen.load_editor(ckpt, "cpu", gen.DEFAULT_EDITOR)
        if settings and hasattr(editor, "configure"):
            editor.configure(**settings)
        fps = _model_only(editor, images, landmarks.astype(np.float32), p[list(AU_COLUMNS)].to_numpy(np.int8), labels,
                          batch)
        return dict(fps=fps, threads=torch.get_num_threads(), settings=settings)
    w, _, threads = spec.partition("x")
    kw = dict(frames_per_shard=per_shard, batch_size=batch, workers=int(w))
    if threads:
        kw["threads"] = int(threads)
    t0 = time.perf_counter()
    s = gen.generate(plan, store, ckpt, out, gen.GenerateConfig(**kw))
    meta = json.loads((Path(out) / "generation.json").read_text())
    busy = s.model_s + s.io_s + s.load_s
    return dict(fps=s.frames_per_s, startup=time.perf_counter() - t0 - s.seconds, wall=s.seconds,
                model_pct=100 * s.model_s / busy, io_pct=100 * s.io_s / busy, load_pct=100 * s.load_s / busy,
                threads=meta.get("threads_per_worker", torch.get_num_threads() if w == "0" else "1 (Dask's)"),
                settings=meta.get("editor_settings") or {}, measured=meta.get("path_measurement") or {})


def _run_one(code: Path, spec: str, inputs: dict, out: Path, batch: int, per_shard: int, settings: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", spec, "--code", str(code), "--settings",
           json.dumps(settings), "--batch-size", str(batch), "--frames-per-shard", str(per_shard), "--out", str(out),
           "--inputs", json.dumps(inputs)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=code)
    if r.returncode != 0:
        raise SystemExit(f"measurement {spec} ({code}) failed:\n{r.stderr[-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---- inputs -------------------------------------------------------------------------------------------------
def _inputs(tmp: Path, size: int, frames: int) -> dict:
    """{store, ckpt, plan} for `frames` synthetic frames at `size` px (built with this checkout's code)."""
    from pipeline_fixtures import make_store
    from pipelines.plan import PlanConfig, build_plan

    subjects = ("F001", "F002", "M001", "M002", "M003", "F003")
    store = make_store(tmp, subjects=subjects, frames=max(8, frames // len(subjects) // 2), size=size, chunk=64,
                       jitter=0.01)
    ckpt = tmp / "lacgan"
    cmd = [sys.executable, "-m", "flows.cli", "train", "--store", str(store), "--out", str(ckpt), "--preset",
           PRESET.get(size, "demo"), "--steps", "1", "--batch-size", "2", "--identity", "none", "--no-progress",
           "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"lacgan train failed: {r.stderr.strip()[-500:]}")
    plan = build_plan(store, tmp / "plan.parquet", PlanConfig(policy="balanced", count=frames // len(subjects), seed=0))
    return dict(store=str(store), ckpt=str(ckpt), plan=str(plan))


# ---- tables -------------------------------------------------------------------------------------------------
def _med(xs: list[dict], key: str) -> float:
    return statistics.median(x[key] for x in xs)


def _path(settings: dict) -> str:
    return "loop" if settings.get("loop") else "grouped"


def print_tables(res: dict, sizes, codes, specs, batches) -> None:
    print("| size | code | batch | path | model-only frames/s | pipeline in-process frames/s | pipeline / model |")
    print("|---|---|---|---|---|---|---|")
    for size, batch in zip(sizes, batches):
        for code in codes:
            m, p = res[size][code]["model"], res[size][code]["0"]
            print(f"| {size} | {code} | {batch} | {_path(p[-1]['settings'])} | {_med(m, 'fps'):.1f} | "
                  f"{_med(p, 'fps'):.1f} | {_med(p, 'fps') / _med(m, 'fps'):.2f} |")
    print("\n| size | code | workers | torch threads each | frames/s | vs in-process | vs 1 worker, 1 thread | "
          "startup s | wall s | model % | I/O % | load % | path |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        for code in codes:
            r = res[size][code]
            base = _med(r["0"], "fps")
            one = r.get("1x1", r.get("1"))
            for spec in (s for s in specs if s in r and s != "model"):
                xs = r[spec]
                vs1 = f"{_med(xs, 'fps') / _med(one, 'fps'):.2f}" if one else "-"
                print(f"| {size} | {code} | {'in-process' if spec == '0' else spec.partition('x')[0]} | "
                      f"{xs[-1]['threads']} | {_med(xs, 'fps'):.1f} | {_med(xs, 'fps') / base:.2f} | {vs1} | "
                      f"{_med(xs, 'startup'):.1f} | {_med(xs, 'wall'):.1f} | {_med(xs, 'model_pct'):.0f} | "
                      f"{_med(xs, 'io_pct'):.0f} | {_med(xs, 'load_pct'):.0f} | {_path(xs[-1]['settings'])} |")
    for size in sizes:
        for code in codes:
            for spec, xs in res[size][code].items():
                for x in xs:
                    if x.get("measured", {}).get("frames_per_s"):
                        rates = ", ".join(f"{k} {v:.1f}" for k, v in x["measured"]["frames_per_s"].items())
                        print(f"path measurement, {size} px, {code}, run {spec}: {rates} frames/s on "
                              f"{x['measured']['frames']} frames -> {x['measured']['choice']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=None, help="an older checkout of this project to measure alongside")
    ap.add_argument("--sizes", default="64,200", help="comma-separated crop sizes (64: demo preset, 200: paper)")
    ap.add_argument("--frames", default="3072,512", help="frames per size, comma-separated like --sizes (enough that a "
                    "worker's start, 1-2 s of checkpoint load and first-call warm-up, is a small share, as in mass "
                    "generation)")
    ap.add_argument("--frames-per-shard", default="64,16", help="shard size per size")
    ap.add_argument("--batch-size", default="32,16", help="frames per Editor.edit call per size (model and pipeline)")
    ap.add_argument("--workers", default="0,model,1x1,1,2",
                    help="measurements per round: 0 = in-process (first), model = model-only, W = W workers with "
                         "the thread rule, WxT = W workers with T threads")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (medians are reported)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--code", help=argparse.SUPPRESS)
    ap.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:  # a subprocess measuring one configuration with the code of checkout a.code
        sys.path[:0] = [a.code, str(Path(a.code) / "tests")]
        i = json.loads(a.inputs)
        r = measure(a.one, i["store"], i["ckpt"], i["plan"], a.out, int(a.batch_size), int(a.frames_per_shard),
                    json.loads(a.settings))
        print(json.dumps(r))
        return 0
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    sizes = [int(x) for x in a.sizes.split(",")]
    frames = [int(x) for x in a.frames.split(",")]
    shards = [int(x) for x in a.frames_per_shard.split(",")]
    batches = [int(x) for x in a.batch_size.split(",")]
    specs = a.workers.split(",")
    codes = {"this": ROOT} | ({"baseline": Path(a.baseline).resolve()} if a.baseline else {})
    tmp = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    load0, t0 = os.getloadavg()[0], time.time()
    res: dict = {s: {c: {} for c in codes} for s in sizes}
    try:
        inputs = {s: _inputs(tmp / str(s), s, f) for s, f in zip(sizes, frames)}
        for rnd in range(a.rounds):
            for size, per_shard, batch in zip(sizes, shards, batches):
                for code, path in codes.items():
                    settings = {}
                    for spec in specs:
                        if code == "baseline" and "x" in spec:
                            continue  # the baseline has no thread setting
                        r = _run_one(path, spec, inputs[size], tmp / "out", batch, per_shard, settings)
                        if spec == "0":
                            settings = r["settings"]
                        res[size][code].setdefault(spec, []).append(r)
                        print(f"round {rnd + 1}, {size} px, {code}, {spec}: {r['fps']:.1f} frames/s "
                              f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ngeneration bench: {os.cpu_count()} CPU cores, {a.rounds} interleaved rounds (medians), "
          f"{(time.time() - t0) / 60:.0f} min, load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end "
          f"(the machine may be shared)\n")
    print_tables(res, sizes, list(codes), specs, batches)
    print("\nmodel-only: Editor.edit on frames in memory (this process's torch threads); pipeline: reading "
          "sources, editing, writing shards and parts;\nmodel/I/O/load %: shares of summed task time "
          "(Editor.edit / reads+writes / checkpoint loading).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
