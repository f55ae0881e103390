"""`lacgan train` and `lacgan edit`: argument parsing only; the work is in lacgan.train, lacgan.ganimation.train
and the editors (lacgan.editors)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lacgan.progress import MODES
from manifests.aus import AU_COLUMNS, N_AUS, au_index
from pipelines.cli_data import _user_errors as user_errors  # bad input: one line naming it, exit 2


def register(subparsers) -> None:
    t = subparsers.add_parser("train", help="train LAC-GAN (or GANimation) on an aligned store (resumes when --out "
                                            "has a checkpoint)")
    t.add_argument("--store", required=True, help="aligned store (STORE.zarr from `lacgan align`)")
    t.add_argument("--out", required=True, help="run directory: checkpoints/, samples/, stats.jsonl")
    t.add_argument("--model", choices=TRAINERS, default=None,
                   help="model to train: lacgan, or ganimation (the peer it is compared with); "
                        "default: the run's own when resuming, else lacgan")
    which = t.add_mutually_exclusive_group()
    which.add_argument("--preset", choices=("demo", "paper", "smoke"), default=None,
                       help="config preset of the model (default: the run's own config when resuming, else demo)")
    which.add_argument("--config", default=None,
                       help="a JSON file holding the model's config (the form a run's checkpoints store; what the "
                            "augment flow hands its training step); an unknown or mistyped field exits 2")
    t.add_argument("--steps", type=int, help="total training steps (overrides the preset)")
    t.add_argument("--batch-size", type=int, help="batch size (overrides the preset)")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    t.add_argument("--test-fold", type=int, help="fold held out from training (default 3)")
    t.add_argument("--identity", choices=("auto", "dlib", "none"), default="auto",
                   help="LAC-GAN's identity loss (Eq. 4) network: dlib's face ResNet; auto = dlib when available "
                        "(GANimation has no identity loss)")
    t.add_argument("--progress", choices=MODES, default="bar",
                   help="bar: a progress bar; log: a line with rate, ETA and losses every 15 s (what the flow "
                        "uses); off: nothing")
    t.add_argument("--no-progress", dest="progress", action="store_const", const="off", help="= --progress off")
    t.set_defaults(func=run_train)

    e = subparsers.add_parser("edit", help="edit faces of an aligned store to target AUs; writes before/after PNG")
    e.add_argument("--checkpoint", required=True, help="LAC-GAN or GANimation run directory (latest checkpoint) "
                                                       "or checkpoint directory")
    e.add_argument("--store", required=True, help="aligned store (STORE.zarr)")
    e.add_argument("--rows", required=True, help="comma-separated row ids, e.g. 0,1,2")
    e.add_argument("--target", required=True,
                   help='AU targets, e.g. "AU12=1,AU6=1" (1 present, 0 absent); unnamed AUs keep the source')
    e.add_argument("--out", required=True, help="PNG to write: one row per face, before | after")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    e.set_defaults(func=run_edit)


def parse_target(text: str) -> np.ndarray:
    """'AU12=1,AU6=0' -> (12,) int8 with -1 for unnamed AUs."""
    t = np.full(N_AUS, -1, np.int8)
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, val = item.partition("=")
        if not sep or val.strip() not in ("0", "1", "-1"):
            raise ValueError(f"--target: {item!r} is not AU<n>=<1|0|-1>")
        t[au_index(int(name.strip().upper().removeprefix("AU")))] = int(val)
    return t


TRAINERS = ("lacgan", "ganimation")  # --model: the model kinds lacgan.run.train_model trains


@user_errors
def run_train(args) -> int:
    from lacgan.checkpoint import load_checkpoint, newest_good_checkpoint
    from lacgan.run import model_preset, read_model_config, train_model
    from lacgan.train import losses_summary

    from lacgan import distributed

    out = Path(args.out)
    shard, _ = distributed.start(args.device)  # under torchrun: join the process group (one process: no-op)
    with distributed.main_first():  # corrupt newer checkpoints are moved aside (with a warning) by rank 0 only
        good = newest_good_checkpoint(out) if out.exists() else None
    model = args.model or (good.model if good is not None else "lacgan")
    if args.config:
        cfg = read_model_config(model, args.config)
    elif args.preset is None and good is not None:
        cfg = load_checkpoint(good.path, with_optim=False, model=model).config
    else:
        cfg = model_preset(model, args.preset or "demo")
    changes = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size),
                                 ("test_fold", args.test_fold)) if v is not None}
    cfg = cfg.replace(train=changes)
    result = train_model(args.store, out, cfg, identity=args.identity, device=args.device, progress=args.progress,
                         log=lambda line: print(f"lacgan train: {line}" if not line.startswith(" ") else line))
    if shard.main:
        for k, (a, b) in losses_summary(result.history).items():
            print(f"  {k:9s} first {a:.4f}  last {b:.4f}")
        print(f"done: step {result.step}, checkpoint {result.checkpoint}, grids {out / 'samples'}/fig3-latest.png")
    distributed.stop()
    return 0


@user_errors
def run_edit(args) -> int:
    from lacgan.editors import load_editor
    from lacgan.samples import grid, save_png
    from manifests.aligned import AlignedStore

    rows = np.array([int(r) for r in args.rows.split(",") if r.strip()], np.int64)
    target = parse_target(args.target)
    editor = load_editor(args.checkpoint, args.device)
    images, landmarks, _ = AlignedStore.open(args.store).read(rows)
    edited = editor.edit(images, landmarks, np.repeat(target[None], len(rows), axis=0))
    named = ",".join(f"{AU_COLUMNS[i]}={target[i]}" for i in range(N_AUS) if target[i] >= 0)
    path = save_png(grid(images, edited[:, None], [named or "unchanged"]), args.out)
    print(f"wrote {path} ({len(rows)} faces, {named}; checkpoint {editor.path})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser(prog="lacgan")
    register(p.add_subparsers(dest="command", required=True))
    a = p.parse_args()
    sys.exit(a.func(a))
