"""GANimation configuration: typed frozen dataclasses whose defaults are the public reference's
(`albertpumarola/GANimation`: options/train_options.py, options/base_options.py, launch/run_train.sh, the network
files), and the presets.

Where a value comes from the reference the comment names its option (`--lambda_D_cond`); where it is ours the
comment says "ours". Saved as canonical JSON beside every checkpoint, hashed by `lacgan.config.config_hash`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from lacgan.config import SectionedConfig, pick_preset


@dataclass(frozen=True)
class NetConfig:
    size: int = 200  # face crop side S px; the reference trains 128 px, 200 here to match LAC-GAN's crops
    conv_dim: int = 64  # generator: width of the 7×7 conv, doubled by each of the 2 downsamplings (conv_dim)
    res_blocks: int = 6  # generator: residual blocks in the bottleneck (repeat_num=6)
    critic_dim: int = 64  # critic: width of the first 4×4/2 conv, doubled by each further layer (conv_dim)
    critic_layers: int = 6  # critic: 4×4/2 conv layers, LeakyReLU 0.01 (repeat_num=6)
    init_std: float = 0.02  # every conv weight drawn from N(0, init_std), biases 0 (NetworkBase.init_weights)

    def __post_init__(self):
        if self.size % 4:
            raise ValueError(f"size {self.size} must be divisible by 4 (two stride-2 downsamplings and back)")
        if self.size >> self.critic_layers < 1:
            raise ValueError(f"critic_layers {self.critic_layers} halve a {self.size}-px face below 1 px")
        if self.res_blocks < 1 or self.conv_dim < 1 or self.critic_dim < 1:
            raise ValueError("res_blocks, conv_dim and critic_dim must be positive")


@dataclass(frozen=True)
class LossConfig:
    lambda_D_prob: float = 1.0  # adversarial (WGAN) weight, both players (--lambda_D_prob)
    lambda_D_cond: float = 4000.0  # AU regression weight, real faces (critic) and edits (G) (--lambda_D_cond)
    lambda_cyc: float = 10.0  # cycle reconstruction L1 weight (--lambda_cyc)
    lambda_mask: float = 0.1  # attention saturation weight: mean(A), both passes (--lambda_mask)
    lambda_mask_smooth: float = 1e-5  # attention total variation weight, summed over pixels (--lambda_mask_smooth)
    lambda_D_gp: float = 10.0  # WGAN-GP gradient penalty weight (--lambda_D_gp)


@dataclass(frozen=True)
class OptimConfig:
    lr_G: float = 1e-4  # generator Adam learning rate (--lr_G)
    lr_D: float = 1e-4  # critic Adam learning rate (--lr_D)
    betas_G: tuple[float, float] = (0.5, 0.999)  # generator Adam (β1, β2) (--G_adam_b1, --G_adam_b2)
    betas_D: tuple[float, float] = (0.5, 0.999)  # critic Adam (β1, β2) (--D_adam_b1, --D_adam_b2)
    decay_from: float = 2 / 3  # share of train.steps after which both rates fall linearly to 0 (20 + 10 epochs)
    critic_steps: int = 5  # the critic trains every step, the generator every n-th (--train_G_every_n_iterations)

    def __post_init__(self):
        if not 0 <= self.decay_from <= 1:
            raise ValueError(f"decay_from must be in [0, 1], got {self.decay_from}")
        if self.critic_steps < 1:
            raise ValueError(f"critic_steps must be >= 1, got {self.critic_steps}")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 100_000  # total steps (critic updates); ours (the reference counts 30 epochs)
    batch_size: int = 25  # launch/run_train.sh
    test_fold: int = 3  # fold held out (as LAC-GAN: train on two folds, test on the third)
    seed: int = 0  # seeds weights, batches, targets, flips and penalty mixes (each step draws from (seed, step))
    target_flip: float = 0.5  # per-AU probability a known source label is flipped for the target (as LAC-GAN)
    hflip: bool = True  # mirror each training face with probability 1/2 (the reference's RandomHorizontalFlip)
    sample_every: int = 1000  # steps between sample grids
    checkpoint_every: int = 1000  # steps between checkpoints
    log_every: int = 50  # steps between statistics lines
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    sample_faces: int = 4  # held-out faces shown in the sample grids


@dataclass(frozen=True)
class GanimationConfig(SectionedConfig):
    MODEL: ClassVar[str] = "ganimation"
    preset: str = "paper"  # name of the preset this config started from
    net: NetConfig = field(default_factory=NetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


PRESETS: dict[str, GanimationConfig] = {
    # The reference's networks, losses and optimiser, on 200-px crops.
    "paper": GanimationConfig(),
    # CPU demo on 64-px faces: narrower networks, 5 critic layers (64 -> 2 px), ~7.5 min on 2 cores. With the
    # reference's 1:5 ratio and AU weight, 1500 steps (300 G updates) left only a checkerboard colour image under a
    # mask of mean 0.24; G every step and the AU weight / 10 (binary targets, half of them 1, give that term a far
    # larger share than the reference's intensities / 5, mostly near 0) keep hair and background (docs/ganimation.md).
    "demo": GanimationConfig(
        preset="demo",
        net=NetConfig(size=64, conv_dim=16, critic_dim=16, critic_layers=5),
        loss=LossConfig(lambda_D_cond=400.0),
        optim=OptimConfig(lr_G=2e-4, lr_D=2e-4, critic_steps=1),
        train=TrainConfig(steps=600, batch_size=16, sample_every=100, checkpoint_every=100, log_every=25),
    ),
    # Tests: tiny everything.
    "smoke": GanimationConfig(
        preset="smoke",
        net=NetConfig(size=64, conv_dim=4, res_blocks=2, critic_dim=4, critic_layers=4),
        train=TrainConfig(steps=20, batch_size=4, sample_every=10, checkpoint_every=10, log_every=5,
                          sample_faces=2),
    ),
}


def preset(name: str) -> GanimationConfig:
    return pick_preset(PRESETS, name, "GANimation preset")
