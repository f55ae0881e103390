"""Flows under `prefect_test_harness` (a throw-away Prefect API and database); PREFECT_HOME is a temp dir."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import json  # noqa: E402
import logging  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from pipeline_fixtures import make_store  # noqa: E402


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_task_logic_without_the_engine(tmp_path):
    from prefect.logging import disable_run_logger

    from flows import tasks
    from pipelines.plan import PlanConfig, read_plan

    store = make_store(tmp_path, size=32)
    with disable_run_logger():
        path = tasks.make_plan.fn(str(store), str(tmp_path / "plan.parquet"), PlanConfig(policy="balanced", count=5))
    assert len(read_plan(path)) == 6 * 5
    assert not tasks.detector_done(str(tmp_path / "nothing"))
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "config.json").write_text(json.dumps({"detector": "x"}))
    assert not tasks.detector_done(str(tmp_path / "det"))  # weights written, training summary not yet
    (tmp_path / "det" / "config.json").write_text(json.dumps({"detector": "x", "summary": {}}))
    assert tasks.detector_done(str(tmp_path / "det"))


def test_augment_rejects_unknown_preset_and_missing_root(tmp_path):
    from flows.augment import augment

    with pytest.raises(ValueError, match="job: unknown preset 'huge'"):
        augment.fn(out=str(tmp_path), preset="huge")  # .fn: the flow's body without the engine
    with pytest.raises(ValueError, match="needs bp4d_root"):
        augment.fn(out=str(tmp_path), preset="bp4d")


def test_openface_parameters_are_typed_for_the_deployments():
    from prefect.exceptions import ParameterTypeError
    from prefect.utilities.callables import parameter_schema

    from flows.augment import augment, score

    for fl in (augment, score):
        props = parameter_schema(fl).model_dump()["properties"]
        assert props["openface_grouping"]["enum"] == ["sequence", "static", "frame"]
        assert props["openface_timeout"]["type"] == "number" and "openface_model" in props
        with pytest.raises(ParameterTypeError):
            fl.validate_parameters({"openface_grouping": "frames"})
    with pytest.raises(ValueError, match="without the OpenFace binary"):  # checked before any step runs
        augment.fn(out="unused", openface_grouping="frame")


def test_score_flow_fails_once_when_every_openface_frame_fails(harness, tmp_path, monkeypatch):
    """The score task raises DetectorFailed with the reason, and is not retried (it would fail the same way)."""
    from pathlib import Path

    from detectors.failures import DetectorFailed
    from flows import augment as fl
    from pipeline_fixtures import make_synthetic

    store, synth = make_synthetic(tmp_path)
    log = tmp_path / "args.log"
    monkeypatch.setenv("STANDIN_MODE", "nocen")
    monkeypatch.setenv("STANDIN_ARGS_LOG", str(log))
    standin = Path(__file__).parent / "openface_standin"
    with pytest.raises(DetectorFailed, match="--openface-model model/main_clnf_general.txt"):
        fl.score(str(store), str(synth), {}, str(tmp_path / "scores.parquet"), openface_bin=str(standin),
                 openface_grouping="frame")
    assert len(log.read_text().splitlines()) == 1  # one FaceLandmarkImg call, no task or subprocess retry
    assert not (tmp_path / "scores.parquet").exists()


@pytest.mark.slow
class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_step_flows_end_to_end(harness, aligned_store, tmp_path):
    """train_lacgan (smoke) -> train_detectors (hogsvm) -> plan -> generate (Dask, 1 worker) -> score -> report,
    each as its own flow, then the published artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows import augment as fl

    store = str(aligned_store)
    logged = _Collect()
    logging.getLogger("prefect").addHandler(logged)  # what the run loggers print (the flow's console and API)
    try:
        ckpt = fl.train_lacgan(store, str(tmp_path / "lacgan"), preset="smoke")
        dets = fl.train_detectors(store, str(tmp_path / "detectors"), preset="smoke")  # the smoke job's: hogsvm
    finally:
        logging.getLogger("prefect").removeHandler(logged)
    # the child processes' progress lines reach the flow's logs (rate and ETA, not a bar's carriage returns)
    assert any(m.startswith("lacgan train: 20/20 (100%)") and "it/s" in m for m in logged.messages)
    assert any(m.startswith("hogsvm: SVMs: 12/12 (100%)") for m in logged.messages)
    plan = fl.plan(store, str(tmp_path / "plan.parquet"))
    synth = fl.generate(plan, store, ckpt, str(tmp_path / "synth"), workers=1, frames_per_shard=16)
    cf = fl.counterfactual(plan, store, str(tmp_path / "counterfactual"))
    scores = fl.score(store, synth, dets, str(tmp_path / "scores.parquet"), counterfactual=cf)
    md = fl.report(scores, synth, store, str(tmp_path / "report"), ckpt, identity_pairs=4, counterfactual=cf)

    t1 = json.loads((tmp_path / "report" / "table1.json").read_text())
    assert set(t1) == {"hogsvm"} and t1["hogsvm"]["mean"]["real"]["f1"] is not None
    assert t1["hogsvm"]["mean"]["counterfactual"]["n"] == t1["hogsvm"]["mean"]["synthetic"]["n"] > 0
    assert json.loads((tmp_path / "report" / "edits.json").read_text())["locality"]["max_change_outside_regions"] == 0
    for png in ("f1_sets.png", "single_au_grid.png", "combos_grid.png", "counterfactual_grid.png"):
        assert (tmp_path / "report" / "figures" / png).stat().st_size > 1000
    assert "Table 1" in open(md).read()
    n_real = pd.read_parquet(scores).query("set == 'real'")["frame_id"].nunique()
    n_syn = pd.read_parquet(scores).query("set == 'synthetic'")["frame_id"].nunique()
    assert n_real == n_syn > 0  # match-test: one synthetic frame per labelled test frame

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["table1"])))

    import asyncio

    found = asyncio.run(artifacts())
    assert found and "AU12" in found[0].data


