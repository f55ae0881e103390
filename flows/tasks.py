"""Prefect tasks: each a few lines over library functions, passing paths. Tasks whose I/O or subprocess can fail
transiently retry; every step underneath resumes, so a retry continues instead of starting over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

IO_RETRIES = dict(retries=2, retry_delay_seconds=2)  # file-system work: a retry resumes where it stopped
SUBPROCESS_RETRIES = dict(retries=1, retry_delay_seconds=5)  # long subprocesses: they resume from checkpoints


def run_cli(args: list[str]) -> None:
    """Run `lacgan ARGS...` in a child process (an argument list, never a shell string), its output (stdout and
    stderr) forwarded line by line to the run's logger, so training progress shows in the flow's logs; raise on
    failure, with the child's last lines."""
    cmd = [sys.executable, "-m", "flows.cli", *args]
    logger = get_run_logger()
    logger.info("running %s", " ".join(cmd))
    tail: deque[str] = deque(maxlen=5)  # the child's last lines, for the error message
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                logger.info("%s", line)
                tail.append(line)
    if proc.returncode != 0:
        last = f": {' | '.join(tail)}" if tail else ""
        raise RuntimeError(f"`lacgan {' '.join(args)}` failed with exit code {proc.returncode}{last}")


# ---- data ------------------------------------------------------------------------------------------------
@task
def write_job(job, path: str) -> str:
    """The composed job configuration (pipelines.job.JobConfig) as OUT/job.json: what this run is."""
    from pipelines.job import write_job as write

    write(job, path)
    get_run_logger().info("job %s (preset %s, test fold %d, %d-px faces) -> %s", job.preset, job.preset,
                          job.test_fold, job.size, path)
    return path


@task(**IO_RETRIES)
def write_cohort(root: str, cfg) -> str:
    """The embedded cohort of `cfg` (manifests.cohort.CohortConfig) in BP4D's layout under `root`."""
    from dataclasses import replace

    from manifests.cohort import write_cohort as write

    write(root, replace(cfg, workers=min(cfg.workers, os.cpu_count() or 1)))
    return root


@task(**IO_RETRIES)
def ingest_bp4d(root: str, manifest: str) -> str:
    from manifests.bp4d import read_bp4d
    from manifests.schema import write_manifest

    write_manifest(read_bp4d(root), manifest, root=root)
    return manifest


@task(**IO_RETRIES)
def align(manifest: str, store: str, size: int) -> str:
    from pipelines.align import align_manifest

    align_manifest(manifest, store, size=size, workers=min(2, os.cpu_count() or 1))
    return store


# ---- training ----------------------------------------------------------------------------------------------
@task(**SUBPROCESS_RETRIES)
def train_generator(store: str, run_dir: str, cfg, config_file: str) -> str:
    """LAC-GAN (or GANimation: cfg.MODEL) training of config `cfg` in a child process, handed the config as the
    file `config_file` (resumes from the run's latest checkpoint)."""
    from lacgan.run import write_model_config

    write_model_config(cfg, config_file)
    run_cli(["train", "--model", cfg.MODEL, "--store", store, "--out", run_dir, "--config", config_file,
             "--progress", "log"])
    return run_dir


def detector_done(weights_dir: str) -> bool:
    """A detector folder whose config.json holds the training summary (written last by its trainer)."""
    cfg = Path(weights_dir) / "config.json"
    try:
        return "summary" in json.loads(cfg.read_text())
    except (OSError, ValueError):
        return False


@task(**SUBPROCESS_RETRIES)
def train_detector(name: str, store: str, weights_dir: str, cfg, config_file: str, minutes: float | None = None,
                   test_fold: int = 3) -> str:
    """Detector `name` trained with config `cfg` in a child process, handed the config as the file `config_file`;
    `minutes`: a wall-clock safety net."""
    from lacgan.atomic import write_text
    from lacgan.typed import to_dict

    if detector_done(weights_dir):
        get_run_logger().info("%s: trained weights found in %s; not retraining", name, weights_dir)
        return weights_dir
    Path(config_file).parent.mkdir(parents=True, exist_ok=True)
    write_text(config_file, json.dumps(to_dict(cfg), indent=1, sort_keys=True) + "\n")
    args = ["detect", "train", "--detector", name, "--store", store, "--out", weights_dir, "--config", config_file,
            "--test-fold", str(test_fold), "--progress", "log"]
    run_cli(args + (["--minutes", str(minutes)] if minutes else []))
    return weights_dir


# ---- the augment steps -------------------------------------------------------------------------------------
@task(**IO_RETRIES)
def make_plan(store: str, plan: str, cfg) -> str:
    """The plan of `cfg` (pipelines.plan.PlanConfig)."""
    from pipelines.plan import achieved_rates, build_plan, read_plan

    build_plan(store, plan, cfg)
    df = read_plan(plan)
    get_run_logger().info("plan %s: %d frames, %d subjects; target presence rates: %s", plan, len(df),
                          df["subject"].nunique(),
                          {f"AU{r.au}": round(r.rate, 3) for r in achieved_rates(df).itertuples()})
    return plan


