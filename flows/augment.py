"""Prefect flows: the steps of the augment job and the umbrella `augment` flow, a few lines each.

    augment(out, preset="demo")            embedded cohort -> align -> LAC-GAN -> detectors -> plan -> generate
                                            -> counterfactual (cohort only) -> score -> report (Table 1)
                                            -> training set + payoff (hogsvm)
    augment(out, preset="bp4d", bp4d_root=...)   the same on a BP4D tree with the paper presets
    augment(out, preset="demo", baseline="ganimation")   and GANimation through the same steps (its own run,
                                            synthetic store, scores, report), then LAC-GAN vs GANimation

Every step writes under `out` (layout in `Layout`) and resumes, so re-running the flow after an interruption
continues where it stopped. The Dask client for generation runs inside one task (not a DaskTaskRunner:
measured ~2x faster for shard-sized tasks, and no Prefect server per Dask worker in ephemeral mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from prefect import flow

from detectors.openface_config import Grouping, OpenFaceConfig, optional_settings
from flows import tasks as t
from lacgan.checkpoint import region_rule
from pipelines.compare import METHODS

OPENFACE = OpenFaceConfig()  # defaults of the OpenFace parameters below (configured in detectors/openface_config)


@dataclass(frozen=True)
class AugmentPreset:
    size: int  # aligned crop side in px (must equal the LAC-GAN preset's size)
    lacgan_preset: str  # lacgan.config preset
    lacgan_steps: int | None  # LAC-GAN steps (None: the preset's)
    detectors: dict = field(default_factory=dict)  # name -> {"preset", "minutes", "epochs"} for trainable detectors
    cohort: dict | None = None  # embedded cohort size (subjects, tasks, frames, size), None for BP4D
    frames_per_shard: int = 64  # synthetic frames per Zarr shard / Dask task
    identity_pairs: int = 64  # source/synthetic pairs for the identity distance
    test_fold: int = 3  # JAA-Net protocol: train on folds 1-2, test on fold 3
    source: str = "random"  # plan sources: any other frame of the subject, or "neutral" (its least expressive)
    payoff: tuple[str, ...] = ()  # detectors whose training-set payoff is measured (empty: no training set)
    baselines: dict = field(default_factory=dict)  # baseline model -> its preset, for `baseline=` (e.g. ganimation)


PRESETS: dict[str, AugmentPreset] = {
    # 2-core CPU, whole job <= 30 min: a 12-subject cohort (3,840 frames: enough for JAA-Net to beat the
    # always-present baseline), 64-px faces, LAC-GAN's demo schedule, JAA-Net's demo schedule by epochs (the
    # wall-clock cap is a safety net only; the report says when it cut training short).
    "demo": AugmentPreset(
        size=64, lacgan_preset="demo", lacgan_steps=None,
        detectors={"jaanet": {"preset": "demo", "minutes": 20.0}, "hogsvm": {"preset": "cpu"}},
        cohort=dict(subjects=12, tasks=8, frames=40, size=160), frames_per_shard=64, identity_pairs=32,
        source="neutral", payoff=("hogsvm",), baselines={"ganimation": "demo"}),
    # BP4D with the paper's sizes and schedules (GPU recommended).
    "bp4d": AugmentPreset(
        size=200, lacgan_preset="paper", lacgan_steps=None,
        detectors={"jaanet": {"preset": "paper"}, "hogsvm": {"preset": "paper"}},
        frames_per_shard=256, identity_pairs=500, baselines={"ganimation": "paper"}),
    # Tests: the smallest end-to-end run.
    "smoke": AugmentPreset(
        size=64, lacgan_preset="smoke", lacgan_steps=None, detectors={"hogsvm": {"preset": "cpu"}},
        cohort=dict(subjects=6, tasks=2, frames=12, size=160), frames_per_shard=16, identity_pairs=4,
        baselines={"ganimation": "smoke"}),
}


@dataclass(frozen=True)
class Layout:
    """Where each step writes under the output folder."""

    cohort: str  # embedded cohort (BP4D layout)
    manifest: str  # frame manifest
    store: str  # aligned store
    lacgan: str  # LAC-GAN run directory
    detectors: str  # one weights folder per detector
    plan: str  # plan Parquet
    synth: str  # synthetic store + manifest parts
    counterfactual: str  # counterfactual frames (embedded cohort only), synthetic-store layout
    scores: str  # long score table
    report: str  # report folder
    trainset: str  # label-balanced training set (plan, synthetic, export) and its payoff

    @classmethod
    def under(cls, out) -> "Layout":
        out = Path(out)
        return cls(*(str(out / n) for n in ("cohort", "manifest.parquet", "aligned.zarr", "lacgan", "detectors",
                                            "plan.parquet", "synthetic", "counterfactual", "scores.parquet",
                                            "report", "trainset")))

    def baseline(self, name: str) -> "BaselineLayout":
        return BaselineLayout.under(Path(self.plan).parent, name)


@dataclass(frozen=True)
class BaselineLayout:
    """Where a baseline's steps write (beside LAC-GAN's, under the same output folder)."""

    run: str  # its run directory, e.g. ganimation/
    synth: str  # its synthetic store of the same plan, e.g. synthetic_ganimation/
    scores: str  # its score table (the same detectors)
    report: str  # its own report folder
    comparison: str  # LAC-GAN vs the baseline, side by side

    @classmethod
    def under(cls, out, name: str) -> "BaselineLayout":
        out = Path(out)
        return cls(*(str(out / n) for n in (name, f"synthetic_{name}", f"scores_{name}.parquet", f"report_{name}",
                                            f"comparison_{name}")))


# ---- step flows ----------------------------------------------------------------------------------------
@flow(name="train_lacgan")
def train_lacgan(store: str, run_dir: str, preset: str = "demo", steps: int | None = None, test_fold: int = 3) -> str:
    return t.train_generator(store, run_dir, preset, steps, test_fold)


@flow(name="train_detectors")
def train_detectors(store: str, out: str, detectors: dict, test_fold: int = 3) -> dict[str, str]:
    """Train each detector ({name: {"preset", "minutes", "epochs"}}) into out/NAME; returns {name: weights}."""
    # one after the other: each trainer already uses both cores of a small machine
    return {name: t.train_detector(name, store, str(Path(out) / name), test_fold=test_fold, **opts)
            for name, opts in detectors.items()}


@flow(name="plan")
def plan(store: str, out: str, policy: str = "match-test", test_fold: int = 3, count: int = 100,
         seed: int = 0, source: str = "random") -> str:
    return t.make_plan(store, out, policy, test_fold, count, seed, source)


@flow(name="generate")
def generate(plan: str, store: str, checkpoint: str, out: str, workers: int = 2, scheduler: str | None = None,
             frames_per_shard: int = 64) -> str:
    return t.generate(plan, store, checkpoint, out, workers, scheduler, frames_per_shard)


@flow(name="counterfactual")
def counterfactual(plan: str, store: str, out: str) -> str | None:
    """The plan's counterfactual frames (embedded cohort only; None where there is no renderer)."""
    return t.counterfactual(plan, store, out)


