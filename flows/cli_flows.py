"""`lacgan plan | generate | counterfactual | score | report | compare | augment | serve`.

The step commands call pipelines/ directly (no Prefect, no server); `augment` runs the umbrella Prefect flow
in-process in Prefect's ephemeral mode; `serve` starts a local server if none is configured and serves the
deployments (flows.deployments). Prefect is imported only by the last two, when they run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from detectors.cli import add_openface_args


def _clear_errors(func):
    """Known bad-input errors (bad plan, missing checkpoint or weights, incomplete store) print one line, exit 2."""
    import functools

    @functools.wraps(func)
    def run(args) -> int:
        from detectors.failures import DetectorFailed
        from detectors.openface import OpenFaceNotFound
        from detectors.openface_config import OpenFaceSettingsError
        from lacgan.checkpoint import CheckpointError
        from lacgan.typed import ConfigError
        from manifests.aligned import StoreError
        from manifests.schema import ManifestError
        from pipelines.generate import GenerationError
        from pipelines.plan import PlanError
        from pipelines.compare import ComparisonError
        from pipelines.counterfactual import CounterfactualError
        from pipelines.score import ScoreError
        from pipelines.synth_store import SynthStoreError

        try:
            return func(args)
        except (PlanError, GenerationError, SynthStoreError, ScoreError, StoreError, ManifestError, DetectorFailed,
                OpenFaceNotFound, OpenFaceSettingsError, CounterfactualError, ComparisonError,
                CheckpointError, ConfigError) as e:
            print(f"lacgan {args.command}: error: {e}", file=sys.stderr)
            return 2

    return run


def _rates(text: str | None) -> dict | None:
    if not text:
        return None
    out = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"--rates: {item!r} is not AU=RATE (e.g. AU12=0.5)") from None
    return out


@_clear_errors
def run_plan(args) -> int:
    from pipelines.plan import PlanConfig, achieved_rates, build_plan, read_plan

    cfg = PlanConfig(policy=args.policy, test_fold=args.test_fold, count=args.count, rates=_rates(args.rates),
                     subjects=tuple(args.subjects.split(",")) if args.subjects else None, seed=args.seed,
                     source=args.source)
    path = build_plan(args.store, args.out, cfg)
    df = read_plan(path)
    print(f"plan {path}: {len(df)} synthetic frames, {df['subject'].nunique()} subjects, policy {args.policy}, "
          f"sources {args.source}")
    print(achieved_rates(df).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


@_clear_errors
def run_generate(args) -> int:
    import logging

    from pipelines.generate import GenerateConfig, generate

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = GenerateConfig(frames_per_shard=args.frames_per_shard, batch_size=args.batch_size, workers=args.workers,
                         gpus=args.gpus, scheduler=args.scheduler, threads=args.threads, device=args.device,
                         path=args.path, precision=args.precision, strength=args.strength, editor=args.editor)
    s = generate(args.plan, args.store, args.checkpoint, args.out, cfg)
    print(f"{s.out}: {s.frames} frames in {s.shards} shards ({s.generated} generated now, {s.skipped} were done); "
          f"{s.frames_per_s:.2f} frames/s")
    return 0


@_clear_errors
def run_counterfactual(args) -> int:
    from pipelines.counterfactual import CounterfactualConfig, write_counterfactuals

    out = write_counterfactuals(args.plan, args.store, args.out, CounterfactualConfig(workers=args.workers))
    print(f"counterfactual frames of {args.plan}: {out}")
    return 0


@_clear_errors
def run_score(args) -> int:
    import logging

    from detectors.openface_config import settings_for
    from pipelines.score import DetectorSpec, score_all

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    openface = settings_for(args.openface_bin, args.openface_model, args.grouping, args.timeout)
    specs = [DetectorSpec.parse(d) for d in args.detector]
    specs = [DetectorSpec(s.name, s.weights, openface) if s.name == "openface" else s for s in specs]
    print(score_all(args.store, args.synthetic, specs, args.out, args.test_fold, args.counterfactual))
    return 0


@_clear_errors
def run_report(args) -> int:
    from pipelines.report import ReportConfig, write_report

    cfg = ReportConfig(checkpoint=args.checkpoint, compare_paper=args.paper, identity_pairs=args.identity_pairs)
    path = write_report(args.scores, args.synthetic, args.store, args.out, cfg, counterfactual=args.counterfactual)
    print(f"report: {path}\n")
    print((Path(path).parent / "table1.md").read_text())
    return 0


@_clear_errors
def run_compare(args) -> int:
    from pipelines.compare import CompareConfig, ComparisonError, write_comparison

    reports = {}
    for item in args.report:
        name, sep, folder = item.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise ComparisonError(f"--report: {item!r} is not NAME=REPORT_DIR (e.g. GANimation=runs/x/report_ganimation)")
        reports[name.strip()] = folder.strip()
    path = write_comparison(reports, args.out, CompareConfig(grid_faces=args.faces))
    print(f"comparison: {path}")
    return 0


def prefect_env(home: Path) -> None:
    """Defaults for running Prefect here: a PREFECT_HOME of our own, no telemetry, a patient ephemeral server."""
    os.environ.setdefault("PREFECT_HOME", str(home.resolve()))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "lacgan")  # generation throughput in the flow logs


def _sigterm_as_interrupt() -> None:
    """SIGTERM ends the run like Ctrl-C, so Prefect stops its ephemeral server instead of orphaning it."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _job_changes(args) -> dict:
    """`--config FILE` (a partial JobConfig dict as JSON) with every `--set FIELD=VALUE` laid over it."""
    import json

    from lacgan.typed import ConfigError, nest, overlay

    changes = {}
    if args.config:
        try:
            changes = json.loads(Path(args.config).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{args.config}: not a readable JSON job config ({e})") from None
        if not isinstance(changes, dict):
            raise ConfigError(f"{args.config}: a job config is a JSON object of JobConfig fields")
    return overlay(changes, nest(args.set or []))


@_clear_errors
def run_augment(args) -> int:
    import json
    import time

    from detectors.openface_config import optional_settings
    from pipelines.job import compose_job, job_changes

    openface = optional_settings(args.openface_bin, args.openface_model, args.grouping, args.timeout)  # bad options
    changes = _job_changes(args)
    job = compose_job(args.preset, job_changes(changes, args.test_fold, args.workers, args.scheduler, openface))
    if args.show_config:  # the composed job, checked, and nothing run
        print(json.dumps(job.to_dict(), indent=1, sort_keys=True))
        return 0
    _sigterm_as_interrupt()
    prefect_env(Path(args.out).parent / ".prefect")
    from flows.augment import augment

    openface = {k: v for k, v in (("openface_model", args.openface_model), ("openface_grouping", args.grouping),
                                  ("openface_timeout", args.timeout)) if v is not None}  # else the flow's defaults
    t0 = time.perf_counter()
    path = augment(out=args.out, preset=args.preset, bp4d_root=args.bp4d_root, workers=args.workers,
                   scheduler=args.scheduler, openface_bin=args.openface_bin, folds=args.folds,
                   baseline=args.baseline, test_fold=args.test_fold, config=changes or None, **openface)
    minutes = (time.perf_counter() - t0) / 60
    print(f"\naugment finished in {minutes:.1f} min; report: {path}\n")
    print((Path(path).parent / "table1.md").read_text())
    if args.baseline:
        from flows.augment import Layout

        folders = [Layout.under(args.out)] if args.folds == "test" else [Layout.under(Path(args.out) / f"fold-{k}")
                                                                         for k in (1, 2, 3)]
        for lay in folders:
            print(f"side by side with {args.baseline}: {Path(lay.baseline(args.baseline).comparison) / 'comparison.md'}")
    return 0


def run_serve(args) -> int:
    _sigterm_as_interrupt()  # and the local server started for serving is stopped too
    prefect_env(Path(args.runs) / ".prefect")
    from flows.deployments import serve

    return serve(args.runs, args.host, args.port)


def register(subparsers) -> None:
    p = subparsers.add_parser("plan", help="plan synthetic frames: source frame + target AUs per frame (Parquet)")
    p.add_argument("--store", required=True, help="aligned store (STORE.zarr)")
    p.add_argument("--out", required=True, help="PLAN.parquet to write")
    p.add_argument("--policy", choices=("match-test", "balanced", "rates"), default="match-test")
    p.add_argument("--test-fold", type=int, default=3, help="match-test: the fold to mirror (default 3)")
    p.add_argument("--count", type=int, default=100, help="balanced/rates: frames per subject")
    p.add_argument("--rates", default=None, help="AU presence rates, e.g. AU12=0.5,AU4=0.3 (balanced: default 0.5)")
    p.add_argument("--subjects", default=None, help="balanced/rates: comma-separated subjects (default all)")
    p.add_argument("--source", choices=("random", "neutral", "sequence-random", "sequence-neutral"),
                   default="random", help="source of each frame: any other frame of the subject, or its least "
                   "expressive frames; sequence-*: within the target frame's own sequence (see docs/pipeline.md)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_plan)

    g = subparsers.add_parser("generate", help="generate a plan's frames on Dask into a sharded Zarr store "
                                               "(re-run to resume)")
    g.add_argument("--plan", required=True)
    g.add_argument("--store", required=True, help="aligned store the plan's source rows come from")
    g.add_argument("--checkpoint", required=True, help="LAC-GAN run directory or checkpoint directory")
    g.add_argument("--out", required=True, help="output folder (synthetic.zarr, parts/, generation.json)")
    g.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes; 0 = no Dask")
    g.add_argument("--gpus", type=int, default=0, help="one dask-cuda worker per GPU on this machine "
                                                       "(needs the extra: pip install 'lacgan-augment[gpu]')")
    g.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (e.g. dask-cuda)")
    g.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: cores // workers)")
    g.add_argument("--path", choices=("auto", "measure", "grouped", "loop"), default="auto",
                   help="LAC-GAN generator path (auto: per AU on CPU, grouped on CUDA; measure: time both once)")
    g.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                   help="bf16: generator under bfloat16 autocast (where the device supports it)")
    g.add_argument("--strength", type=float, default=None,
                   help="LAC-GAN edit strength: the learned edit x this (default: the checkpoint's net.edit_strength)")
    g.add_argument("--frames-per-shard", type=int, default=64)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: CUDA when present)")
    g.add_argument("--editor", default="auto", help="auto: the editor of the checkpoint's model kind (LAC-GAN or "
                                                    "GANimation); or the import path of an editor class")
    g.set_defaults(func=run_generate)

    c = subparsers.add_parser("counterfactual", help="embedded cohort: render each plan row's source with its "
                                                     "target AUs (the ground truth of the edit)")
    c.add_argument("--plan", required=True)
    c.add_argument("--store", required=True, help="aligned store of an embedded cohort")
    c.add_argument("--out", required=True, help="output folder (synthetic-store layout; re-run to resume)")
    c.add_argument("--workers", type=int, default=2, help="render processes")
    c.set_defaults(func=run_counterfactual)

    s = subparsers.add_parser("score", help="score real test frames and synthetic frames with AU detectors")
    s.add_argument("--store", required=True)
    s.add_argument("--synthetic", required=True, help="output folder of `lacgan generate`")
    s.add_argument("--detector", action="append", required=True,
                   help="NAME=WEIGHTS_DIR (jaanet, hogsvm) or openface; repeat for several")
    s.add_argument("--out", required=True, help="SCORES.parquet")
    s.add_argument("--test-fold", type=int, default=3)
    s.add_argument("--counterfactual", default=None, help="output folder of `lacgan counterfactual` (cohort only)")
    add_openface_args(s, "--detector openface")  # real and synthetic frames get the same OpenFace settings
    s.set_defaults(func=run_score)

    r = subparsers.add_parser("report", help="Table 1 report (Markdown, CSV, JSON, figures) from a score table")
    r.add_argument("--scores", required=True)
    r.add_argument("--synthetic", required=True)
    r.add_argument("--store", required=True)
    r.add_argument("--out", required=True, help="report folder")
    r.add_argument("--checkpoint", default=None, help="LAC-GAN checkpoint for the Fig. 3/5 grids")
    r.add_argument("--counterfactual", default=None, help="the counterfactual folder that was scored (cohort only)")
    r.add_argument("--paper", action=argparse.BooleanOptionalAction, default=None,
                   help="show the paper's Table 1 beside ours (default: when the dataset is BP4D)")
    r.add_argument("--identity-pairs", type=int, default=64)
    r.set_defaults(func=run_report)

    m = subparsers.add_parser("compare", help="report folders of the same plan and detectors side by side "
                                              "(e.g. LAC-GAN vs GANimation), with the Fig. 4 grid")
    m.add_argument("--report", action="append", required=True,
                   help="NAME=REPORT_DIR (a folder of `lacgan report`); repeat, the first is the reference")
    m.add_argument("--out", required=True, help="comparison folder (comparison.md, comparison.json, figures/)")
    m.add_argument("--faces", type=int, default=2, help="test faces in the Fig. 4 grid")
    m.set_defaults(func=run_compare)

    a = subparsers.add_parser("augment", help="the whole job as a Prefect flow (ephemeral mode, no server needed)")
    a.add_argument("--out", default="runs/demo/augment", help="output folder (default runs/demo/augment)")
    a.add_argument("--preset", choices=("demo", "bp4d", "smoke"), default="demo")
    a.add_argument("--bp4d-root", default=None, help="BP4D tree (preset bp4d)")
    a.add_argument("--folds", choices=("test", "all"), default="test",
                   help="test: hold out the preset's test fold; all: one run per fold (models trained on the other "
                        "two) and Table 1 averaged over the three (3x the cost)")
    a.add_argument("--baseline", choices=("ganimation",), default=None,
                   help="also train GANimation on the same store and folds, generate the same plan with it, score "
                        "and report it, and write LAC-GAN vs GANimation side by side (OUT/comparison_ganimation)")
    a.add_argument("--test-fold", type=int, choices=(1, 2, 3), default=None,
                   help="held-out fold (default: the preset's, 3); every step gets it")
    a.add_argument("--config", default=None, help="JSON file of job changes: a partial JobConfig (pipelines.job), "
                                                  'e.g. {"lacgan": {"train": {"steps": 3000}}}')
    a.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="one job change, e.g. --set lacgan.train.steps=3000 --set detectors.jaanet.epochs=12 "
                        "(VALUE is JSON when it parses); repeat; over --config")
    a.add_argument("--show-config", action="store_true",
                   help="print the composed, checked job configuration (JSON) and exit without running")
    a.add_argument("--workers", type=int, default=None, help="Dask workers for generation (default: the job's, 2)")
    a.add_argument("--scheduler", default=None, help="existing Dask scheduler address for generation")
    add_openface_args(a, "also score with OpenFace")
    a.set_defaults(func=run_augment)

    v = subparsers.add_parser("serve", help="serve the deployments (starts a local Prefect server if none is set)")
    v.add_argument("--runs", default="runs", help="folder the deployments write under (default runs)")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=None, help="server port (default 4200, or a free one)")
    v.set_defaults(func=run_serve)


if __name__ == "__main__":
    from flows.cli import main

    sys.exit(main())
