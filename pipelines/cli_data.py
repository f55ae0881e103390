"""`lacgan ingest`, `lacgan align`, `lacgan regions`: dataset -> frame manifest -> aligned store -> region sheet."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import time
from pathlib import Path


def _logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def _user_errors(run):
    """Bad input (the readers' and stores' ValueError subclasses, missing files) ends with its message, not a
    traceback: the message already names the file and the problem."""

    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (ValueError, OSError) as e:
            print(f"lacgan {args.command}: error: {e}", file=sys.stderr)
            return 2

    return wrapped


def register(subparsers) -> None:
    p = subparsers.add_parser("ingest", help="build the frame manifest (Parquet) of a dataset",
                              description="Read a BP4D-layout tree (or a folder + label CSV) into a frame manifest.")
    p.add_argument("--dataset", choices=("bp4d", "folder"), required=True,
                   help="bp4d: BP4D layout (also the embedded cohort); folder: images + a label CSV")
    p.add_argument("--root", type=Path, required=True, help="dataset root")
    p.add_argument("--labels", type=Path, help="label CSV (folder datasets; see docs/data.md)")
    p.add_argument("--out", type=Path, required=True, help="manifest to write (.parquet)")
    p.set_defaults(func=run_ingest)

    p = subparsers.add_parser("align", help="similarity-align every manifest frame into a Zarr store",
                              description="Align faces as JAA-Net does (eyes level, 5-point box x2.9) to SxS crops.")
    p.add_argument("--manifest", type=Path, required=True, help="frame manifest from `lacgan ingest`")
    p.add_argument("--out", type=Path, required=True, help="aligned store to write or resume (.zarr)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--preset", choices=("demo", "paper", "smoke"), default=None,
                      help="crop side := this LAC-GAN preset's net size (demo, smoke: 64; paper: 200); the default, "
                           "demo, is `lacgan train`'s default preset, so the two agree without saying")
    size.add_argument("--size", type=int, default=None, help="crop side S in pixels instead (the LAC-GAN config "
                                                              "trained on the store must have the same)")
    p.add_argument("--landmarks", choices=("auto", "cohort", "dlib"), default="auto",
                   help="auto: the cohort's own landmarks for a cohort root, dlib otherwise")
    p.add_argument("--chunk", type=int, default=64, help="rows per chunk (unit of work and of resumption)")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.set_defaults(func=run_align)

    p = subparsers.add_parser("devsplit", help="a development manifest: test fold held out, some training "
                                               "subjects as validation fold 3 (for choosing designs)")
    p.add_argument("--manifest", type=Path, required=True, help="frame manifest from `lacgan ingest`")
    p.add_argument("--validate", required=True, help="comma-separated validation subjects (training folds only)")
    p.add_argument("--test-fold", type=int, default=3, help="the real test fold, whose subjects are left out")
    p.add_argument("--out", type=Path, required=True, help="development manifest to write (.parquet)")
    p.set_defaults(func=run_devsplit)

    p = subparsers.add_parser("regions", help="PNG overlay of the 12 AU attention maps on aligned faces")
    p.add_argument("--store", type=Path, required=True, help="aligned store from `lacgan align`")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--n", type=int, default=6, help="number of faces per panel")
    p.set_defaults(func=run_regions)


@_user_errors
def run_devsplit(args: argparse.Namespace) -> int:
    from manifests.folds import development_split
    from manifests.schema import manifest_root, read_manifest, write_manifest

    df = development_split(read_manifest(args.manifest), args.validate.split(","), args.test_fold)
    write_manifest(df, args.out, root=manifest_root(args.manifest))
    used = df[df["status"] == "ok"]
    print(f"{args.out}: {used['subject'].nunique()} subjects usable; validation (fold 3): "
          f"{sorted(used.loc[used['fold'] == 3, 'subject'].unique())}; test fold {args.test_fold} held out")
    return 0


@_user_errors
def run_ingest(args: argparse.Namespace) -> int:
    _logging()
    from manifests.schema import write_manifest

    t0 = time.perf_counter()
    if args.dataset == "bp4d":
        if args.labels:
            raise ValueError("--labels is for --dataset folder; a BP4D tree carries its own AU_OCC files")
        from manifests.bp4d import read_bp4d

        df = read_bp4d(args.root)
    else:
        if not args.labels:
            raise ValueError("--dataset folder needs --labels CSV")
        from manifests.folder import read_folder

        df = read_folder(args.root, args.labels)
    path = write_manifest(df, args.out, root=args.root)
    dt = time.perf_counter() - t0
    print(summary(df))
    print(f"wrote {path} ({len(df)} rows in {dt:.1f} s, {len(df) / max(dt, 1e-9):.0f} frames/s)")
    return 0


def summary(df) -> str:
    """Counts a person checks after ingesting: subjects, frames, folds, statuses, label coverage."""
    ok = df["status"] == "ok"
    lines = [f"dataset {df['dataset'].iat[0]}: {df['subject'].nunique()} subjects, "
             f"{df.groupby(['subject', 'task']).ngroups} sequences, {len(df)} labelled frames ({ok.sum()} ok)"]
    for fold, g in df.groupby("fold"):
        lines.append(f"  fold {fold}: {g['subject'].nunique()} subjects ({' '.join(sorted(g['subject'].unique()))}), "
                     f"{len(g)} frames")
    reasons = df.loc[~ok, "status"].str.split(":").str[0].value_counts()
    for reason, count in reasons.items():
        example = df.loc[df["status"].str.startswith(reason), "status"].iat[0]
        lines.append(f"  status {reason!r}: {count} frames (e.g. {example})")
    return "\n".join(lines)


@_user_errors
def run_align(args: argparse.Namespace) -> int:
    _logging()
    import numpy as np

    from manifests.aligned import FAILED, OK, AlignedStore
    from pipelines.align import FAILURE_LIST, align_manifest

    t0 = time.perf_counter()
    before = AlignedStore.open(args.out).status() if args.out.exists() else None
    from lacgan.config import preset

    size = args.size or preset(args.preset or "demo").net.size
    out = align_manifest(args.manifest, args.out, size=size, landmarks=args.landmarks, chunk=args.chunk,
                         workers=args.workers)
    dt = time.perf_counter() - t0
    store = AlignedStore.open(out)
    st = store.status()
    done = int(len(st) if before is None else (before == 0).sum())
    print(f"{out}: {int((st == OK).sum())} aligned, {int((st == FAILED).sum())} failed of {len(st)} rows "
          f"({store.size}px, landmarks: {store.group.attrs['landmark_source']}); "
          f"{done} rows processed in {dt:.1f} s ({done / max(dt, 1e-9):.0f} frames/s)")
    if (st == FAILED).any():
        print(failure_summary(out / FAILURE_LIST, Path(store.group.attrs["root"])))
    return 0 if np.any(st == OK) or len(st) == 0 else 1


def failure_summary(failure_list: Path, root: Path, most: int = 3) -> str:
    """Per kind of failure (the reason up to its first colon): the count and the first `most` images (under the
    dataset `root`); then where the full list is."""
    import pandas as pd

    df = pd.read_csv(failure_list, dtype=str, keep_default_na=False)
    lines = []
    for kind, g in sorted(df.groupby(df["reason"].str.split(":").str[0]), key=lambda kv: -len(kv[1])):
        more = f", and {len(g) - most} more" if len(g) > most else ""
        lines.append(f"  failed, {kind}: {len(g)} ({', '.join(str(root / p) for p in g['image_path'].head(most))}"
                     f"{more})")
    return "\n".join(lines + [f"  every failed row and its reason: {failure_list}"])


@_user_errors
def run_regions(args: argparse.Namespace) -> int:
    _logging()
    from pipelines.regions_sheet import write_regions_sheet

    print(f"wrote {write_regions_sheet(args.store, args.out, n=args.n)}")
    return 0
