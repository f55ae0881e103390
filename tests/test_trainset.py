"""Training-set planning: training folds only (planner and generation refuse test-fold subjects), targets are real
label vectors, the goals move the AU rates, bad requests name the AU; and the CLI's one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from manifests.aligned import AlignedStore
from manifests.aus import AU_COLUMNS, AUS
from manifests.folds import FoldLeakError
from manifests.schema import read_manifest, write_manifest
from pipeline_fixtures import make_store
from pipelines.plan import PlanConfig, build_plan, read_plan, store_frames
from pipelines.trainset import (TrainsetConfig, TrainsetError, generate_trainset, label_rates, make_trainset_plan,
                                pattern_weights, plan_trainset, synthetic_share, trainset_rates)
from standin_editor import write_checkpoint

RARE = {"AU23": 0.05, "AU24": 0.08, "AU2": 0.15, "AU12": 0.8}  # BP4D-like imbalance; the other AUs ~0.35


def imbalanced_store(tmp_path, frames=40, seed=0):
    """make_store's store with labels redrawn: rates as in RARE, AU24 copying AU23 and AU17 copying AU24 in half
    the frames (co-occurrences), 5 % unknown. Subjects F001, M002 are fold 1; F002, M003 fold 2; M001, F003 fold 3."""
    path = make_store(tmp_path, frames=frames, size=32, seed=seed)
    rng = np.random.default_rng(seed)
    manifest = AlignedStore.open(path).group.attrs["manifest"]
    df = read_manifest(manifest)
    rate = np.array([RARE.get(c, 0.35) for c in AU_COLUMNS])
    labels = (rng.random((len(df), len(AUS))) < rate).astype(np.int8)
    for a, b in ((23, 24), (24, 17)):
        copy = rng.random(len(df)) < 0.5
        labels[copy, AUS.index(b)] = labels[copy, AUS.index(a)]
    labels[rng.random(labels.shape) < 0.05] = -1
    df[list(AU_COLUMNS)] = labels
    write_manifest(df, manifest, root=tmp_path)
    AlignedStore.open(path, mode="r+").group["labels"][:] = labels
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return imbalanced_store(tmp_path_factory.mktemp("trainset"))


def test_only_training_folds_reach_the_plan(store):
    frames = store_frames(store).set_index("row_id")
    plan = make_trainset_plan(store, TrainsetConfig(ratio=1.5, seed=1))
    train = frames[frames["fold"] != 3]
    assert len(plan) == round(1.5 * len(train))
    assert set(plan["subject"]) <= set(train["subject"])
    assert (frames.loc[plan["source_row"], "fold"] != 3).all() and (frames.loc[plan["target_row"], "fold"] != 3).all()
    assert not {"M001", "F003"} & set(plan["subject"])
    # every real training frame is a source once or twice (ratio 1.5), and a frame's subject is its source's
    uses = plan["source_row"].value_counts().reindex(train.index, fill_value=0)
    assert set(uses) == {1, 2}
    assert (frames.loc[plan["source_row"], "subject"].to_numpy() == plan["subject"].to_numpy()).all()
    assert (plan["source_row"] != plan["target_row"]).all()


def test_targets_are_real_label_vectors(store):
    frames = store_frames(store).set_index("row_id")
    plan = make_trainset_plan(store, TrainsetConfig(seed=2))
    target_labels = frames.loc[plan["target_row"], list(AU_COLUMNS)].to_numpy()
    np.testing.assert_array_equal(plan[list(AU_COLUMNS)].to_numpy(), target_labels)
    assert (target_labels != -1).all()  # only fully labelled frames are patterns
    # so every co-occurrence in the plan occurs in the training folds (no independent coin flips)
    train = frames[frames["fold"] != 3][list(AU_COLUMNS)].to_numpy()
    assert {tuple(r) for r in plan[list(AU_COLUMNS)].to_numpy()} <= {tuple(r) for r in train}


def test_balanced_moves_every_rate_toward_half(store):
    rates = trainset_rates(store, _plan(store, TrainsetConfig(ratio=2.0)), cfg=TrainsetConfig())
    before, after = np.abs(rates["real"] - 0.5), np.abs(rates["real+synthetic"] - 0.5)
    # co-occurrences are kept, so an AU that travels with rare ones may drift a little the wrong way; no further
    assert (after <= before + 0.05).all()
    assert after.mean() < 0.6 * before.mean()
    rare = rates.set_index("au").loc[["AU2", "AU23", "AU24"]]
    assert (rare["real+synthetic"] > rare["real"] + 0.08).all()
    # a smaller ridge lets the weights chase the goal harder (fewer distinct patterns, closer rates)
    loose = trainset_rates(store, _plan(store, TrainsetConfig(ratio=2.0, ridge=0.005)), cfg=TrainsetConfig())
    assert np.abs(loose["real+synthetic"] - 0.5).mean() < after.mean()


def test_floor_raises_only_the_rare_aus(store):
    cfg = TrainsetConfig(floor=0.3, ratio=2.0)
    rates = trainset_rates(store, _plan(store, cfg), cfg=cfg).set_index("au")
    low = rates["real"] < 0.25
    assert (rates.loc[low, "real+synthetic"] > rates.loc[low, "real"] + 0.05).all()
    np.testing.assert_allclose(rates["goal"], np.maximum(rates["real"], 0.3))
    # AUs already above the floor are not pushed toward 0.5 as `balanced` would (only co-occurrences move them)
    high = rates["real"] > 0.6
    assert (rates.loc[high, "real+synthetic"] > 0.6).all()


def test_rates_goal_moves_the_named_aus(store):
    cfg = TrainsetConfig(goal="rates", rates={"AU23": 0.3, 24: 0.3}, ratio=2.0)
    rates = trainset_rates(store, _plan(store, cfg), cfg=cfg).set_index("au")
    for au in ("AU23", "AU24"):
        assert rates.loc[au, "goal"] == 0.3
        assert abs(rates.loc[au, "real+synthetic"] - 0.3) < 0.6 * abs(rates.loc[au, "real"] - 0.3)
    assert rates.drop(["AU23", "AU24"])["goal"].isna().all()  # the others are free
    loose = TrainsetConfig(goal="rates", rates={"AU23": 0.3, 24: 0.3}, ratio=2.0, ridge=0.002)
    closer = trainset_rates(store, _plan(store, loose), cfg=loose).set_index("au")
    assert abs(closer.loc["AU23", "real+synthetic"] - 0.3) < abs(rates.loc["AU23", "real+synthetic"] - 0.3)


@pytest.mark.parametrize("cfg, match", [
    (TrainsetConfig(goal="rates", rates={"AU99": 0.3}), "AU99"),
    (TrainsetConfig(goal="rates", rates={"AU12": 1.5}), "AU12"),
    (TrainsetConfig(goal="rates", rates={"AUx": 0.2}), "AUx"),
    (TrainsetConfig(goal="rates"), "needs rates"),
    (TrainsetConfig(floor=-0.1), "floor"),
    (TrainsetConfig(ratio=0), "ratio"),
    (TrainsetConfig(goal="fancy"), "fancy"),
])
def test_bad_requests_are_refused_with_the_au_named(store, cfg, match):
    with pytest.raises(TrainsetError, match=match):
        make_trainset_plan(store, cfg)


def test_plan_file_is_kept_when_identical_and_refused_when_not(store, tmp_path):
    path = plan_trainset(store, tmp_path / "plan.parquet", TrainsetConfig(seed=4))
    stamp = path.stat().st_mtime_ns
    assert plan_trainset(store, path, TrainsetConfig(seed=4)) == path and path.stat().st_mtime_ns == stamp
    with pytest.raises(TrainsetError, match="different plan"):
        plan_trainset(store, path, TrainsetConfig(seed=5))


def test_generation_refuses_a_plan_with_test_fold_subjects(store, tmp_path):
    leaky = build_plan(store, tmp_path / "leaky.parquet", PlanConfig(policy="balanced", count=4))  # all subjects
    with pytest.raises(FoldLeakError, match="test-fold subject (F003|M001)"):
        generate_trainset(leaky, store, write_checkpoint(tmp_path / "ck", 32), tmp_path / "out", test_fold=3)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_pattern_weights_match_reachable_rates():
    patterns = np.array([[1, 0], [0, 1], [1, 1], [0, 0]] * 5)
    w = pattern_weights(patterns, np.array([0.5, 0.5]), ridge=1e-6)
    np.testing.assert_allclose(w, 1 / len(patterns), atol=1e-6)  # already there: weights stay uniform
    w = pattern_weights(patterns, np.array([0.8, 0.3]), ridge=1e-6)
    np.testing.assert_allclose(w @ patterns, [0.8, 0.3], atol=1e-3)
    w = pattern_weights(np.array([[0, 0], [1, 0]]), np.array([0.5, 0.9]), ridge=0.05)  # AU never present
    assert np.isfinite(w).all() and abs(w.sum() - 1) < 1e-9
    w = pattern_weights(patterns, np.array([0.3, np.nan]), ridge=1e-6, at_least=True)  # already above: untouched
    np.testing.assert_allclose(w, 1 / len(patterns), atol=1e-6)
    w = pattern_weights(patterns, np.array([0.7, np.nan]), ridge=1e-6, at_least=True)  # free AU2 follows
    np.testing.assert_allclose(w @ patterns, [0.7, 0.5], atol=1e-3)


def test_synthetic_share_reaches_the_goal_when_possible():
    q = synthetic_share(np.array([0.1, 0.6]), np.array([0.5, 0.5]), n_real=100, n_synth=100)
    np.testing.assert_allclose(q, [0.9, 0.4])
    assert synthetic_share(np.array([0.0]), np.array([0.9]), 100, 10)[0] == 1.0  # clipped
    np.testing.assert_allclose(label_rates(np.array([[1, -1], [0, 1], [1, 1]])), [2 / 3, 1.0])


def _plan(store, cfg):
    import tempfile
    from pathlib import Path

    return plan_trainset(store, Path(tempfile.mkdtemp()) / "plan.parquet", cfg)


# ---- the command line ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, words", [
    (["--goal", "rates", "--rates", "AU99=0.3"], "AU99"),
    (["--goal", "rates", "--rates", "AU12=1.5"], "AU12"),
    (["--goal", "rates", "--rates", "AU12"], "AU=RATE"),
])
def test_cli_bad_rates_one_line_exit_2(store, tmp_path, capsys, extra, words):
    from flows.cli import main

    rc = main(["trainset", "--store", str(store), "--checkpoint", str(tmp_path), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and words in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_cli_refuses_a_plan_with_test_fold_subjects(store, tmp_path, capsys):
    from flows.cli import main

    leaky = build_plan(store, tmp_path / "leaky.parquet", PlanConfig(policy="balanced", count=4))
    rc = main(["trainset", "--store", str(store), "--checkpoint", str(write_checkpoint(tmp_path / "ck", 32)),
               "--plan", str(leaky), "--out", str(tmp_path / "o"), "--workers", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and ("F003" in err[0] or "M001" in err[0]) and "leaky.parquet" in err[0]
    assert read_plan(leaky)["subject"].isin(["F003", "M001"]).any()
