"""Counterfactual ground truth on the embedded cohort: the renderer draws "this frame, with these AUs"."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from manifests.aligned import AlignedStore
from manifests.aus import AUS
from pipelines import counterfactual as cf
from pipelines.plan import PlanConfig, build_plan, read_plan, store_frames


def test_unchanged_targets_reproduce_the_source_crops_exactly(aligned_store):
    store = AlignedStore.open(aligned_store)
    frames = store_frames(aligned_store)
    root = cf.cohort_root(aligned_store)
    for r in frames.itertuples():
        image, _, labels = store.read(np.array([r.row_id]))
        out = cf.render_counterfactual(root, r.subject, r.task, r.frame, labels[0], store.size)
        assert np.array_equal(out, image[0]), (r.subject, r.task, r.frame)  # same bytes: JPEG, decode, warp


def test_changed_target_changes_that_region(aligned_store):
    from lacgan.regions import attention_maps

    store = AlignedStore.open(aligned_store)
    frames = store_frames(aligned_store)
    j = AUS.index(12)
    row = frames[frames["AU12"] == 0].iloc[0]
    image, lm, labels = store.read(np.array([row.row_id]))
    target = labels[0].copy()
    target[j] = 1
    out = cf.render_counterfactual(cf.cohort_root(aligned_store), row.subject, row.task, row.frame, target,
                                   store.size)
    diff = np.abs(out.astype(int) - image[0]).max(-1)
    region = attention_maps(lm, store.size)[0, j] > 0
    assert diff[region].mean() > 1.0  # the lip corners moved
    assert diff[region].mean() > 3 * diff[~region].mean()  # mostly there


def test_target_intensity_rule():
    src = np.array([0.0, 0.5] + [0.0] * 10)
    typical = np.full(12, 0.6)
    t = np.array([1, 1, 0, -1] + [0] * 8)
    out = cf.target_intensity(src, t, typical)
    assert out[0] == pytest.approx(0.6)  # added: the subject's typical intensity
    assert out[1] == pytest.approx(0.5)  # already present: kept as it is
    assert out[2] == 0 and out[3] == 0  # absent / unknown (source's own: 0)


def test_not_available_without_a_renderer(tmp_path):
    from pipeline_fixtures import make_store

    reason = cf.available(make_store(tmp_path))
    assert reason and "not an embedded cohort" in reason
    with pytest.raises(cf.CounterfactualError, match="not an embedded cohort"):
        cf.cohort_root(make_store(tmp_path / "b"))


@pytest.fixture(scope="module")
def cf_run(aligned_store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cf")
    plan = build_plan(aligned_store, tmp / "plan.parquet", PlanConfig(policy="match-test", test_fold=3,
                                                                      source="neutral"))
    out = cf.write_counterfactuals(plan, aligned_store, tmp / "counterfactual",
                                   cf.CounterfactualConfig(frames_per_shard=16, workers=1))
    return tmp, plan, out


def test_written_set_has_provenance_and_resumes(cf_run, aligned_store):
    from pipelines.synth_store import open_images, part_path, read_parts

    tmp, plan, out = cf_run
    man = read_parts(out)
    p = read_plan(plan)
    assert (man["plan_row"].to_numpy() == p["plan_row"].to_numpy()).all()
    assert (man[[f"AU{a}" for a in AUS]].to_numpy() == p[[f"AU{a}" for a in AUS]].to_numpy()).all()
    gen = json.loads((out / "generation.json").read_text())
    assert gen["kind"] == "counterfactual" and gen["intensity_rule"] == cf.INTENSITY_RULE
    before = np.asarray(open_images(out)[:])
    part_path(out, 1).unlink()  # an interrupted run: shard 1 not committed
    cf.write_counterfactuals(plan, aligned_store, out, cf.CounterfactualConfig(frames_per_shard=16, workers=1))
    assert part_path(out, 1).exists() and np.array_equal(np.asarray(open_images(out)[:]), before)


def test_a_perfect_editor_gets_an_edit_quality_index_of_one(cf_run, aligned_store):
    """A 'generator' whose output is the counterfactual frames: the synthetic row equals the counterfactual row,
    the index is exactly 1, and every changed edit is closer to the truth than its source."""
    from detectors.base import detector_preset, train_detector
    from pipelines.report import ReportConfig, write_report
    from pipelines.score import DetectorSpec, score_all

    tmp, plan, out = cf_run
    synth = tmp / "perfect"
    shutil.copytree(out, synth)  # same layout: a synthetic set whose frames ARE the ground truth
    train_detector("hogsvm", aligned_store, tmp / "hogsvm", detector_preset("hogsvm", "cpu"), test_fold=3)
    scores = score_all(aligned_store, synth, [DetectorSpec("hogsvm", str(tmp / "hogsvm"))], tmp / "scores.parquet",
                       counterfactual=out)
    report = write_report(scores, synth, aligned_store, tmp / "report", ReportConfig(identity_pairs=2),
                          counterfactual=out)
    t1 = json.loads((report.parent / "table1.json").read_text())["hogsvm"]
    rows = [r for r in [f"AU{a}" for a in AUS] + ["mean"] if t1[r] is not None]  # AUs the detector supports
    assert len(rows) >= 8
    for row in rows:
        assert t1[row]["synthetic"] == t1[row]["counterfactual"], row
    assert t1["edit_quality_index"] == pytest.approx(1.0)
    err = json.loads((report.parent / "edits.json").read_text())["counterfactual_error"]["all"]
    assert err["n_edits"] > 0 and err["l1_synthetic"] == 0.0 and err["l1_source"] > 0
    assert err["closer_share"] > 90  # ties (an AU change invisible in its region) are the only misses
    assert (report.parent / "figures" / "counterfactual_grid.png").exists()
    scores_df = pd.read_parquet(scores)
    assert set(scores_df["set"]) >= {"real", "synthetic", "counterfactual"}