@flow(name="score")
def score(store: str, synth: str, detectors: dict[str, str | None], out: str, test_fold: int = 3,
          openface_bin: str | None = None, openface_model: str | None = OPENFACE.model,
          openface_grouping: Grouping = OPENFACE.grouping, openface_timeout: float = OPENFACE.timeout,
          counterfactual: str | None = None) -> str:
    """`openface_*`: also score with OpenFace (see `augment`); `counterfactual`: the plan's counterfactual set."""
    openface = optional_settings(openface_bin, openface_model, openface_grouping, openface_timeout)
    return t.score(store, synth, detectors, out, test_fold, openface, counterfactual)


@flow(name="report")
def report(scores: str, synth: str, store: str, out: str, checkpoint: str | None = None,
           identity_pairs: int = 64, counterfactual: str | None = None) -> str:
    md = t.report(scores, synth, store, out, checkpoint, identity_pairs, counterfactual)
    t.publish_report(md)
    return md


@flow(name="compare")
def compare(reports: dict[str, str], out: str) -> str:
    """Report folders {method: folder} of the same plan and detectors side by side; returns comparison.md."""
    return t.compare(reports, out)


@flow(name="trainset")
def trainset(store: str, checkpoint: str, out: str, detectors: tuple[str, ...] = ("hogsvm",), test_fold: int = 3,
             workers: int = 2, scheduler: str | None = None) -> str:
    """A balanced training set from the training folds, exported, and its payoff; returns payoff.md."""
    t.trainset(store, checkpoint, out, test_fold, workers=workers, scheduler=scheduler)
    return t.payoff(store, str(Path(out) / "synthetic"), str(Path(out) / "payoff"), detectors, test_fold=test_fold)


