"""Training a generator is one call: `train_model(store, out, cfg)` with a built config (LacganConfig or
GanimationConfig). The CLI (`lacgan train`), the augment flow (through the CLI, in a child process, with the
config as a file), the benchmarks and the tests all call it; it opens the store at the config's size and test
fold, sizes the windows, builds the networks and the identity network, and trains (resuming from OUT's latest
checkpoint).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable

from lacgan.config import SectionedConfig


def model_configs() -> dict[str, type[SectionedConfig]]:
    """Model kind (as `--model` and checkpoints name it) -> its config class."""
    from lacgan.config import LacganConfig
    from lacgan.ganimation.config import GanimationConfig

    return {"lacgan": LacganConfig, "ganimation": GanimationConfig}


def model_preset(model: str, name: str) -> SectionedConfig:
    if model == "ganimation":
        from lacgan.ganimation.config import preset
    else:
        from lacgan.config import preset
    return preset(name)


def read_model_config(model: str, path) -> SectionedConfig:
    """A generator config from JSON (the form checkpoints store, e.g. a run's config.json); a ValueError naming
    the file and the first unknown or mistyped field."""
    from lacgan.typed import read_config

    return read_config(model_configs()[model], path, model)


def write_model_config(cfg: SectionedConfig, path) -> Path:
    """`cfg` as the JSON `read_model_config` (and `lacgan train --config`) reads, written atomically."""
    from lacgan.atomic import write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(cfg.to_dict(), indent=1, sort_keys=True) + "\n")
    return path


def identity_network(choice: str, device):
    """LAC-GAN's frozen identity feature extractor (Eq. 4), or None: `choice` "none", or "auto" when dlib's face
    network is unavailable (with a warning); "dlib" requires it."""
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


def train_model(store, out, cfg: SectionedConfig, *, identity: str = "auto", device="auto",
                progress: bool | str = "bar", log: Callable[[str], None] = print):
    """Train `cfg` (its MODEL: lacgan or ganimation) on the store's folds other than cfg.train.test_fold into run
    directory `out`; resumes from its latest checkpoint. `identity`: LAC-GAN's identity network (auto | dlib |
    none); `log` gets the one-line description of the run. Returns the trainer's TrainResult.

    Under torchrun LAC-GAN trains on all the launched processes (lacgan.distributed; GANimation refuses), each on
    its device (cuda:LOCAL_RANK on GPUs); only rank 0 logs and writes."""
    from lacgan import distributed
    from lacgan.data import FaceData

    out = Path(out)
    shard, device = distributed.start(device)
    if shard.world > 1 and cfg.MODEL != "lacgan":
        raise ValueError(f"{cfg.MODEL} trains in one process; run it without torchrun (LAC-GAN and JAA-Net "
                         f"train on several)")
    if not shard.main:
        log, progress = (lambda _: None), False
    data = FaceData.open(store, cfg.net.size, cfg.train.test_fold)
    what = (f"{len(data)} training faces ({cfg.net.size} px, test fold {cfg.train.test_fold} held out), "
            f"device {device}" + (f" × {shard.world} processes" if shard.world > 1 else ""))
    if cfg.MODEL == "ganimation":
        from lacgan.ganimation.networks import build_models
        from lacgan.ganimation.train import train

        log(f"GANimation preset {cfg.preset}, {what}, generator every {cfg.optim.critic_steps} critic steps")
        _log_outputs(out, log)
        return train(build_models(cfg.net, cfg.train.seed), data, cfg, out, device=device, progress=progress)
    from lacgan.data import resolve_fitted
    from lacgan.networks import build_models
    from lacgan.train import train

    cfg = resolve_fitted(cfg, data)
    models = build_models(cfg.net, cfg.train.seed)
    id_features = identity_network(identity, device) if cfg.loss.lambda_3 > 0 or identity == "dlib" else None
    log(f"LAC-GAN preset {cfg.preset}, {what}, window {cfg.net.window}, identity loss "
        f"{'on' if id_features else 'off'}")
    _log_outputs(out, log)
    return train(models, data, cfg, out, id_features=id_features, device=device, progress=progress)


def _log_outputs(out: Path, log) -> None:
    from lacgan.checkpoint import CheckpointError, find_checkpoint

    try:
        ck = find_checkpoint(out) if out.exists() else None
    except CheckpointError:  # a dangling `latest`: the trainer falls back to the newest good one and says so
        ck = None
    log(f"  {'resuming from ' + str(ck) if ck else 'new run'}; checkpoints: {out / 'checkpoints'}, "
        f"samples: {out / 'samples'}, statistics: {out / 'stats.jsonl'}")
