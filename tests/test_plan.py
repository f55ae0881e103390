"""Target planning: the three policies, determinism, and clear errors for impossible requests."""

from __future__ import annotations

import numpy as np
import pytest

from manifests.aus import AU_COLUMNS
from pipeline_fixtures import make_store
from pipelines.plan import (PlanConfig, PlanError, achieved_rates, build_plan, make_plan, plan_labels, read_plan,
                            store_frames, write_plan)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("plan"), failed=(3,))


def test_match_test_mirrors_the_test_fold(store):
    frames = store_frames(store)
    plan = make_plan(store, PlanConfig(policy="match-test", test_fold=3, seed=1))
    labels = frames[list(AU_COLUMNS)].to_numpy()
    test = frames[(frames.fold == 3) & frames.ok & (labels != -1).any(axis=1)]
    assert len(plan) == len(test)
    test = test.set_index("row_id").loc[plan["target_row"]]
    assert sorted(plan["target_row"]) == sorted(test.index)
    # same subject, different frame, exactly the target frame's labels (-1 kept as -1)
    src = frames.set_index("row_id").loc[plan["source_row"]]
    assert (src["subject"].to_numpy() == plan["subject"].to_numpy()).all()
    assert (plan["source_row"] != plan["target_row"]).all()
    np.testing.assert_array_equal(plan_labels(plan), test[list(AU_COLUMNS)].to_numpy())
    assert (test["subject"].to_numpy() == plan["subject"].to_numpy()).all()
    assert sorted(plan["subject"].unique()) == sorted(test["subject"].unique())
    assert (plan["task"].to_numpy() == test["task"].to_numpy()).all()


@pytest.mark.parametrize("policy", ["match-test", "balanced"])
def test_neutral_sources_are_each_subjects_least_expressive_frames(store, policy):
    frames = store_frames(store)
    lab = frames[list(AU_COLUMNS)].to_numpy()
    frames["expressive"] = (lab == 1).sum(1) + 0.5 * (lab == -1).sum(1)
    plan = make_plan(store, PlanConfig(policy=policy, test_fold=3, count=10, seed=3, source="neutral"))
    assert (plan["source_policy"] == "neutral").all()
    ok = frames[frames["ok"]]
    for r in plan.itertuples():
        mine = ok[(ok["subject"] == r.subject) & (ok["row_id"] != r.target_row)]
        assert frames.at[r.source_row, "expressive"] == mine["expressive"].min()
    assert (make_plan(store, PlanConfig(policy=policy, count=10, seed=3))["source_policy"] == "random").all()


@pytest.mark.parametrize("source", ["sequence-random", "sequence-neutral"])
def test_sequence_sources_stay_in_the_target_frames_sequence(store, source):
    frames = store_frames(store).set_index("row_id")
    lab = frames[list(AU_COLUMNS)].to_numpy()
    frames["expressive"] = (lab == 1).sum(1) + 0.5 * (lab == -1).sum(1)
    plan = make_plan(store, PlanConfig(policy="match-test", test_fold=3, seed=4, source=source))
    src, tgt = frames.loc[plan["source_row"]], frames.loc[plan["target_row"]]
    assert (src["task"].to_numpy() == tgt["task"].to_numpy()).all()
    assert (src["subject"].to_numpy() == tgt["subject"].to_numpy()).all()
    if source == "sequence-neutral":
        ok = frames[frames["ok"]]
        for s_row, t_row in zip(plan["source_row"], plan["target_row"]):
            seq = ok[(ok["subject"] == frames.at[t_row, "subject"]) & (ok["task"] == frames.at[t_row, "task"])]
            assert frames.at[s_row, "expressive"] == seq.drop(index=t_row)["expressive"].min()
    bal = make_plan(store, PlanConfig(policy="balanced", count=12, seed=4, source=source))
    assert (frames.loc[bal["source_row"], "task"].to_numpy() == bal["task"].to_numpy()).all()


def test_plan_records_its_config(store, tmp_path):
    from pipelines.plan import plan_config

    path = build_plan(store, tmp_path / "p.parquet", PlanConfig(policy="match-test", test_fold=3, source="neutral"))
    cfg = plan_config(path)
    assert cfg["policy"] == "match-test" and cfg["test_fold"] == 3 and cfg["source"] == "neutral"


