"""OpenFace groupings side by side: calls per run, time inside the OpenFace calls, and the wrapper's own overhead
(writing frames, reading CSVs), printed as a Markdown table.

    python bench/bench_openface.py [--openface-bin PATH] [--frames 384] [--size 64] [--sequence 24]
                                   [--batches 256,24] [--repeat 3]

Without --openface-bin it runs the labelled TEST STAND-INS (tests/openface_standin, NOT OpenFace): then the
"in OpenFace calls" column is the stand-in's time (a Python start-up plus its toy CSV writing) and means nothing
about OpenFace; the call counts and the wrapper's overhead are what it measures. With a real install (the folder
of OpenFace's executables, or FeatureExtraction next to FaceLandmarkImg) every column is real. Frames are random
uniform-grey images, `--sequence` frames per subject-task (the demo's cohort: 24), all groupings timed in one run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import detectors.openface as of
from detectors.frames import FrameSource

STANDIN = Path(__file__).resolve().parent.parent / "tests" / "openface_standin"
REAL_STARTUP_S = (1.3, 2.4)  # OpenFace 2.0.6 start-up per call, measured by the project lead (not on this machine)


def _frames(n: int, size: int, per_sequence: int) -> FrameSource:
    rng = np.random.default_rng(0)
    imgs = np.repeat(rng.integers(0, 256, (n, 1, 1, 1), dtype=np.uint8), size, 1).repeat(size, 2).repeat(3, 3)
    return FrameSource.from_arrays(imgs, sequences=(np.arange(n) // per_sequence).astype(str))


class _Timed:
    """Wraps detectors.openface.run_command: counts calls and the seconds spent inside them."""

    def __init__(self, run):
        self.run, self.calls, self.seconds = run, 0, 0.0

    def __call__(self, *a, **kw):
        t = time.perf_counter()
        try:
            return self.run(*a, **kw)
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - t


def measure(det: of.OpenFaceDetector, frames: FrameSource, repeat: int) -> dict:
    """Best-of-`repeat` wall time of det.score(frames), with the calls and time inside OpenFace of that run."""
    best = None
    original = of.run_command
    try:
        for _ in range(repeat):
            timed = of.run_command = _Timed(original)
            t = time.perf_counter()
            df = det.score(frames)
            wall = time.perf_counter() - t
            if best is None or wall < best["wall"]:
                best = {"wall": wall, "calls": timed.calls, "inside": timed.seconds,
                        "failed": int((df.drop_duplicates("frame_id")["status"] != "ok").sum())}
    finally:
        of.run_command = original
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--openface-bin", default=None, help="OpenFace's bin folder (default: the TEST STAND-INS)")
    ap.add_argument("--frames", type=int, default=384, help="frames (default: the demo's 384 synthetic frames)")
    ap.add_argument("--size", type=int, default=64, help="frame side in px (default: the demo's 64)")
    ap.add_argument("--sequence", type=int, default=24, help="frames per subject-task sequence")
    ap.add_argument("--batches", default="256,24", help="FaceLandmarkImg batch sizes to time (grouping frame)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    binary = args.openface_bin or str(STANDIN)
    frames = _frames(args.frames, args.size, args.sequence)
    runs = [("sequence", {}), ("static", {})] + [("frame", {"batch": int(b)}) for b in args.batches.split(",")]
    rows = []
    for grouping, extra in runs:
        det = of.OpenFaceDetector.load(binary=binary, grouping=grouping, **extra)
        det.score(frames.subset(np.arange(min(4, len(frames)))))  # warm-up (page cache, imports)
        m = measure(det, frames, args.repeat)
        wrapper = m["wall"] - m["inside"]
        label = grouping + (f", batch {extra['batch']}" if extra else "")
        rows.append((label, m["calls"], f"{m['wall']:.2f}", f"{m['inside']:.2f}", f"{wrapper:.2f}",
                     f"{1000 * wrapper / len(frames):.2f}", f"{len(frames) / m['wall']:.0f}", m["failed"],
                     "–".join(f"{m['calls'] * s:.0f}" for s in REAL_STARTUP_S)))
    what = "TEST STAND-INS (NOT OpenFace)" if not args.openface_bin else args.openface_bin
    print(f"{len(frames)} frames of {args.size}×{args.size} px, {args.sequence} per sequence; executables: {what}; "
          f"best of {args.repeat}")
    print("| grouping | OpenFace calls | wall s | in OpenFace calls s | wrapper s | wrapper ms/frame | frames/s "
          "| failed | start-up on a real install, s (calls × 1.3–2.4 s) |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(map(str, r)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