# ---- the umbrella flow -----------------------------------------------------------------------------------
@flow(name="augment")
def augment(out: str = "runs/demo/augment", preset: str = "demo", bp4d_root: str | None = None, workers: int = 2,
            scheduler: str | None = None, openface_bin: str | None = None, openface_model: str | None = OPENFACE.model,
            openface_grouping: Grouping = OPENFACE.grouping, openface_timeout: float = OPENFACE.timeout,
            folds: Literal["test", "all"] = "test", baseline: Literal["ganimation"] | None = None) -> str:
    """The whole job; returns the path of the report's report.md. `openface_bin`: also score with the user's
    OpenFace 2.x (FeatureExtraction, or the folder of its executables; the project never builds it), real and
    synthetic frames alike, with `-mloc openface_model`, `openface_grouping` ("sequence", "static", or "frame":
    FaceLandmarkImg, every frame alone) and `openface_timeout` seconds per OpenFace call. `folds`: "test" holds
    out the preset's test fold; "all" runs the job once per fold (models trained on the other two, under
    OUT/fold-K/) and averages Table 1 over the three folds into OUT/report (3x the cost). `baseline`: also train
    that peer (GANimation, at the preset's `baselines` preset) on the same store and folds, generate the same plan
    with it, score and report it, and write LAC-GAN vs it side by side (OUT/comparison_NAME; per fold with "all")."""
    if preset not in PRESETS:
        raise ValueError(f"unknown augment preset {preset!r}; choose one of {sorted(PRESETS)}")
    if folds not in ("test", "all"):
        raise ValueError(f"folds must be 'test' or 'all', got {folds!r}")
    openface = optional_settings(openface_bin, openface_model, openface_grouping, openface_timeout)  # check now
    p, lay = PRESETS[preset], Layout.under(out)
    if baseline is not None and baseline not in p.baselines:
        raise ValueError(f"preset {preset!r} has no baseline {baseline!r}; choose one of {sorted(p.baselines)}")
    Path(out).mkdir(parents=True, exist_ok=True)
    if bp4d_root:
        manifest = t.ingest_bp4d(bp4d_root, lay.manifest)
    elif p.cohort:
        manifest = t.ingest_bp4d(t.write_cohort(lay.cohort, **p.cohort), lay.manifest)
    else:
        raise ValueError(f"preset {preset!r} needs bp4d_root (the root of a BP4D tree)")
    store = t.align(manifest, lay.store, p.size)
    if folds == "test":
        return _one_fold(p, lay, store, p.test_fold, workers, scheduler, openface, baseline)
    reports = [_one_fold(p, Layout.under(Path(out) / f"fold-{k}"), store, k, workers, scheduler, openface, baseline)
               for k in FOLDS]
    return t.fold_report([str(Path(r).parent) for r in reports], lay.report, bool(bp4d_root))


FOLDS = (1, 2, 3)  # JAA-Net's three subject folds (manifests.folds)


def _one_fold(p: AugmentPreset, lay: Layout, store: str, test_fold: int, workers: int, scheduler: str | None,
              openface: dict | None, baseline: str | None = None) -> str:
    """Train on every fold but `test_fold`, plan, generate, draw the counterfactuals, score, report; then the
    baseline, if any, through the same steps, and the comparison."""
    gan = t.train_generator(store, lay.lacgan, p.lacgan_preset, p.lacgan_steps, test_fold)
    dets = train_detectors(store, lay.detectors, p.detectors, test_fold)
    plan_path = t.make_plan(store, lay.plan, "match-test", test_fold, source=p.source)
    synth = t.generate(plan_path, store, gan, lay.synth, workers, scheduler, p.frames_per_shard)
    cf = t.counterfactual(plan_path, store, lay.counterfactual)
    scores = t.score(store, synth, dets, lay.scores, test_fold, openface, cf)
    md = report(scores, synth, store, lay.report, gan, p.identity_pairs, cf)
    if p.payoff:  # the second product: a balanced training set and what it buys a detector
        trainset(store, gan, lay.trainset, p.payoff, test_fold, workers, scheduler)
    if baseline:  # the same store, folds, plan, detectors and counterfactual set; its own outputs
        b = lay.baseline(baseline)
        run = t.train_generator.with_options(name=f"train_{baseline}")(store, b.run, p.baselines[baseline], None,
                                                                       test_fold, model=baseline)
        synth_b = t.generate(plan_path, store, run, b.synth, workers, scheduler, p.frames_per_shard)
        scores_b = t.score(store, synth_b, dets, b.scores, test_fold, openface, cf)
        md_b = t.report(scores_b, synth_b, store, b.report, run, p.identity_pairs, cf,
                        regions=region_rule(gan))  # measured in LAC-GAN's regions, as LAC-GAN's report is
        t.compare({METHODS["lacgan"]: str(Path(md).parent), METHODS[baseline]: str(Path(md_b).parent)}, b.comparison)
    return md
