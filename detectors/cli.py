"""`lacgan detect train|score`: train a detector on an aligned store's training folds, score frames to Parquet.

JAA-Net also trains under torchrun, one process per device (detectors.jaanet.train; docs/detectors.md):

    torchrun --standalone --nproc_per_node 2 -m flows.cli detect train --detector jaanet --store S --out W
"""

from __future__ import annotations

import argparse
import json
import sys

from detectors.openface_config import GROUPINGS, OpenFaceConfig, settings_for

TRAINABLE = ("jaanet", "hogsvm")
ALL = ("jaanet", "hogsvm", "openface")


def register(subparsers) -> None:
    p = subparsers.add_parser("detect", help="AU detectors: train on an aligned store, score frames")
    sub = p.add_subparsers(dest="detect_command", required=True, metavar="ACTION")

    t = sub.add_parser("train", help="train jaanet or hogsvm on every fold but --test-fold")
    t.add_argument("--detector", choices=TRAINABLE, required=True)
    t.add_argument("--store", required=True, help="aligned store (STORE.zarr, from `lacgan align`)")
    t.add_argument("--out", required=True, help="folder for weights + config.json (re-run to resume jaanet)")
    which = t.add_mutually_exclusive_group()
    which.add_argument("--preset", default=None, help="the detector's preset (jaanet: cpu, demo, paper; hogsvm: "
                       "cpu, paper; default cpu); cpu: small input/channels; an unknown one exits 2")
    which.add_argument("--config", default=None, help="the detector's config as JSON (JaaNetConfig or HogSvmConfig "
                       "fields; what the augment flow hands its training step); an unknown field exits 2")
    t.add_argument("--test-fold", type=int, default=3, help="held-out fold, scored after training (default 3)")
    t.add_argument("--minutes", type=float, default=None, help="jaanet: a wall-clock safety net: stop after this "
                                                                 "many minutes (the budget is the epochs)")
    t.add_argument("--epochs", type=int, default=None, help="jaanet: override the config's epoch count")
    t.add_argument("--progress", choices=("bar", "log", "off"), default="bar",
                   help="bar: progress bars; log: a line with rate and ETA every 15 s (what the flow uses); off")
    t.set_defaults(func=_clean_errors(_train))

    s = sub.add_parser("score", help="score frames of an aligned store; writes a Parquet score table")
    s.add_argument("--detector", choices=ALL, required=True)
    s.add_argument("--weights", default=None, help="folder written by `detect train` (jaanet, hogsvm)")
    s.add_argument("--store", required=True, help="aligned store (STORE.zarr)")
    s.add_argument("--out", required=True, help="SCORES.parquet")
    which = s.add_mutually_exclusive_group()
    which.add_argument("--fold", type=int, default=None, help="score only this fold")
    which.add_argument("--rows", choices=("all",), default="all", help="score every aligned row (default)")
    add_openface_args(s)
    s.set_defaults(func=_clean_errors(_score))


def add_openface_args(p, what: str = "openface") -> None:
    """OpenFace's options, shared by `detect score`, `score` and `augment`; unset ones take OpenFaceConfig's
    defaults (detectors.openface_config.settings_for)."""
    d = OpenFaceConfig()
    p.add_argument("--openface-bin", default=None, help=f"{what}: FeatureExtraction, or the folder of OpenFace's "
                   "executables (else $OPENFACE_FEATURE_EXTRACTION, else PATH); --grouping frame uses the "
                   "FaceLandmarkImg beside it")
    p.add_argument("--grouping", choices=GROUPINGS, default=None,
                   help=f"openface: 'sequence' (default {d.grouping!r}): dynamic models per subject-task; 'static': "
                        "-au_static (still a sequence: 7-frame vote); 'frame': FaceLandmarkImg, every frame alone")
    p.add_argument("--openface-model", default=None, help="openface -mloc, e.g. model/main_clnf_general.txt")
    p.add_argument("--timeout", type=float, default=None,
                   help=f"openface: seconds per OpenFace call, a sequence or a batch of frames (default {d.timeout:g})")


def _clean_errors(fn):
    """Bad input (missing store, weights or binary; wrong shapes) ends with one clear line, not a traceback."""

    def run(args) -> int:
        try:
            return fn(args)
        except (FileNotFoundError, KeyError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return run


def _train(args) -> int:
    from detectors.base import detector_preset, read_detector_config, train_detector
    from detectors.metrics import format_table
    from lacgan import distributed

    if distributed.launched() and args.detector != "jaanet":  # every rank would fit and write the same model
        print(f"error: {args.detector} trains in one process; run it without torchrun", file=sys.stderr)
        return 2
    changes = {} if args.epochs is None else {"epochs": args.epochs}
    if args.config:
        cfg = read_detector_config(args.detector, args.config, **changes)
    else:
        cfg = detector_preset(args.detector, args.preset or "cpu", **changes)
    summary = train_detector(args.detector, args.store, args.out, cfg, test_fold=args.test_fold,
                             minutes=args.minutes, progress=args.progress)
    main = distributed.current().main
    distributed.stop()
    if not main:  # rank 0 reports (and alone has the held-out scores)
        return 0
    print(f"{args.detector}: trained on {summary['train_frames']} frames in {summary['train_minutes']} min; "
          f"weights in {args.out}")
    if "metrics" in summary.get("held_out", {}):
        import pandas as pd

        print(format_table(pd.DataFrame(summary["held_out"]["metrics"]),
                           f"{args.detector}, held-out fold {args.test_fold} (F1/acc %, vs always-present)"))
    else:
        print(json.dumps(summary.get("held_out")))
    return 0


def _score(args) -> int:
    from detectors.base import load_detector, write_detector_scores
    from detectors.failures import require_scored, summarise_failures
    from detectors.frames import FrameSource
    from detectors.metrics import au_metrics, format_table

    settings = {}
    if args.detector == "openface":
        settings = settings_for(args.openface_bin, args.openface_model, args.grouping, args.timeout)
    elif args.weights is None:
        print(f"error: --detector {args.detector} needs --weights DIR", file=sys.stderr)
        return 2
    det = load_detector(args.detector, args.weights, **settings)
    frames = FrameSource.from_store(args.store, fold=args.fold)
    df = require_scored(det.score(frames), det.name)  # every frame failed: one line, exit 2, nothing written
    write_detector_scores(df, args.out, det)
    failed = summarise_failures(df)
    print(f"{det.name}: {len(frames)} frames scored -> {args.out}" + (f" ({failed})" if failed else ""))
    if frames.labels is not None and len(frames):
        what = f"fold {args.fold}" if args.fold is not None else "all rows (includes training folds)"
        print(format_table(au_metrics(frames.labels, df, det.supported_aus, frames.frame_ids),
                           f"{det.name} on {what} (F1/acc %, vs always-present)"))
    return 0
