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

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from prefect import flow

from detectors.openface_config import Grouping, OpenFaceConfig, optional_settings
from flows import tasks as t
from lacgan.checkpoint import region_rule
from pipelines.compare import METHODS
from pipelines.job import JobConfig, compose_job, derive, job_changes, payoff_config

OPENFACE = OpenFaceConfig()  # defaults of the OpenFace parameters below (configured in detectors/openface_config)


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
    job: str  # the composed job configuration (JSON), written before any step runs
    configs: str  # the config file each training child process is handed (lacgan.json, jaanet.json, ...)

    @classmethod
    def under(cls, out) -> "Layout":
        out = Path(out)
        return cls(*(str(out / n) for n in ("cohort", "manifest.parquet", "aligned.zarr", "lacgan", "detectors",
                                            "plan.parquet", "synthetic", "counterfactual", "scores.parquet",
                                            "report", "trainset", "job.json", "configs")))

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
# Each takes paths, the job preset, its test fold and optional job changes (`config`, a partial JobConfig dict:
# pipelines.job), composes the job and runs its step with that job's section.
def _job(preset: str, test_fold: int | None, config: dict[str, Any] | None) -> JobConfig:
    return compose_job(preset, {**(config or {}), **({} if test_fold is None else {"test_fold": test_fold})})


@flow(name="train_lacgan")
def train_lacgan(store: str, run_dir: str, preset: str = "demo", test_fold: int | None = None,
                 config: dict[str, Any] | None = None) -> str:
    """LAC-GAN of job preset `preset` (e.g. config={"lacgan": {"train": {"steps": 3000}}})."""
    job = _job(preset, test_fold, config)
    return t.train_generator(store, run_dir, job.lacgan, str(Path(run_dir).parent / "configs" / "lacgan.json"))


@flow(name="train_detectors")
def train_detectors(store: str, out: str, preset: str = "demo", test_fold: int | None = None,
                    config: dict[str, Any] | None = None) -> dict[str, str]:
    """The trainable detectors of job preset `preset` into out/NAME; returns {name: weights folder}."""
    return _train_detectors(store, out, _job(preset, test_fold, config), str(Path(out) / "configs"))


def _train_detectors(store: str, out: str, job: JobConfig, configs: str) -> dict[str, str]:
    # one after the other: each trainer already uses both cores of a small machine
    minutes = {"jaanet": job.detectors.jaanet_minutes}
    return {name: t.train_detector(name, store, str(Path(out) / name), cfg, str(Path(configs) / f"{name}.json"),
                                   minutes.get(name), job.test_fold)
            for name, cfg in job.detectors.trainable().items()}


@flow(name="plan")
def plan(store: str, out: str, policy: str = "match-test", test_fold: int = 3, count: int = 100,
         seed: int = 0, source: str = "random") -> str:
    from pipelines.plan import PlanConfig

    return t.make_plan(store, out, PlanConfig(policy=policy, test_fold=test_fold, count=count, seed=seed,
                                              source=source))


@flow(name="generate")
def generate(plan: str, store: str, checkpoint: str, out: str, workers: int = 2, scheduler: str | None = None,
             frames_per_shard: int = 64) -> str:
    from pipelines.generate import GenerateConfig

    return t.generate(plan, store, checkpoint, out, GenerateConfig(frames_per_shard=frames_per_shard,
                                                                   workers=workers, scheduler=scheduler))


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
    from pipelines.report import ReportConfig

    return _report(scores, synth, store, out, ReportConfig(checkpoint=checkpoint, identity_pairs=identity_pairs),
                   counterfactual)


def _report(scores: str, synth: str, store: str, out: str, cfg, counterfactual: str | None) -> str:
    md = t.report(scores, synth, store, out, cfg, counterfactual)
    t.publish_report(md)
    return md


@flow(name="compare")
def compare(reports: dict[str, str], out: str) -> str:
    """Report folders {method: folder} of the same plan and detectors side by side; returns comparison.md."""
    return t.compare(reports, out)


@flow(name="trainset")
def trainset(store: str, checkpoint: str, out: str, preset: str = "demo", test_fold: int | None = None,
             config: dict[str, Any] | None = None, detectors: dict[str, str] | None = None) -> str:
    """The job's balanced training set from the training folds, exported, and its payoff; returns payoff.md.
    `detectors`: trained detector folders by name ({"hogsvm": DIR}), for the critic the job's trainset names."""
    return _trainset(store, checkpoint, out, _job(preset, test_fold, config), detectors or {})


def _trainset(store: str, checkpoint: str, out: str, job: JobConfig, detectors: dict[str, str]) -> str:
    if job.trainset is None or job.payoff is None:
        raise ValueError(f"job preset {job.preset!r} has no trainset/payoff section; give them in config")
    critic = job.trainset.critic  # build_trainset refuses a named critic without its folder
    t.trainset(store, checkpoint, out, job.trainset, job.generate, detectors.get(critic) if critic else None)
    return t.payoff(store, str(Path(out) / "synthetic"), str(Path(out) / "payoff"), payoff_config(job))


