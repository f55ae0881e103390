"""`lacgan train` and `lacgan edit`: argument parsing only; the work is in lacgan.train, lacgan.ganimation.train
and the editors (lacgan.editors)."""

from __future__ import annotations

import argparse
import sys
import warnings
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
    t.add_argument("--model", choices=tuple(TRAINERS), default=None,
                   help="model to train: lacgan, or ganimation (the peer it is compared with); "
                        "default: the run's own when resuming, else lacgan")
    t.add_argument("--preset", choices=("demo", "paper", "smoke"), default=None,
                   help="config preset of the model (default: the run's own config when resuming, else demo)")
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


def _identity(choice: str, device):
    """The frozen identity feature extractor, or None (with a warning) when it is off or unavailable."""
    if choice == "none":
        return None
    try:
        from lacgan.identity import load_dlib_face_net
    except ImportError as e:
        if choice == "dlib":
            raise
        warnings.warn(f"identity loss (Eq. 4) left out: dlib face network unavailable ({e})", stacklevel=2)
        return None
    from lacgan.losses import identity_features

    return identity_features(load_dlib_face_net(device=device))


def _train_lacgan(args, cfg, data, out: Path, device, ck):
    from lacgan.data import resolve_window
    from lacgan.networks import build_models
    from lacgan.train import train

    cfg = resolve_window(cfg, data)
    models = build_models(cfg.net, cfg.train.seed)
    id_features = _identity(args.identity, device)
    print(f"lacgan train: preset {cfg.preset}, {len(data)} training faces ({cfg.net.size} px, test fold "
          f"{cfg.train.test_fold} held out), window {cfg.net.window}, device {device}, "
          f"identity loss {'on' if id_features else 'off'}")
    _print_outputs(out, ck)
    return train(models, data, cfg, out, id_features=id_features, device=device, progress=args.progress)


def _train_ganimation(args, cfg, data, out: Path, device, ck):
    from lacgan.ganimation.networks import build_models
    from lacgan.ganimation.train import train

    print(f"lacgan train: GANimation preset {cfg.preset}, {len(data)} training faces ({cfg.net.size} px, test fold "
          f"{cfg.train.test_fold} held out), generator every {cfg.optim.critic_steps} critic steps, device {device}")
    _print_outputs(out, ck)
    return train(build_models(cfg.net, cfg.train.seed), data, cfg, out, device=device, progress=args.progress)


def _print_outputs(out: Path, ck) -> None:
    print(f"  {'resuming from ' + str(ck) if ck else 'new run'}; checkpoints: {out / 'checkpoints'}, "
          f"samples: {out / 'samples'}, statistics: {out / 'stats.jsonl'}")


def _preset(model: str, name: str):
    if model == "ganimation":
        from lacgan.ganimation.config import preset
    else:
        from lacgan.config import preset
    return preset(name)


TRAINERS = {"lacgan": _train_lacgan, "ganimation": _train_ganimation}  # --model -> its training setup


@user_errors
def run_train(args) -> int:
    from lacgan.checkpoint import load_checkpoint, newest_good_checkpoint
    from lacgan.data import FaceData
    from lacgan.device import pick_device
    from lacgan.train import losses_summary

    out = Path(args.out)
    good = newest_good_checkpoint(out) if out.exists() else None  # corrupt newer ones: moved aside, with a warning
    ck = good.path if good is not None else None
    model = args.model or (good.model if good is not None else "lacgan")
    if args.preset is None and ck is not None:
        cfg = load_checkpoint(ck, with_optim=False, model=model).config
    else:
        cfg = _preset(model, args.preset or "demo")
    changes = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size),
                                 ("test_fold", args.test_fold)) if v is not None}
    cfg = cfg.replace(train=changes)
    device = pick_device(args.device)
    data = FaceData.open(args.store, cfg.net.size, cfg.train.test_fold)
    result = TRAINERS[model](args, cfg, data, out, device, ck)
    for k, (a, b) in losses_summary(result.history).items():
        print(f"  {k:9s} first {a:.4f}  last {b:.4f}")
    print(f"done: step {result.step}, checkpoint {result.checkpoint}, grids {out / 'samples'}/fig3-latest.png")
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
