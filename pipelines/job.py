"""The augment job's one typed configuration: every step's config, composed once and checked before any step runs.

    job = compose_job("demo", {"lacgan": {"train": {"steps": 3000}}, "test_fold": 2})

`JobConfig` holds the embedded cohort (or none: BP4D), LAC-GAN's `LacganConfig`, each detector's own typed config
(JAA-Net, HOG+SVM, OpenFace), the plan, generation, report, training-set and payoff settings, the baselines'
configs, and the test fold. Presets are values of it (`PRESETS`). `compose_job` lays a partial dict of changes
(a deployment's `config` parameter, `lacgan augment --set FIELD=VALUE`, a JSON file) over a preset and sets the
derived values in one place:

- the aligned crop size is the LAC-GAN net size (`JobConfig.size`); the baselines are trained at it too;
- the test fold is `test_fold`, pushed to LAC-GAN, the baselines, the plan, the training set and the payoff.

A derived field given directly (e.g. `lacgan.train.test_fold`) is refused, naming the field to set instead; an
unknown field, a value of the wrong type or one a config refuses is a `ConfigError` naming its dotted path. The
flow writes the composed job to OUT/job.json and hands each child process its section as a file
(`lacgan train --config`, `lacgan detect train --config`), so what ran is what was composed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from detectors.hogsvm import PRESETS as HOGSVM_PRESETS
from detectors.hogsvm import HogSvmConfig
from detectors.jaanet.config import PRESETS as JAANET_PRESETS
from detectors.jaanet.config import JaaNetConfig
from detectors.openface_config import OpenFaceConfig
from lacgan.config import LacganConfig
from lacgan.config import preset as lacgan_preset
from lacgan.ganimation.config import GanimationConfig
from lacgan.ganimation.config import preset as ganimation_preset
from lacgan.typed import ConfigError, build, merge, overlay, to_dict
from manifests.cohort.config import CohortConfig
from pipelines.generate import GenerateConfig
from pipelines.plan import PlanConfig
from pipelines.report import ReportConfig
from pipelines.trainset import TrainsetConfig

__all__ = ["ConfigError", "DetectorsConfig", "JobConfig", "PayoffSettings", "PRESETS", "compose_job", "job_changes",
           "read_job", "write_job"]


@dataclass(frozen=True)
class DetectorsConfig:
    """The detectors that score the frames; None leaves one out."""

    jaanet: JaaNetConfig | None = None  # trained here; its budget is `epochs`
    jaanet_minutes: float | None = None  # wall-clock safety net for JAA-Net's training (the report says if it cut)
    hogsvm: HogSvmConfig | None = None  # trained here
    openface: OpenFaceConfig | None = None  # the user's OpenFace 2.x install (needs `binary`); scored, not trained

    def trainable(self) -> dict:
        """{name: config} of the detectors trained here, in training order."""
        return {name: cfg for name, cfg in (("jaanet", self.jaanet), ("hogsvm", self.hogsvm)) if cfg is not None}


@dataclass(frozen=True)
class PayoffSettings:
    """What the training set buys: these detectors (their configs: the job's) trained on real vs real + synthetic."""

    detectors: tuple[str, ...] = ("hogsvm",)
    seeds: tuple[int, ...] = (0, 1)
    band: float = 1.0  # |delta| below this many F1 points counts as unchanged
    controls: tuple[str, ...] = ()  # extra arms (pipelines.payoff.CONTROLS): "sources" (control), "counterfactual"
    #                                 (ceiling; the embedded cohort only)


@dataclass(frozen=True)
class JobConfig:
    preset: str = "bp4d"  # name of the preset this job started from
    test_fold: int = 3  # JAA-Net protocol: train on the other two folds, test on this one (pushed to every step)
    cohort: CohortConfig | None = None  # the embedded cohort to render; None: a BP4D tree (bp4d_root)
    lacgan: LacganConfig = field(default_factory=LacganConfig)
    detectors: DetectorsConfig = field(default_factory=DetectorsConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)  # the synthetic set scored in Table 1 (match-test)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    trainset: TrainsetConfig | None = None  # the label-balanced training set; None: not built
    payoff: PayoffSettings | None = None  # its payoff; needs `trainset`
    baselines: dict[str, GanimationConfig] = field(default_factory=dict)  # peers for `baseline=NAME`

    @property
    def size(self) -> int:
        """The aligned crop side: the LAC-GAN net size (derived, never configured twice)."""
        return self.lacgan.net.size

    def to_dict(self) -> dict:
        return to_dict(self)


# Fields set from others (path -> what to set instead); giving one directly is an error.
DERIVED = {
    ("lacgan", "train", "test_fold"): "test_fold",
    ("plan", "test_fold"): "test_fold",
    ("trainset", "test_fold"): "test_fold",
    ("report", "checkpoint"): "nothing (the flow sets it to the run it reports)",
    ("report", "regions"): "nothing (the flow reads it from the generator's checkpoint)",
}
# Free-form mappings whose keys are not fields (new keys allowed).
OPEN = ("job.baselines", "job.plan.rates", "job.trainset.rates")


PRESETS: dict[str, JobConfig] = {
    # 2-core CPU, whole job <= 30 min: a 12-subject cohort (3,840 frames: enough for JAA-Net to beat the
    # always-present baseline), 64-px faces, LAC-GAN's demo schedule, JAA-Net's demo schedule by epochs (the
    # wall-clock cap is a safety net only; the report says when it cut training short).
    "demo": JobConfig(
        preset="demo",
        cohort=CohortConfig(subjects=12, tasks=8, frames=40, size=160),
        lacgan=lacgan_preset("demo"),
        detectors=DetectorsConfig(jaanet=JAANET_PRESETS["demo"], jaanet_minutes=20.0, hogsvm=HOGSVM_PRESETS["cpu"]),
        plan=PlanConfig(source="neutral"),
        generate=GenerateConfig(frames_per_shard=64),
        report=ReportConfig(identity_pairs=32),
        trainset=TrainsetConfig(critic="hogsvm"),  # failed edits unlabelled by the job's HOG+SVM (docs/trainset.md)
        # HOG+SVM's payoff only: its ceiling arm (controls=("counterfactual",)) costs ~4 min on a fast 2-core
        # machine and 4.7 on a slow one, more than the slow machine's margin in the 30-minute budget (docs/trainset.md)
        payoff=PayoffSettings(detectors=("hogsvm",)),
        baselines={"ganimation": ganimation_preset("demo")}),
    # BP4D with the paper's sizes and schedules (GPU recommended).
    "bp4d": JobConfig(
        preset="bp4d",
        lacgan=lacgan_preset("paper"),
        detectors=DetectorsConfig(jaanet=JAANET_PRESETS["paper"], hogsvm=HOGSVM_PRESETS["paper"]),
        generate=GenerateConfig(frames_per_shard=256),
        report=ReportConfig(identity_pairs=500),
        baselines={"ganimation": ganimation_preset("paper")}),
    # Tests: the smallest end-to-end run.
    "smoke": JobConfig(
        preset="smoke",
        cohort=CohortConfig(subjects=6, tasks=2, frames=12, size=160),
        lacgan=lacgan_preset("smoke"),
        detectors=DetectorsConfig(hogsvm=HOGSVM_PRESETS["cpu"]),
        generate=GenerateConfig(frames_per_shard=16),
        report=ReportConfig(identity_pairs=4),
        baselines={"ganimation": ganimation_preset("smoke")}),
}


def _given(changes: dict, path: tuple[str, ...]) -> bool:
    node = changes
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def compose_job(preset: str = "demo", changes: dict | None = None) -> JobConfig:
    """Preset `preset` with `changes` (a partial JobConfig dict) laid over it, derived values set, validated.
    ConfigError naming the field on any unknown field, wrong type, refused value or derived field given."""
    if preset not in PRESETS:
        raise ConfigError(f"job: unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    changes = dict(changes or {})
    for path, instead in DERIVED.items():
        if _given(changes, path):
            raise ConfigError(f"job.{'.'.join(path)}: derived, not configured; set {instead}")
    base = PRESETS[preset].to_dict()
    for name in ("trainset", "payoff", "cohort"):  # an absent section given: start from its defaults
        if base[name] is None and isinstance(changes.get(name), dict):
            base[name] = to_dict({"trainset": TrainsetConfig(), "payoff": PayoffSettings(),
                                  "cohort": CohortConfig()}[name])
    job = build(JobConfig, merge(base, changes, "job", OPEN), "job")
    return derive(job)


def job_changes(config: dict | None = None, test_fold: int | None = None, workers: int | None = None,
                scheduler: str | None = None, openface: dict | None = None) -> dict:
    """The job changes of the augment flow's (and command's) parameters: `config` (a partial JobConfig dict) with
    the named parameters that are set laid over it (they win): the test fold, generation's Dask workers or
    scheduler, and OpenFace's settings (detectors.openface_config.optional_settings)."""
    named: dict = {} if test_fold is None else {"test_fold": test_fold}
    gen = {k: v for k, v in (("workers", workers), ("scheduler", scheduler)) if v is not None}
    if gen:
        named["generate"] = gen
    if openface:
        named["detectors"] = {"openface": openface}
    return overlay(config or {}, named)


def derive(job: JobConfig) -> JobConfig:
    """Set the derived values (crop size, test fold) and check the sections agree; ConfigError otherwise."""
    k, size = job.test_fold, job.size
    if k not in (1, 2, 3):
        raise ConfigError(f"job.test_fold: must be 1, 2 or 3 (JAA-Net's subject folds), got {k}")
    lacgan = job.lacgan.replace(train={"test_fold": k})
    baselines = {name: cfg.replace(net={"size": size}, train={"test_fold": k}) for name, cfg in job.baselines.items()}
    trainset = replace(job.trainset, test_fold=k) if job.trainset is not None else None
    if job.plan.policy != "match-test":
        raise ConfigError(f"job.plan.policy: Table 1's synthetic set mirrors the test fold ('match-test'), got "
                          f"{job.plan.policy!r}; balanced sets are the trainset section's")
    if job.payoff is not None:
        if trainset is None:
            raise ConfigError("job.payoff: needs a training set (the trainset section)")
        missing = [d for d in job.payoff.detectors if d not in job.detectors.trainable()]
        if missing:
            raise ConfigError(f"job.payoff.detectors: {missing} not among the job's trained detectors "
                              f"{sorted(job.detectors.trainable())}")
        from pipelines.payoff import PayoffError, check_controls

        try:
            check_controls(job.payoff.controls)
        except PayoffError as e:
            raise ConfigError(f"job.payoff.controls: {e}") from None
        if "counterfactual" in job.payoff.controls and job.cohort is None:
            raise ConfigError("job.payoff.controls: 'counterfactual' renders the embedded cohort's truth; a BP4D job "
                              "(no cohort section) has no renderer")
    if trainset is not None and trainset.critic is not None and trainset.critic not in job.detectors.trainable():
        raise ConfigError(f"job.trainset.critic: {trainset.critic!r} is not among the job's trained detectors "
                          f"{sorted(job.detectors.trainable())}")
    if job.detectors.openface is not None and job.detectors.openface.binary is None:
        raise ConfigError("job.detectors.openface: needs binary (FeatureExtraction or the folder of OpenFace's "
                          "executables)")
    return replace(job, lacgan=lacgan, baselines=baselines, trainset=trainset,
                   plan=replace(job.plan, test_fold=k))


def payoff_config(job: JobConfig):
    """The payoff step's PayoffConfig: the job's detector configs, seeds and test fold."""
    from pipelines.payoff import PayoffConfig

    trainable = job.detectors.trainable()
    return PayoffConfig(detectors=job.payoff.detectors, seeds=job.payoff.seeds, band=job.payoff.band,
                        configs={d: trainable[d] for d in job.payoff.detectors}, test_fold=job.test_fold,
                        controls=job.payoff.controls)


def write_job(job: JobConfig, path) -> Path:
    from lacgan.atomic import write_text

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps({"preset": job.preset, "job": job.to_dict()}, indent=1, sort_keys=True) + "\n")
    return Path(path)


def read_job(path) -> JobConfig:
    """A job written by `write_job` (or a hand-written full job dict), checked as `compose_job` checks."""
    from lacgan.typed import read_config

    job = read_config(JobConfig, path, "job", unwrap="job")
    try:
        return derive(job)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