@task  # no retries: generation resumes by itself, and a failed shard is reported with its cause
def generate(plan: str, store: str, checkpoint: str, out: str, cfg) -> str:
    """The plan's frames with `cfg` (pipelines.generate.GenerateConfig)."""
    import logging

    from pipelines.generate import generate as run

    logging.getLogger("lacgan").setLevel(logging.INFO)  # per-shard frames/s reach the flow log (extra logger)
    s = run(plan, store, checkpoint, out, cfg)
    get_run_logger().info("generated %d of %d shards (%d were done) in %.1f s: %.2f frames/s; model %.1f s, "
                          "I/O %.1f s", s.generated, s.shards, s.skipped, s.seconds, s.frames_per_s, s.model_s, s.io_s)
    return out


@task(**IO_RETRIES)
def counterfactual(plan: str, store: str, out: str) -> str | None:
    """The counterfactual frames of the plan (embedded cohort only); None, with the reason logged, otherwise."""
    from pipelines.counterfactual import CounterfactualConfig, available, write_counterfactuals

    reason = available(store)
    if reason:
        get_run_logger().info("counterfactual frames not available: %s", reason)
        return None
    return str(write_counterfactuals(plan, store, out, CounterfactualConfig(workers=min(2, os.cpu_count() or 1))))


def _retry_unless_detector_failed(task, task_run, state) -> bool:
    """A detector that failed on every frame fails the same way again (e.g. a missing OpenFace model): no retry."""
    from detectors.failures import DetectorFailed

    return not isinstance(state.result(raise_on_failure=False), DetectorFailed)


@task(**IO_RETRIES, retry_condition_fn=_retry_unless_detector_failed)
def score(store: str, synth: str, detectors: dict[str, str | None], scores: str, test_fold: int = 3,
          openface: dict | None = None, counterfactual: str | None = None) -> str:
    """`openface`: OpenFace settings (detectors.openface_config.settings_for) when it is scored too, else None."""
    from pipelines.score import DetectorSpec, score_all

    specs = [DetectorSpec(name, weights) for name, weights in detectors.items()]
    if openface:
        specs.append(DetectorSpec("openface", None, openface))
    return str(score_all(store, synth, specs, scores, test_fold, counterfactual))


@task(**IO_RETRIES)
def report(scores: str, synth: str, store: str, out: str, cfg, counterfactual: str | None = None) -> str:
    """The report of `cfg` (pipelines.report.ReportConfig; its `regions`: the AU region rule to measure locality
    in, None: the synthetic set's generator's)."""
    from pipelines.report import write_report

    return str(write_report(scores, synth, store, out, cfg, counterfactual=counterfactual))


@task(**IO_RETRIES)
def compare(reports: dict[str, str], out: str) -> str:
    """The side-by-side page of per-method report folders ({method: folder}), published as an artifact."""
    from pipelines.compare import write_comparison

    md = write_comparison(reports, out)
    create_markdown_artifact(key="comparison", markdown=md.read_text(), description=f"{' vs '.join(reports)}: {md}")
    return str(md)


@task(**IO_RETRIES)
def fold_report(report_dirs: list[str], out: str, paper: bool = False) -> str:
    from pipelines.report import write_fold_report

    return str(write_fold_report(report_dirs, out, paper))


@task
def publish_report(report_md: str) -> None:
    """Table 1 and the beyond-the-paper checks as Prefect markdown artifacts, figures as links."""
    folder = Path(report_md).parent
    create_markdown_artifact(key="table1", markdown="# Table 1\n\n" + (folder / "table1.md").read_text(),
                             description=f"Table 1 from {folder}")
    figures = "\n".join(f"- [{p.name}]({p.resolve().as_uri()})" for p in sorted((folder / "figures").glob("*.png")))
    create_markdown_artifact(key="augment-report", markdown=(
        f"# Augment report\n\nFolder: `{folder.resolve()}`\n\n## Figures\n\n{figures}\n\n"
        f"Score files (recompute every number): `{(folder / 'scores.parquet').resolve()}`"))


# ---- the training set and its payoff ----------------------------------------------------------------------
@task  # no retries: plan, generation and export each resume by themselves
def trainset(store: str, checkpoint: str, out: str, cfg, gen_cfg, critic: str | None = None) -> str:
    """The training set of `cfg` (pipelines.trainset.TrainsetConfig: training folds only), generated with `gen_cfg`,
    its edits checked by the detector folder `critic` if given, into out/{plan.parquet,synthetic,export}; returns
    out/export."""
    from pipelines.trainset import build_trainset

    return build_trainset(store, checkpoint, out, cfg, gen_cfg, critic_dir=critic)["export"]


@task
def payoff(store: str, synth: str, out: str, cfg) -> str:
    """Real-only vs real + synthetic detector training (pipelines.payoff.PayoffConfig), scored on held-out real
    frames; returns payoff.md."""
    from pipelines.payoff import measure_payoff

    return str(measure_payoff(store, synth, out, cfg))
