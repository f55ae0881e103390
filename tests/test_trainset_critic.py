"""The training set's critic: a detector trained on the training folds reads every synthetic frame, and an AU the
edit was to change that it reads otherwise becomes unknown in the labels the payoff and the export use. Synthetic
frames come from `standin_editor.StandInEditor` (a labelled TEST STAND-IN with LAC-GAN's interface); the critic is
a real HOG+SVM trained on the fixture store's training folds."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from detectors.base import detector_preset, load_detector, train_detector
from detectors.frames import FrameSource
from manifests.aligned import AlignedStore
from manifests.aus import AU_COLUMNS, AUS
from pipelines import generate as gen
from pipelines import synth_store as ss
from pipelines import trainset as ts
from pipelines import trainset_export as te
from standin_editor import write_checkpoint

GEN = gen.GenerateConfig(frames_per_shard=32, workers=0, editor="standin_editor:StandInEditor")


def test_critic_labels_unlabel_only_changed_aus_the_critic_reads_otherwise():
    # columns: changed and read as the target / changed and read otherwise / unchanged and read otherwise /
    # source unknown / target unknown / changed, the critic does not score it
    targets = np.array([[1, 1, 1, 1, -1, 0]])
    sources = np.array([[0, 0, 1, -1, 0, 1]])
    readings = np.array([[1, 0, 0, 0, 1, -1]])
    np.testing.assert_array_equal(ts.critic_labels(targets, sources, readings), [[1, -1, 1, 1, -1, 0]])
    down = ts.critic_labels([[0, 0]], [[1, 1]], [[0, 1]])  # edits that remove an AU, too
    np.testing.assert_array_equal(down, [[0, -1]])
    assert down.dtype == np.int8


@pytest.fixture(scope="module")
def made(aligned_store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("critic")
    plan = ts.plan_trainset(aligned_store, tmp / "plan.parquet", ts.TrainsetConfig(ratio=1.0))
    ts.generate_trainset(plan, aligned_store, write_checkpoint(tmp / "ck", 64), tmp / "synth", 3, GEN)
    critic = tmp / "hogsvm"
    train_detector("hogsvm", aligned_store, critic, detector_preset("hogsvm", "cpu"), test_fold=3)
    ts.check_edits(tmp / "synth", aligned_store, critic, 3)
    return aligned_store, tmp / "synth", critic, tmp


def test_the_critic_file_holds_the_critics_reading_and_the_labels_it_implies(made):
    store, synth, critic, _ = made
    man = ss.read_parts(synth)
    used = ts.synthetic_labels(synth)
    frames = FrameSource.from_group(synth / ss.STORE_NAME, frame_ids=man["plan_row"].to_numpy())
    read = load_detector("hogsvm", critic).score(frames).pivot(index="frame_id", columns="au", values="present")
    readings = read.reindex(index=man["plan_row"], columns=list(AUS)).fillna(-1).to_numpy(np.int8)
    assert (readings == -1).all(0).any()  # an AU the critic does not score (one class in training): targets stay
    targets = man[list(AU_COLUMNS)].to_numpy(np.int8)
    sources = AlignedStore.open(store).labels()[man["source_row"].to_numpy()]
    labels = used[list(AU_COLUMNS)].to_numpy(np.int8)
    np.testing.assert_array_equal(labels, ts.critic_labels(targets, sources, readings))
    changed = (targets != sources) & (targets != -1) & (sources != -1)
    unknown = labels != targets
    assert unknown.any() and (unknown <= changed).all()  # the stand-in's edits fail often; only changed AUs move
    assert (labels[unknown] == -1).all() and (readings[unknown] != targets[unknown]).all()
    keep = [c for c in man.columns if c not in AU_COLUMNS]
    assert used[keep].equals(man[keep])  # everything but the labels is the generation's
    summary = ts.critic_summary(synth, store)
    np.testing.assert_array_equal(summary["made_unknown"], unknown.sum(0))
    np.testing.assert_array_equal(summary["changed"], changed.sum(0))


def test_the_payoff_and_the_export_train_on_the_critics_labels(made):
    store, synth, _, tmp = made
    used = ts.synthetic_labels(synth)[list(AU_COLUMNS)].to_numpy(np.int8)
    extra = ts.synthetic_extra(synth, store, 3)
    np.testing.assert_array_equal(extra.frames.labels, used)
    te.export_trainset(store, synth, tmp / "export", te.ExportConfig(chunk=64))
    rows = te.read_trainset(tmp / "export")
    np.testing.assert_array_equal(rows.loc[rows.kind == "synthetic", list(AU_COLUMNS)].to_numpy(), used)
    inputs = json.loads((tmp / "export" / te.MARK).read_text())["inputs"]
    assert inputs["critic_sha256"] == ts.critic_fingerprint(synth)


def test_resume_keeps_the_reading_and_a_changed_generation_refuses_a_stale_one(made, tmp_path, monkeypatch):
    store, synth, critic, _ = made
    before = (synth / ts.CRITIC).read_bytes()
    monkeypatch.setattr("detectors.base.load_detector", lambda *a, **k: pytest.fail("scored again"))
    assert ts.check_edits(synth, store, critic, 3) == synth / ts.CRITIC
    assert (synth / ts.CRITIC).read_bytes() == before
    other = tmp_path / "synth"
    shutil.copytree(synth, other)
    record = json.loads((other / "generation.json").read_text())
    (other / "generation.json").write_text(json.dumps({**record, "note": "another run"}))
    with pytest.raises(ts.TrainsetError, match="critic read another generation"):
        ts.synthetic_labels(other)
    (other / ts.CRITIC).write_bytes(b"not parquet")  # e.g. a disk that filled up: one line naming the file ...
    with pytest.raises(ts.TrainsetError, match=r"critic.parquet: unreadable critic file"):
        ts.synthetic_labels(other)
    monkeypatch.undo()
    ts.check_edits(other, store, critic, 3)  # ... and checking the edits again makes it anew
    assert ts.synthetic_labels(other)[list(AU_COLUMNS)].equals(ts.synthetic_labels(synth)[list(AU_COLUMNS)])


def test_a_critic_that_saw_the_test_fold_is_refused(made, tmp_path):
    store, synth, critic, _ = made
    leaky = tmp_path / "leaky"
    shutil.copytree(critic, leaky)
    info = json.loads((leaky / "config.json").read_text())
    info["summary"]["test_fold"] = 1
    (leaky / "config.json").write_text(json.dumps(info))
    with pytest.raises(ts.TrainsetError, match=r"leaky: the critic was trained with test fold 1, not 3"):
        ts.check_edits(synth, store, leaky, 3)
    with pytest.raises(ts.TrainsetError, match="not a trained detector folder"):
        ts.check_edits(synth, store, tmp_path / "nothing", 3)


def test_build_needs_the_critics_folder_when_the_config_names_one(made, tmp_path):
    store, _, _, tmp = made
    cfg = ts.TrainsetConfig(ratio=1.0, critic="hogsvm")
    with pytest.raises(ts.TrainsetError, match="trainset.critic is 'hogsvm': give that detector's trained folder"):
        ts.build_trainset(store, tmp / "ck", tmp_path / "set", cfg, GEN)