def test_augment_refuses_an_unknown_baseline(tmp_path):
    from flows.augment import augment
    from pipelines.job import PRESETS

    with pytest.raises(ValueError, match="has no baseline 'stargan'"):
        augment.fn(out=str(tmp_path), preset="smoke", baseline="stargan")
    assert PRESETS["demo"].baselines["ganimation"].preset == "demo"  # the demo's GANimation: its CPU demo preset


@pytest.mark.slow
def test_one_fold_with_the_ganimation_baseline(harness, aligned_store, tmp_path):
    """The augment flow's fold with baseline="ganimation" on the smoke presets: GANimation trained on the same store
    and fold, the same plan generated into its own store, scored by the same detectors, its own report, and the
    comparison whose columns are the two reports' numbers."""
    from prefect import flow

    from flows import augment as fl
    from pipelines.job import compose_job
    from pipelines.synth_store import read_parts

    lay = fl.Layout.under(tmp_path)
    one_fold = flow(name="one_fold", validate_parameters=False)(fl._one_fold)  # the fold's steps in a flow run
    md = one_fold(compose_job("smoke", {"generate": {"workers": 0}}), lay, str(aligned_store), baseline="ganimation")
    b = lay.baseline("ganimation")
    assert md == str(tmp_path / "report" / "report.md")
    gen_b = json.loads((tmp_path / "synthetic_ganimation" / "generation.json").read_text())
    gen_l = json.loads((tmp_path / "synthetic" / "generation.json").read_text())
    assert gen_b["plan_sha256"] == gen_l["plan_sha256"] and gen_b["test_fold"] == gen_l["test_fold"] == 3
    assert json.loads((tmp_path / "ganimation" / "config.json").read_text())["preset"] == "smoke"
    assert read_parts(b.synth)["source_row"].tolist() == read_parts(lay.synth)["source_row"].tolist()
    c = json.loads((tmp_path / "comparison_ganimation" / "comparison.json").read_text())
    assert list(c["methods"]) == ["LAC-GAN", "GANimation"]
    for method, report in (("LAC-GAN", lay.report), ("GANimation", b.report)):
        t1 = json.loads((tmp_path / report / "table1.json").read_text())
        assert c["detectors"]["hogsvm"]["synthetic_f1"][method] == t1["hogsvm"]["mean"]["synthetic"]["f1"]
        assert c["detectors"]["hogsvm"]["counterfactual_f1"][method] == t1["hogsvm"]["mean"]["counterfactual"]["f1"]
    fid = c["fidelity"]
    assert fid["outside_changed_share"]["LAC-GAN"] == 0 and fid["outside_max_change"]["LAC-GAN"] == 0
    assert fid["outside_changed_share"]["GANimation"] > 0  # a whole-face generator re-renders the face
    assert fid["cf_l1_synthetic"]["GANimation"] is not None
    for png in ("fig4_grid.png", "outside_change.png"):
        assert (tmp_path / "comparison_ganimation" / "figures" / png).stat().st_size > 1000
    assert (tmp_path / "report_ganimation" / "figures" / "single_au_grid.png").exists()  # GANimation's own grids
