"""`lacgan cohort` (write the embedded cohort) and `lacgan sheet` (a PNG of its faces, each AU off/on)."""

from __future__ import annotations

import argparse

from .config import CohortConfig


def _cohort(args: argparse.Namespace) -> int:
    from .writer import write_cohort_timed

    defaults = CohortConfig()
    config = CohortConfig(
        subjects=args.subjects,
        tasks=args.tasks,
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        workers=args.workers,
        jpeg_quality=defaults.jpeg_quality,
    )
    root, written, seconds = write_cohort_timed(args.out, config)
    import json

    stats = json.loads((root / "cohort.json").read_text())["statistics"]
    rate = f"{written / seconds:.1f} frames/s" if written else "nothing left to render"
    print(f"cohort at {root}: {config.subjects} subjects x {config.tasks} tasks, {stats['frames']} coded frames; "
          f"rendered {written} frames in {seconds:.1f} s ({rate}, {config.workers} workers)")  # fmt: skip
    print("AU base rates (target):")
    print("  " + "  ".join(f"{au} {v:.2f} ({stats['target_rates'][au]:.2f})" for au, v in stats["base_rates"].items()))
    print(f"  unknown (9) fraction {stats['unknown_fraction']:.3f}")
    return 0


def _sheet(args: argparse.Namespace) -> int:
    from .sheet import write_sheet

    out = write_sheet(args.root, args.out, subjects=args.subjects)
    print(f"wrote {out}")
    return 0


def register(subparsers) -> None:
    d = CohortConfig()
    p = subparsers.add_parser("cohort", help="write the embedded synthetic cohort in BP4D's layout")
    p.add_argument("--out", required=True, help="cohort root folder (re-run to resume)")
    p.add_argument("--subjects", type=int, default=d.subjects, help=f"number of subjects (default {d.subjects})")
    p.add_argument("--tasks", type=int, default=d.tasks, help=f"tasks per subject, at most 8 (default {d.tasks})")
    p.add_argument("--frames", type=int, default=d.frames, help=f"coded frames per task (default {d.frames})")
    p.add_argument("--size", type=int, default=d.size, help=f"image side in pixels (default {d.size})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--workers", type=int, default=d.workers, help=f"rendering processes (default {d.workers})")
    p.set_defaults(func=_cohort)

    s = subparsers.add_parser("sheet", help="PNG sheet of cohort faces, each AU off and on")
    s.add_argument("--root", required=True, help="cohort root written by `lacgan cohort`")
    s.add_argument("--out", required=True, help="PNG file to write")
    s.add_argument("--subjects", type=int, default=4, help="how many subjects (rows) to show (default 4)")
    s.set_defaults(func=_sheet)
