"""`lacgan trainset` (plan + generate + export a label-balanced training set from a run) and `lacgan payoff`
(real-only vs real + synthetic detector training, scored on held-out real frames). Argument parsing only."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipelines.cli_data import _logging, _user_errors


def register(subparsers) -> None:
    t = subparsers.add_parser("trainset", help="build a label-balanced training set (training folds only) from a "
                                               "run: plan, generate, export (re-run to resume)")
    src = t.add_argument_group("the run")
    src.add_argument("--run", type=Path, help="an augment run folder (uses RUN/aligned.zarr and RUN/lacgan)")
    src.add_argument("--store", type=Path, help="aligned store (default RUN/aligned.zarr)")
    src.add_argument("--checkpoint", type=Path, help="LAC-GAN run or checkpoint folder (default RUN/lacgan)")
    t.add_argument("--out", type=Path, required=True,
                   help="folder: plan.parquet, synthetic/ (generation), export/ (what you train on)")
    t.add_argument("--plan", type=Path, default=None,
                   help="use this plan instead of making one (checked: no test-fold subject may appear in it)")
    t.add_argument("--goal", choices=("balanced", "rates"), default="balanced")
    t.add_argument("--balanced-rate", type=float, default=0.5, help="balanced: rate every AU moves toward")
    t.add_argument("--floor", type=float, default=None, help="balanced: only raise AUs below this rate to it")
    t.add_argument("--rates", default=None, help="rates: e.g. AU23=0.3,AU24=0.3 (unnamed AUs keep their rate)")
    t.add_argument("--ratio", type=float, default=1.0, help="synthetic frames per real training frame")
    t.add_argument("--test-fold", type=int, default=3, help="fold kept out of the set entirely (default 3)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--workers", type=int, default=2, help="Dask workers for generation (0 = in-process)")
    t.add_argument("--device", default=None, help="generation device (default: CUDA when present)")
    t.add_argument("--critic", type=Path, default=None,
                   help="a trained detector folder (e.g. RUN/detectors/hogsvm, trained with the same test fold held "
                        "out) that reads every synthetic frame: an AU the edit was to change and the critic reads "
                        "otherwise becomes unknown in the set's labels")
    t.set_defaults(func=run_trainset)

    p = subparsers.add_parser("payoff", help="train detectors on real vs real + synthetic frames (same budget, "
                                             "same seeds), score held-out real frames")
    p.add_argument("--trainset", type=Path, help="a `lacgan trainset` folder (store and synthetic frames from it)")
    p.add_argument("--store", type=Path, help="aligned store (default: the one the training set was built from)")
    p.add_argument("--synthetic", type=Path, help="generation output (default TRAINSET/synthetic)")
    p.add_argument("--out", type=Path, help="output folder (default TRAINSET/payoff)")
    p.add_argument("--detector", action="append", choices=("hogsvm", "jaanet"), help="repeat for several "
                                                                                    "(default hogsvm)")
    p.add_argument("--seeds", default="0,1", help="training seeds, e.g. 0,1")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--preset", default="cpu", help="each detector's preset (jaanet: cpu, demo, paper; hogsvm: "
                                                       "cpu, paper; default cpu)")
    which.add_argument("--job", type=Path, default=None,
                       help="a run's OUT/job.json: the detectors' configs and test fold the job trained with (e.g. "
                            "runs/demo/augment/job.json: JAA-Net's demo schedule)")
    p.add_argument("--epochs", type=int, default=None, help="jaanet: epochs for both arms (default: the config's)")
    p.add_argument("--test-fold", type=int, default=None, help="held-out fold (default: the job's, else 3)")
    p.add_argument("--controls", default=None,
                   help="extra arms, comma-separated: sources (the synthetic frames' sources again, own labels: what "
                        "the mixing alone does), counterfactual (the embedded cohort's true renderings of the same "
                        "plan: the ceiling); 'none' for neither (default: the job's with --job, else none)")
    p.set_defaults(func=run_payoff)


def parse_rates(text: str | None) -> dict | None:
    """"AU23=0.3,AU24=0.3" -> {"AU23": 0.3, ...}; the values are checked by the planner (AU named)."""
    if not text:
        return None
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--rates: {item!r} is not AU=RATE (e.g. AU23=0.3)") from None
        if not sep:
            raise ValueError(f"--rates: {item!r} is not AU=RATE (e.g. AU23=0.3)")
    return out


def _run_paths(args) -> tuple[Path, Path]:
    store = args.store or (args.run / "aligned.zarr" if args.run else None)
    ckpt = args.checkpoint or (args.run / "lacgan" if args.run else None)
    if store is None or ckpt is None:
        raise ValueError("give --run RUN, or both --store and --checkpoint")
    return store, ckpt


@_user_errors
def run_trainset(args) -> int:
    _logging()
    from pipelines.generate import GenerateConfig
    from pipelines.trainset import TrainsetConfig, build_trainset, critic_summary, trainset_rates

    store, ckpt = _run_paths(args)
    cfg = TrainsetConfig(goal=args.goal, balanced_rate=args.balanced_rate, floor=args.floor,
                         rates=parse_rates(args.rates), ratio=args.ratio, test_fold=args.test_fold, seed=args.seed,
                         critic=None if args.critic is None else str(args.critic))
    r = build_trainset(store, ckpt, args.out, cfg, GenerateConfig(workers=args.workers, device=args.device),
                       args.plan, critic_dir=args.critic)
    s = r["generation"]
    print(f"training set {r['export']}: {r['manifest']} (+ trainset.zarr, bp4d/, jaanet/); {s.frames} synthetic "
          f"frames ({s.generated} shards generated now, {s.skipped} were done)")
    print("AU presence rates, before (real training frames) and after (real + synthetic):")
    rates = trainset_rates(store, r["plan"], args.test_fold, None if args.plan else cfg)
    print(rates.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.critic is not None:
        print(f"critic {args.critic}: changed AU labels it read otherwise, made unknown:")
        print(critic_summary(r["synthetic"], store).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print(f"wall time: plan {r['plan_s']:.1f} s, generate {r['generate_s']:.1f} s, critic {r['critic_s']:.1f} s, "
          f"export {r['export_s']:.1f} s")
    return 0


@_user_errors
def run_payoff(args) -> int:
    _logging()
    from detectors.base import detector_preset
    from pipelines.payoff import PayoffConfig, measure_payoff
    from pipelines.trainset import EXPORT, PAYOFF, SYNTH
    from pipelines.trainset_export import MARK

    store, synth, out = args.store, args.synthetic, args.out
    if args.trainset:
        record = args.trainset / EXPORT / MARK
        if not record.exists():
            raise ValueError(f"{record}: no finished training set here (run `lacgan trainset --out {args.trainset}`)")
        store = store or Path(json.loads(record.read_text())["inputs"]["store"])
        synth, out = synth or args.trainset / SYNTH, out or args.trainset / PAYOFF
    if store is None or synth is None or out is None:
        raise ValueError("give --trainset DIR, or --store, --synthetic and --out")
    seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    detectors = tuple(args.detector or ("hogsvm",))
    epochs = {"jaanet": {"epochs": args.epochs}} if args.epochs else {}
    test_fold = args.test_fold
    controls = None if args.controls is None else tuple(
        c for c in (c.strip() for c in args.controls.split(",")) if c not in ("", "none"))
    if args.job:
        from dataclasses import replace

        from pipelines.job import read_job

        job = read_job(args.job)
        trained = job.detectors.trainable()
        missing = [d for d in detectors if d not in trained]
        if missing:
            raise ValueError(f"{args.job}: the job has no {missing[0]} detector (it has {sorted(trained)})")
        configs = {d: replace(trained[d], **epochs.get(d, {})) for d in detectors}
        test_fold = job.test_fold if test_fold is None else test_fold
        if controls is None and job.payoff is not None:
            controls = job.payoff.controls
    else:
        configs = {d: detector_preset(d, args.preset, **epochs.get(d, {})) for d in detectors}
    cfg = PayoffConfig(detectors=detectors, seeds=seeds, configs=configs,
                       test_fold=3 if test_fold is None else test_fold, controls=controls or ())
    t0 = time.perf_counter()
    md = measure_payoff(store, synth, out, cfg)
    print(Path(md).read_text())
    print(f"payoff: {md} ({(time.perf_counter() - t0) / 60:.1f} min)")
    return 0
