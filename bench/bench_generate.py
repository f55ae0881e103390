"""Generation throughput: frames/s and Zarr write MB/s for 0 (in-process), 1 and 2 Dask workers, and the share of
task time spent in the model (Editor.edit) vs I/O (reading sources, writing shards and parts).

    python bench/bench_generate.py --store runs/demo/augment/aligned.zarr --checkpoint runs/demo/augment/lacgan

Each configuration generates the same balanced plan into a fresh folder. Wall time starts once the cluster is
up (cluster start-up is printed separately) and includes the first checkpoint load in each worker.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    from pipelines.generate import GenerateConfig, generate
    from pipelines.plan import PlanConfig, build_plan, store_frames

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="runs/demo/augment/aligned.zarr", help="aligned store")
    ap.add_argument("--checkpoint", default="runs/demo/augment/lacgan", help="LAC-GAN run or checkpoint dir")
    ap.add_argument("--frames", type=int, default=512, help="frames to generate per configuration")
    ap.add_argument("--frames-per-shard", type=int, default=64)
    ap.add_argument("--workers", default="0,1,2", help="comma-separated worker counts (0 = in-process)")
    args = ap.parse_args(argv)
    for p in (args.store, args.checkpoint):
        if not Path(p).exists():
            print(f"{p} does not exist: run `lacgan augment --out runs/demo/augment` first, or pass "
                  f"--store/--checkpoint", file=sys.stderr)
            return 2

    tmp = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    try:
        subjects = store_frames(args.store).query("ok")["subject"].nunique()
        plan = build_plan(args.store, tmp / "plan.parquet",
                          PlanConfig(policy="balanced", count=max(1, args.frames // subjects), seed=0))
        rows = []
        for w in (int(x) for x in args.workers.split(",")):
            t0 = time.perf_counter()
            s = generate(plan, args.store, args.checkpoint, tmp / f"out-{w}",
                         GenerateConfig(frames_per_shard=args.frames_per_shard, workers=w))
            total = time.perf_counter() - t0
            busy = s.model_s + s.io_s + s.load_s
            rows.append((w, s.frames, total - s.seconds, s.seconds, s.frames_per_s,
                         s.bytes_written / 2**20 / max(s.write_s, 1e-9), 100 * s.model_s / busy,
                         100 * s.io_s / busy, 100 * s.load_s / busy))
        head = ("workers", "frames", "startup s", "wall s", "frames/s", "write MB/s", "model %", "I/O %", "load %")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print(f"| {'in-process' if r[0] == 0 else r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.1f} | "
                  f"{r[5]:.0f} | {r[6]:.0f} | {r[7]:.0f} | {r[8]:.0f} |")
        print("\nwrite MB/s: image bytes per second of the Zarr shard writes inside the tasks (uncompressed shards);"
              "\nmodel/I/O/load %: shares of summed task time (Editor.edit / reads+writes / checkpoint loading).")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
