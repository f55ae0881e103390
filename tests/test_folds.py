"""Subject folds: JAA-Net's partition for BP4D, a deterministic balanced subject-disjoint split otherwise."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from manifests.folds import JAANET_BP4D_PARTS, assign_folds

ALL_BP4D = [s for part in JAANET_BP4D_PARTS.values() for s in part]


def test_jaanet_partition_is_bp4d():
    assert len(ALL_BP4D) == len(set(ALL_BP4D)) == 41  # BP4D's 41 subjects, each in one part
    assert sum(s[0] == "F" for s in ALL_BP4D) == 23  # 23 female, 18 male (paper Sec. 4.1)
    assert [len(p) for p in JAANET_BP4D_PARTS.values()] == [14, 14, 13]


def test_bp4d_gets_jaanet_parts():
    folds = assign_folds(list(reversed(ALL_BP4D)), "bp4d")
    for k, part in JAANET_BP4D_PARTS.items():
        assert {folds[s] for s in part} == {k}
    assert assign_folds(["F003", "M014"], "bp4d") == {"F003": 2, "M014": 1}  # a subset keeps its parts


def test_cohort_ids_do_not_get_jaanet_parts():
    subjects = {s: 100 for s in ALL_BP4D[:12]}  # all from parts 1 and 2 by JAA-Net
    folds = assign_folds(subjects, "cohort")
    assert sorted(Counter(folds.values()).values()) == [4, 4, 4]


def test_bp4d_with_unknown_subject_falls_back_to_balanced(caplog):
    folds = assign_folds(["F001", "F099", "M001", "M002"], "bp4d")
    assert "F099" in caplog.text
    assert set(folds) == {"F001", "F099", "M001", "M002"} and set(folds.values()) <= {1, 2, 3}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_balanced_split_is_balanced_and_deterministic(seed):
    rng = np.random.default_rng(100 + seed)
    ids = [f"F{i:03d}" for i in range(1, 14)] + [f"M{i:03d}" for i in range(1, 10)]
    frames = {s: int(rng.integers(500, 5000)) for s in ids}
    folds = assign_folds(frames, "cohort", n_folds=3, seed=seed)
    assert folds == assign_folds(dict(reversed(list(frames.items()))), "cohort", n_folds=3, seed=seed)
    assert set(folds) == set(ids) and set(folds.values()) == {1, 2, 3}
    for g in "FM":  # gender spread as evenly as possible
        counts = Counter(folds[s] for s in ids if s[0] == g)
        assert max(counts.values()) - min(counts.values()) <= 1 and len(counts) == 3
    totals = Counter()
    for s, k in folds.items():
        totals[k] += frames[s]
    mean = sum(frames.values()) / 3
    assert max(abs(t - mean) for t in totals.values()) < 0.2 * mean


def test_seed_changes_tie_breaks_only():
    ids = [f"F{i:03d}" for i in range(1, 10)]
    a, b = assign_folds(ids, "cohort", seed=0), assign_folds(ids, "cohort", seed=5)
    assert a != b
    assert sorted(Counter(a.values()).values()) == sorted(Counter(b.values()).values()) == [3, 3, 3]


def test_other_ids_and_few_subjects(caplog):
    folds = assign_folds(["alice", "bob"], "folder:x")
    assert sorted(folds.values()) == [1, 2] and "some folds will be empty" in caplog.text
    assert assign_folds([], "bp4d") == {}
    with pytest.raises(ValueError):
        assign_folds(["a"], "x", n_folds=0)


def test_development_split_keeps_the_test_fold_out():
    import pandas as pd

    from manifests.folds import development_split

    df = pd.DataFrame({"subject": ["A", "A", "B", "C", "D", "E"], "fold": [1, 1, 2, 3, 1, 2],
                       "status": ["ok"] * 6})
    out = development_split(df, ["B"])
    assert (out.loc[df["subject"] == "C", "status"] == "held out: test fold 3").all()  # the real test fold
    assert (out.loc[out["subject"] == "B", "fold"] == 3).all()  # validation becomes fold 3
    assert set(out.loc[out["subject"].isin(["A", "D", "E"]), "fold"]) <= {1, 2}
    assert (out.loc[~out["subject"].eq("C"), "status"] == "ok").all()
    with pytest.raises(ValueError, match="belong to test fold 3"):
        development_split(df, ["C"])
    with pytest.raises(ValueError, match="not in the manifest"):
        development_split(df, ["Z"])
