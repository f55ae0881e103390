"""LAC-GAN configuration: typed frozen dataclasses whose defaults are the paper's (Sec. 4.1), and the presets.

Where the paper gives a value the field says so (`# λ1, Eq. 9`); where it gives none (layer widths, batch size)
the value is ours and the comment says "ours". A config is saved as canonical JSON beside every checkpoint and
every output; `config_hash` is the sha256 of that JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import ClassVar

from manifests.aus import AUS, N_AUS


# NetConfig.output values, and the decoder channels each needs (an image, + a 2-channel displacement)
OUTPUTS = ("paper", "residual", "difference", "warp", "flow")
OUTPUT_CHANNELS = {"paper": 3, "residual": 3, "difference": 3, "warp": 5, "flow": 5}
# outputs that draw the edit as a change from the source labels' decoding (they need the sources' labels)
DIFFERENCE_OUTPUTS = ("difference", "warp", "flow")


@dataclass(frozen=True)
class NetConfig:
    size: int = 200  # face crop side S in px: the paper's 200×200 (Sec. 4.1)
    window: tuple[int, int] | None = None  # CARG input window (h, w) px around each region; None = fit to the data
    enc_channels: tuple[int, ...] = (32, 64, 128, 256, 256)  # CARG encoder: 5 conv 5×5/2 (Sec. 4.1); widths ours
    kernel: int = 5  # kernel of every conv / transposed conv (Sec. 4.1)
    z_dim: int = 60  # N_z, latent size (Sec. 4.1)
    label_dim: int = 60  # the target AU label tiled to 60 dims (Sec. 4.1)
    dz_hidden: tuple[int, ...] = (64, 32, 16)  # D_z: 4 FC layers 60→64→32→16→1 (Sec. 4.1; widths as CAAE)
    local_channels: tuple[int, ...] = (32, 64, 128, 256)  # local D / regressor R: 4 shared conv+BN layers; ours
    global_channels: tuple[int, ...] = (32, 64, 128, 256, 256)  # global image discriminator convs 4×4/2; ours
    regions: str = "reference"  # AU map rule (lacgan.regions.RULES): "reference" = JAA-Net's, as the paper cites
    generators: str = "per-au"  # "per-au": one CARG per AU (paper); "per-region": one per distinct region,
    #                             conditioned on every AU of that region (lacgan.regions.REGION_GROUPS)
    output: str = "paper"  # "paper": the decoder draws the region; "residual": source + decoder output;
    #                        "difference": source + D(z, target) − D(z, source labels); "warp": as "difference",
    #                        and the source also moved by the decoder's displacement for the target minus the one
    #                        for the source labels; "flow": only that displacement (geometry, no added colour)
    max_shift: float = 4.0  # "warp", "flow": the largest displacement the decoder can ask for, in px
    geometry_only: tuple[int, ...] = ()  # "warp": the regions of these AUs (e.g. (1, 2): the brow raisers) are
    #                                     drawn as "flow" — the source moved, no colour added; ours
    edit_strength: float = 1.0  # generation only (training draws at 1): the difference outputs' edit, D(z, t) −
    #                             D(z, s) and the warp's displacement, × this; > 1 extrapolates the edit the
    #                             generator learned; ours (docs/lacgan.md)
    composite: str = "paper"  # "paper": Eq. 2 with weights A_i (normalised where they overlap);
    #                           "plateau": weights min(1, plateau_gain·ΣA) shared in proportion to A_i
    plateau_gain: float = 3.0  # composite "plateau": the outer 1/gain of a diamond map is the feathered border
    condition: str = "bottleneck"  # where the decoder reads the target labels: "bottleneck" = only with z
    #                                (the paper: [z, label] -> FC), "every-scale" = also as constant planes at the
    #                                input of every decoder layer, so the edit can be placed at full resolution
    condition_on: str = "region"  # the labels each region generator reads: "region" = its own region's AUs (the
    #                               paper's per-AU CARG reads its AU); "all" = all 12, so a region can follow an AU
    #                               centred elsewhere (AU4 also lowers the outer brows AU2's region holds);
    #                               "overlap" = the AUs whose regions overlap its own (`reads`): a neighbour's AU
    #                               can move it, an AU of the other half of the face cannot; ours
    reads: tuple[tuple[int, ...], ...] | None = None  # condition_on "overlap": the AUs each generator reads, in
    #                                                  generator order; None = fitted to the training faces
    #                                                  (lacgan.regions.overlapping_aus on their mean face)
    skips: bool = False  # U-Net skip connections from each encoder layer to the decoder layer of its size; the
    #                      paper's CARG has none (its decoder sees only z and the label)

    def __post_init__(self):
        if len(self.enc_channels) != 5:
            raise ValueError(f"enc_channels needs 5 widths (5 conv layers, Sec. 4.1), got {self.enc_channels}")
        if len(self.local_channels) != 4:
            raise ValueError(f"local_channels needs 4 widths (4 shared layers), got {self.local_channels}")
        if len(self.dz_hidden) != 3:
            raise ValueError(f"dz_hidden needs 3 widths (4 FC layers), got {self.dz_hidden}")
        if self.window is not None and not (0 < self.window[0] <= self.size and 0 < self.window[1] <= self.size):
            raise ValueError(f"window {self.window} must fit inside the {self.size}-px crop")
        for name, value, allowed in (("regions", self.regions, ("reference", "wide")),
                                     ("generators", self.generators, ("per-au", "per-region")),
                                     ("output", self.output, OUTPUTS),
                                     ("composite", self.composite, ("paper", "plateau")),
                                     ("condition", self.condition, ("bottleneck", "every-scale")),
                                     ("condition_on", self.condition_on, ("region", "all", "overlap"))):
            if value not in allowed:
                raise ValueError(f"NetConfig.{name} must be one of {allowed}, got {value!r}")
        if self.plateau_gain < 1:
            raise ValueError(f"plateau_gain must be >= 1, got {self.plateau_gain}")
        check_strength(self.edit_strength, self.output)
        if self.geometry_only and self.output != "warp":
            raise ValueError(f"geometry_only {self.geometry_only} needs the 'warp' output (got {self.output!r}): "
                             f"only it both moves the source and adds colour")
        unknown = sorted(set(self.geometry_only) - set(AUS))
        if unknown:
            raise ValueError(f"geometry_only names {unknown}, which are not among the AUs {AUS}")


def check_strength(strength: float, output: str) -> None:
    """An edit strength `output` can draw: positive, and 1 unless the output is a difference (DIFFERENCE_OUTPUTS)."""
    if not strength > 0:
        raise ValueError(f"edit_strength must be > 0, got {strength}")
    if strength != 1.0 and output not in DIFFERENCE_OUTPUTS:
        raise ValueError(f"edit_strength {strength}: the {output!r} output has no edit difference to scale; "
                         f"use one of {DIFFERENCE_OUTPUTS}")


@dataclass(frozen=True)
class LossConfig:
    lambda_1: float = 0.01  # λ1, latent adversarial weight, Eq. 9
    lambda_2: float = 0.1  # λ2, local AU adversarial (+ regression) weight, Eq. 9
    lambda_3: float = 1.0  # λ3, identity loss weight, Eq. 10
    lambda_4: float = 0.001  # λ4, total-variation weight, Eq. 10
    lambda_edit_tv: float = 0.0  # total variation of the edit (composite − source): speckle the source does not have
    #                              costs, the face's own edges cost nothing; 0 = paper; ours
    lambda_au: float = 10.0  # λ_AU, AU regression weight inside Eq. 7
    lambda_img: float = 0.1  # global adversarial weight, Eq. 3; Eq. 10 gives none: ours, as λ2
    beta: tuple[float, ...] = (1.0,) * N_AUS  # β_i, per-AU CARG weight, Eq. 10 (all 1, Sec. 4.1)
    id_alphas: tuple[float, ...] = (0.5, 0.9, 0.75, 1.0, 1.0)  # α_l, Eq. 4 layer weights (Sec. 4.1's α1..α5)
    id_faces: int = 0  # faces of each batch the identity term sees (0 = all); a CPU-time knob, ours
    g_label: float = 1.0  # scale of R's label term in G's objective (1: Eq. 7's λ_AU·L_label inside λ2); ours
    lambda_latent: float = 0.0  # latent AU adversary: z must not tell the source's AUs (Fader-style); 0 = paper
    lambda_pair: float = 0.0  # sequence-paired L1: an edit to a same-sequence partner's labels vs that partner's
    #                           region (TrainConfig.pair_prob of each batch); 0 = paper (unpaired)
    judge_noise: float = 0.0  # std of Gaussian instance noise on everything D_local and R see, real and fake
    #                            ([-1, 1] units): fine speckles then tell them nothing; 0 = paper
    judge: str = "own"  # what D_local and R see of a fake: "own" = A_i ⊙ G_i (paper), "composite" = the composited
    #                     image inside the window (what ends up in the frame)

    def __post_init__(self):
        if len(self.beta) != N_AUS:
            raise ValueError(f"beta needs {N_AUS} weights, one per AU, got {len(self.beta)}")
        if len(self.id_alphas) != 5:
            raise ValueError(f"id_alphas needs 5 layer weights (Eq. 4), got {len(self.id_alphas)}")
        if self.judge_noise < 0:
            raise ValueError(f"LossConfig.judge_noise must be >= 0, got {self.judge_noise}")
        if self.judge not in ("own", "composite"):
            raise ValueError(f"LossConfig.judge must be 'own' or 'composite', got {self.judge!r}")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4  # Adam learning rate (Sec. 4.1)
    betas: tuple[float, float] = (0.5, 0.9)  # Adam (β1, β2): the paper's α1, α2 read as Adam's; see docs/lacgan.md


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 100_000  # total optimisation steps; ours
    batch_size: int = 16  # ours (the paper gives none)
    test_fold: int = 3  # fold held out (JAA-Net partition: train on two folds, test on the third)
    seed: int = 0  # seeds weights, batches, target labels and priors (each step draws from (seed, step))
    target_flip: float = 0.5  # per-AU probability that a known source label is flipped to make the target
    pair_prob: float = 0.0  # share of each batch whose target is a same-sequence partner's labels (lambda_pair)
    pair_register: bool = False  # warp each partner onto its source on the landmarks AUs do not move
    #                              (lacgan.data.register) before the paired term compares them
    sample_every: int = 1000  # steps between sample grids (Fig. 3 / Fig. 5 layout)
    checkpoint_every: int = 1000  # steps between checkpoints
    log_every: int = 50  # steps between statistics lines
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    sample_faces: int = 4  # held-out faces shown in the sample grids
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    ema_half_life: float = 0.0  # steps over which an exponential moving average of G's weights halves the share
    #                             of older weights (StyleGAN's G_ema); when > 0 the checkpoint holds it as "G_ema"
    #                             and inference and sample grids use it. 0 = none (the paper); ours

    def __post_init__(self):
        if self.ema_half_life < 0:
            raise ValueError(f"TrainConfig.ema_half_life must be >= 0 steps, got {self.ema_half_life}")

    @property
    def generator_weights(self) -> str:
        """The checkpoint entry holding the generator weights inference uses: the average when training kept one."""
        return "G_ema" if self.ema_half_life > 0 else "G"


class SectionedConfig:
    """Shared by every model's top-level config: a `preset` name plus frozen dataclass sections (the fields
    whose default_factory is the section's class), (de)serialised as canonical JSON. `MODEL` names the model kind
    recorded in checkpoints."""

    MODEL: ClassVar[str]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): what `config_hash` hashes and what checkpoints store."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict, where: str | None = None):
        """Strict: an unknown field or a value of the wrong type is a lacgan.typed.ConfigError naming it (missing
        fields take their defaults, so configs written before a field existed still load)."""
        from lacgan.typed import build

        return build(cls, d, where or cls.__name__)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def replace(self, **sections):
        """`cfg.replace(train={"steps": 10})`: a copy with fields of the named sections changed."""
        out = {}
        for name, changes in sections.items():
            if name == "preset":
                out[name] = changes
            else:
                out[name] = dataclasses.replace(getattr(self, name), **changes)
        return dataclasses.replace(self, **out)


@dataclass(frozen=True)
class LacganConfig(SectionedConfig):
    MODEL: ClassVar[str] = "lacgan"
    preset: str = "paper"  # name of the preset this config started from
    net: NetConfig = field(default_factory=NetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# Fields that may differ between a checkpoint and the run resuming it (they change no computed value).
RESUMABLE_TRAIN_FIELDS = ("steps", "sample_every", "checkpoint_every", "log_every", "keep_checkpoints")


def config_hash(cfg: SectionedConfig) -> str:
    return hashlib.sha256(cfg.to_json().encode()).hexdigest()


def resume_key(cfg: SectionedConfig) -> dict:
    """The parts of a config a resumed run must share with its checkpoint."""
    d = cfg.to_dict()
    for k in RESUMABLE_TRAIN_FIELDS:
        d["train"].pop(k)
    return d


PRESETS: dict[str, LacganConfig] = {
    # The paper's model and sizes: 200×200 faces, one CARG per AU, JAA-Net's regions, Eq. 2, the paper's losses.
    "paper": LacganConfig(),
    # CPU demo: 64-px faces, narrow networks; the design chosen on the cohort's development folds (docs/lacgan.md).
    "demo": LacganConfig(
        preset="demo",
        net=NetConfig(size=64, enc_channels=(8, 16, 32, 64, 128), local_channels=(8, 16, 32, 64),
                      global_channels=(8, 16, 32, 32), dz_hidden=(64, 32, 16), regions="wide",
                      generators="per-region", output="warp", composite="plateau", condition="every-scale",
                      condition_on="overlap", edit_strength=1.1),
        loss=LossConfig(id_faces=2, lambda_latent=0.0, g_label=1.0, lambda_img=0.0, lambda_3=0.0,
                        judge="composite", judge_noise=0.3, lambda_pair=5.0),
        optim=OptimConfig(lr=5e-4),
        train=TrainConfig(steps=1500, batch_size=16, sample_every=500, checkpoint_every=250, log_every=50,
                          pair_prob=1.0, pair_register=True, ema_half_life=100.0),
    ),
    # Tests: tiny everything; the demo's regions, generators and composite, with the cheaper difference output and
    # the latent adversary (so the tests exercise both).
    "smoke": LacganConfig(
        preset="smoke",
        net=NetConfig(size=64, enc_channels=(4, 8, 8, 16, 16), local_channels=(4, 8, 8, 16),
                      global_channels=(4, 8, 16), dz_hidden=(16, 8, 8), z_dim=8, label_dim=12, regions="wide",
                      generators="per-region", output="difference", composite="plateau"),
        loss=LossConfig(id_faces=2, lambda_latent=1.0, judge="composite"),
        train=TrainConfig(steps=20, batch_size=4, sample_every=10, checkpoint_every=10, log_every=5,
                          sample_faces=2),
    ),
}


def pick_preset(presets: dict, name: str, what: str = "preset"):
    try:
        return presets[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; choose one of {sorted(presets)}") from None


def preset(name: str) -> LacganConfig:
    return pick_preset(PRESETS, name)
