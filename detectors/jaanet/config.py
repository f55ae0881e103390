"""JAA-Net's configuration: the typed config, its presets, the learning-rate schedule and its JSON form.

Its own module so that the trainer (detectors.jaanet.train) and the detector (detectors.jaanet.detector) both
import it and neither imports the other. `config_from_json` refuses fields JaaNetConfig does not have, naming
them, so a typo or a config from another detector is an error rather than a silently dropped setting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class JaaNetConfig:
    input_size: int = 200  # faces resized to this before cropping (paper: 200)
    crop: int = 176  # random crop for training, centre crop for testing (paper: 176)
    unit: int = 8  # channel unit; widths are multiples of it (reference code: 8)
    batch_size: int = 8  # paper/reference: 8
    epochs: int = 12  # reference: 12
    lr: float = 0.01  # initial SGD learning rate
    lr_gamma: float = 0.3  # lr × 0.3 ...
    lr_step: int = 2  # ... every 2 epochs
    momentum: float = 0.9  # Nesterov momentum
    weight_decay: float = 5e-4
    lambda_au: float = 1.0  # AU loss (softmax + Dice) weight
    lambda_land: float = 0.5  # landmark loss weight
    lambda_refine: float = 2e-4  # attention refinement weight, divided by refine_lr_mult in the total loss
    refine_lr_mult: float = 2.0  # the refine module learns at 2× the base lr
    flip: bool = True  # random mirrors in training
    colour_jitter: float = 0.0  # photometric augmentation strength (data.colour_jitter); not in the paper
    regions: str = "wide"  # the attention maps' rule (lacgan.regions.RULES): "wide", the rule every preset was
    #                        chosen with; "reference" = PyTorch-JAANet's generate_map
    seed: int = 0
    device: str = "auto"  # lacgan.device.pick_device


PRESETS: dict[str, JaaNetConfig] = {
    "paper": JaaNetConfig(),
    # CPU: 108-px faces cropped to 96 (the paper's 0.88 crop ratio), a quarter of the channels, batch 16, and a
    # schedule stretched for ~3,000 steps instead of the paper's ~10^5: 18 epochs, lr × 0.3 every 5, colour
    # jitter 0.2. Chosen on development splits of the cohort's folds 1-2 (6 subjects train, 2 validate; fold 3
    # never looked at): the paper's lr step (6-12 epochs) gave +14 F1 over the always-present baseline, this
    # schedule +18/+25, with jitter +24/+36 (docs/detectors.md). 13.6 minutes on 2 cores for 2,560 frames.
    "cpu": JaaNetConfig(input_size=108, crop=96, unit=2, batch_size=16, epochs=18, lr_step=5, colour_jitter=0.2),
    # The 30-minute demo's share: the `cpu` preset on a shorter schedule (10 epochs, lr × 0.3 every 3, the same
    # number of decays), ~7.5 minutes on 2 cores for 2,560 frames. Sized by time, not tuned.
    "demo": JaaNetConfig(input_size=108, crop=96, unit=2, batch_size=16, epochs=10, lr_step=3, colour_jitter=0.2),
}


def lr_at(cfg: JaaNetConfig, epoch: int) -> float:
    return cfg.lr * cfg.lr_gamma ** (epoch // cfg.lr_step)


def config_from_json(d: dict, source: str = "JAA-Net config") -> JaaNetConfig:
    """The config a `config_json` dict describes; ValueError naming `source` and any field JaaNetConfig lacks
    (missing fields take their defaults: configs written before a field existed still load)."""
    unknown = sorted(set(d) - {f.name for f in fields(JaaNetConfig)})
    if unknown:
        raise ValueError(f"{source}: unknown JaaNetConfig fields {unknown} (known: "
                         f"{[f.name for f in fields(JaaNetConfig)]})")
    return JaaNetConfig(**d)


def config_json(cfg: JaaNetConfig) -> dict:
    return asdict(cfg)