# ---- the umbrella flow -----------------------------------------------------------------------------------
@flow(name="augment")
def augment(out: str = "runs/demo/augment", preset: str = "demo", bp4d_root: str | None = None,
            workers: int | None = None, scheduler: str | None = None, openface_bin: str | None = None,
            openface_model: str | None = OPENFACE.model, openface_grouping: Grouping = OPENFACE.grouping,
            openface_timeout: float = OPENFACE.timeout, folds: Literal["test", "all"] = "test",
            baseline: Literal["ganimation"] | None = None, test_fold: int | None = None,
            config: dict[str, Any] | None = None) -> str:
    """The whole job; returns the path of the report's report.md. The job configuration (pipelines.job) is preset
    `preset` with `config` (a partial JobConfig dict, e.g. {"lacgan": {"train": {"steps": 3000}}}) and the named
    parameters laid over it, composed and checked before any step runs, and written to OUT/job.json.
    `test_fold`: the held-out fold (default: the preset's, 3). `workers`/`scheduler`: Dask for generation.
    `openface_bin`: also score with the user's OpenFace 2.x (FeatureExtraction, or the folder of its
    executables; the project never builds it), real and synthetic frames alike, with `-mloc openface_model`,
    `openface_grouping` ("sequence", "static", or "frame": FaceLandmarkImg, every frame alone) and
    `openface_timeout` seconds per OpenFace call. `folds`: "test" holds out the test fold; "all" runs the job
    once per fold (models trained on the other two, under OUT/fold-K/) and averages Table 1 over the three folds
    into OUT/report (3x the cost). `baseline`: also train that peer (GANimation, the job's `baselines` config) on
    the same store and folds, generate the same plan with it, score and report it, and write LAC-GAN vs it side
    by side (OUT/comparison_NAME; per fold with "all")."""
    if folds not in ("test", "all"):
        raise ValueError(f"folds must be 'test' or 'all', got {folds!r}")
    openface = optional_settings(openface_bin, openface_model, openface_grouping, openface_timeout)  # check now
    job = compose_job(preset, job_changes(config, test_fold, workers, scheduler, openface))
    if baseline is not None and baseline not in job.baselines:
        raise ValueError(f"job preset {preset!r} has no baseline {baseline!r}; choose one of {sorted(job.baselines)}")
    if not bp4d_root and job.cohort is None:
        raise ValueError(f"preset {preset!r} needs bp4d_root (the root of a BP4D tree)")
    lay = Layout.under(out)
    t.write_job(job, lay.job)  # what this run is, before any step runs
    if bp4d_root:
        manifest = t.ingest_bp4d(bp4d_root, lay.manifest)
    else:
        manifest = t.ingest_bp4d(t.write_cohort(lay.cohort, job.cohort), lay.manifest)
    store = t.align(manifest, lay.store, job.size)
    if folds == "test":
        return _one_fold(job, lay, store, baseline)
    reports = [_one_fold(derive(replace(job, test_fold=k)), Layout.under(Path(out) / f"fold-{k}"), store, baseline)
               for k in FOLDS]
    return t.fold_report([str(Path(r).parent) for r in reports], lay.report, bool(bp4d_root))


FOLDS = (1, 2, 3)  # JAA-Net's three subject folds (manifests.folds)


def _one_fold(job: JobConfig, lay: Layout, store: str, baseline: str | None = None) -> str:
    """Train on every fold but the job's test fold, plan, generate, draw the counterfactuals, score, report; then
    the training set and its payoff, if the job has them; then the baseline, if any, through the same steps, and
    the comparison."""
    k = job.test_fold
    gan = t.train_generator(store, lay.lacgan, job.lacgan, str(Path(lay.configs) / "lacgan.json"))
    dets = _train_detectors(store, lay.detectors, job, lay.configs)
    openface = None if job.detectors.openface is None else asdict(job.detectors.openface)
    plan_path = t.make_plan(store, lay.plan, job.plan)
    synth = t.generate(plan_path, store, gan, lay.synth, job.generate)
    cf = t.counterfactual(plan_path, store, lay.counterfactual)
    scores = t.score(store, synth, dets, lay.scores, k, openface, cf)
    md = _report(scores, synth, store, lay.report, replace(job.report, checkpoint=gan), cf)
    if job.payoff is not None:  # the second product: a balanced training set and what it buys a detector
        _trainset(store, gan, lay.trainset, job, dets)
    if baseline:  # the same store, folds, plan, detectors and counterfactual set; its own outputs
        b = lay.baseline(baseline)
        cfg = job.baselines[baseline]
        run = t.train_generator.with_options(name=f"train_{baseline}")(store, b.run, cfg,
                                                                       str(Path(lay.configs) / f"{baseline}.json"))
        synth_b = t.generate(plan_path, store, run, b.synth, job.generate)
        scores_b = t.score(store, synth_b, dets, b.scores, k, openface, cf)
        rep_b = replace(job.report, checkpoint=run, regions=region_rule(gan))  # in LAC-GAN's regions, as its report
        md_b = t.report(scores_b, synth_b, store, b.report, rep_b, cf)
        t.compare({METHODS["lacgan"]: str(Path(md).parent), METHODS[baseline]: str(Path(md_b).parent)}, b.comparison)
    return md