def test_failed_rows_never_used(tmp_path):
    path = make_store(tmp_path, failed=(2, 3, 4, 5))  # F001, fold 1
    plan = make_plan(path, PlanConfig(policy="balanced", count=20, seed=0))
    assert not plan["source_row"].isin([2, 3, 4, 5]).any()


def test_deterministic_from_seed(store):
    cfg = PlanConfig(policy="balanced", count=30, seed=5)
    a, b = make_plan(store, cfg), make_plan(store, cfg)
    assert a.equals(b)
    c = make_plan(store, PlanConfig(policy="balanced", count=30, seed=6))
    assert not a[["source_row", *AU_COLUMNS]].equals(c[["source_row", *AU_COLUMNS]])


def test_balanced_rates_are_met(store):
    plan = make_plan(store, PlanConfig(policy="balanced", count=40, rates={12: 0.25}, seed=2))
    assert len(plan) == 6 * 40
    rates = achieved_rates(plan).set_index("au")["rate"]
    assert rates[12] == pytest.approx(0.25)
    assert rates[1] == pytest.approx(0.5)
    for subject, g in plan.groupby("subject"):
        assert (g["AU12"] == 1).sum() == 10 and (g["AU4"] == 1).sum() == 20
    assert (plan_labels(plan) != -1).all()


def test_rates_policy_leaves_unlisted_aus(store):
    plan = make_plan(store, PlanConfig(policy="rates", count=10, rates={"AU4": 1.0, 6: 0.0},
                                       subjects=("F001", "M002"), seed=0))
    assert set(plan["subject"]) == {"F001", "M002"}
    assert (plan["AU4"] == 1).all() and (plan["AU6"] == 0).all()
    others = [c for c in AU_COLUMNS if c not in ("AU4", "AU6")]
    assert (plan[others] == -1).all().all()


def test_folds_restrict_sources(store):
    frames = store_frames(store).set_index("row_id")
    plan = make_plan(store, PlanConfig(policy="balanced", count=5, folds=(1, 2), seed=0))
    assert set(frames.loc[plan["source_row"], "fold"]) <= {1, 2}
    assert set(plan["subject"]) == {"F001", "F002", "M002", "M003"}


@pytest.mark.parametrize("cfg, message", [
    (dict(policy="nope"), "unknown policy"),
    (dict(source="happiest"), "unknown source policy"),
    (dict(policy="balanced", subjects=("X999",)), "unknown subjects"),
    (dict(policy="balanced", rates={12: 1.5}), "impossible"),
    (dict(policy="rates", rates={12: -0.1}), "impossible"),
    (dict(policy="rates"), "needs rates"),
    (dict(policy="balanced", rates={13: 0.5}), "not one of"),
    (dict(policy="match-test", test_fold=7), "no aligned, labelled frames"),
    (dict(policy="balanced", count=0), "at least 1"),
    (dict(policy="balanced", folds=(9,)), "hold no aligned frames"),
])
def test_bad_requests_fail_clearly(store, cfg, message):
    with pytest.raises(PlanError, match=message):  # when the config is built, or when the plan is made
        make_plan(store, PlanConfig(**cfg))


def test_match_test_needs_a_second_frame(tmp_path):
    path = make_store(tmp_path, subjects=("F001", "F002", "F003"), frames=2, failed=(5,))  # F003 keeps one frame
    with pytest.raises(PlanError, match="F003 has only 1 aligned frame"):
        make_plan(path, PlanConfig(policy="match-test", test_fold=3))


def test_round_trip_and_validation(store, tmp_path):
    out = build_plan(store, tmp_path / "plan.parquet", PlanConfig(policy="balanced", count=4))
    plan = read_plan(out)
    assert len(plan) == 24 and plan["policy"].eq("balanced").all()
    bad = plan.copy()
    bad.loc[0, "AU1"] = 3
    with pytest.raises(PlanError, match="1, 0 or -1"):
        write_plan(bad, tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()
    with pytest.raises(PlanError, match="no such plan"):
        read_plan(tmp_path / "missing.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(PlanError, match="junk.parquet: not a readable"):
        read_plan(tmp_path / "junk.parquet")
