"""Table 1 report: numbers recomputed independently (sklearn) from the score file in the report folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from manifests.aus import AUS
from pipeline_fixtures import make_store
from pipelines import generate as gen
from pipelines import report as rep
from pipelines.plan import PlanConfig, build_plan
from pipelines.score import DetectorSpec, read_scores, score_all
from standin_editor import write_checkpoint


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """Stand-in generation (see standin_editor) scored by the real HOG+SVM detector, then the report."""
    from detectors.base import train_detector

    tmp = tmp_path_factory.mktemp("report")
    store = make_store(tmp, size=32, frames=10)
    plan = build_plan(store, tmp / "plan.parquet", PlanConfig(policy="match-test", test_fold=3))
    gen.generate(plan, store, write_checkpoint(tmp / "ck", 32), tmp / "synth",
                 gen.GenerateConfig(frames_per_shard=8, workers=0, editor="standin_editor:StandInEditor"))
    train_detector("hogsvm", store, tmp / "hogsvm", preset="cpu", test_fold=3)
    scores = score_all(store, tmp / "synth", [DetectorSpec("hogsvm", str(tmp / "hogsvm"))], tmp / "scores.parquet")
    rep.write_report(scores, tmp / "synth", store, tmp / "report", rep.ReportConfig(identity_pairs=3))
    return tmp / "report"


def sk(df, au):
    d = df[(df["au"] == au) & (df["label"] != -1) & (df["status"] == "ok")]
    return 100 * f1_score(d["label"], d["present"], zero_division=0), 100 * accuracy_score(d["label"], d["present"])


def test_table1_json_matches_independent_recomputation(report_dir):
    t1 = json.loads((report_dir / "table1.json").read_text())
    scores = pd.read_parquet(report_dir / "scores.parquet")
    assert set(scores["set"]) == {"real", "synthetic"}  # match-test: every source is a test-fold frame
    checked = 0
    for det, table in t1.items():
        d = scores[scores["detector"] == det]
        supported = sorted(d["au"].unique())
        for au in AUS:
            row = table[f"AU{au}"]
            if au not in supported:
                assert row is None
                continue
            rf1, racc = sk(d[d["set"] == "real"], au)
            sf1, sacc = sk(d[d["set"] == "synthetic"], au)
            assert row["real_f1"] == pytest.approx(rf1) and row["real_acc"] == pytest.approx(racc)
            assert row["synth_f1"] == pytest.approx(sf1) and row["synth_acc"] == pytest.approx(sacc)
            assert row["gap_f1"] == pytest.approx(rf1 - sf1) and row["gap_acc"] == pytest.approx(racc - sacc)
            checked += 1
        avg = table["avg"]
        rows = [table[f"AU{a}"] for a in supported]
        assert avg["real_f1"] == pytest.approx(np.mean([r["real_f1"] for r in rows]))
        assert avg["gap_acc"] == pytest.approx(np.mean([r["gap_acc"] for r in rows]))
    assert checked >= 6


def test_synthetic_labels_are_the_targets(report_dir, tmp_path):
    from pipelines.synth_store import read_parts

    scores = pd.read_parquet(report_dir / "scores.parquet")
    synth = read_parts(report_dir.parent / "synth").set_index("plan_row")
    s = scores[scores["set"] == "synthetic"]
    expected = [synth.at[f, f"AU{a}"] for f, a in zip(s["frame_id"], s["au"])]
    assert (s["label"].to_numpy() == np.asarray(expected)).all()
    # and the real test frames are exactly the plan's targets
    assert set(scores.loc[scores["set"] == "real", "frame_id"]) == set(synth["target_row"])


def test_report_files_and_locality(report_dir):
    for name in ("table1.md", "table1.csv", "table1.json", "edits.json", "report.md", "scores.parquet",
                 "figures/f1_gap.png"):
        assert (report_dir / name).exists(), name
    md = (report_dir / "table1.md").read_text()
    rows = [line.split(" |")[0][2:] for line in md.splitlines() if line.startswith("| ")][1:]
    assert rows == [f"AU{a}" for a in AUS] + ["Avg"]
    edits = json.loads((report_dir / "edits.json").read_text())
    assert edits["locality"]["max_change_outside_regions"] == 0
    assert edits["locality"]["frames"] == len(pd.read_parquet(report_dir / "scores.parquet")
                                              .query("set == 'synthetic'")["frame_id"].unique())
    assert edits["identity"]["pairs"] == 3 and edits["identity"]["mean_distance"] >= 0
    csv = pd.read_csv(report_dir / "table1.csv")
    assert len(csv) == 13 and list(csv["au"])[-1] == "avg"


def _scores(detector, supported, rng, n_real=40, n_syn=30):
    """A hand-built long score table (not detector output) for the pure Table 1 functions."""
    rows = []
    for set_name, n in (("real", n_real), ("synthetic", n_syn)):
        for f in range(n):
            for au in supported:
                rows.append((f, set_name, detector, au, 0.5, int(rng.integers(2)), int(rng.integers(-1, 2)), "ok"))
    return pd.DataFrame(rows, columns=["frame_id", "set", "detector", "au", "score", "present", "label", "status"])


def test_unsupported_aus_print_dash_and_paper_beside_ours():
    rng = np.random.default_rng(0)
    supported = [a for a in AUS if a != 24]
    t1 = rep.table1(_scores("openface", supported, rng), {"openface": supported})
    assert t1["openface"]["AU24"] is None
    md = rep.table1_markdown(t1, paper=True)
    au24 = next(line for line in md.splitlines() if line.startswith("| AU24"))
    assert au24.count("− (−)") == 6
    au1 = next(line for line in md.splitlines() if line.startswith("| AU1 "))
    assert "(64.1)" in au1 and "(-11.7)" in au1  # the paper's OpenFace real F1 and gap F1 for AU1
    csv = rep.table1_frame(t1, paper=True)
    assert csv.loc[csv["au"] == "avg", "paper_synth_acc"].item() == 72.7


def test_invalid_scores_are_excluded():
    rng = np.random.default_rng(1)
    df = _scores("jaanet", list(AUS), rng)
    base = rep.table1(df, {"jaanet": list(AUS)})
    bad = df.copy()
    extra = bad[bad["set"] == "real"].head(12).assign(frame_id=999, present=1, label=1, status="no face")
    t = rep.table1(pd.concat([bad, extra]), {"jaanet": list(AUS)})
    assert t == base


def test_score_file_round_trip(report_dir):
    df, supported = read_scores(report_dir / "scores.parquet")
    assert set(supported) == {"hogsvm"} and set(df.columns) >= {"frame_id", "set", "detector", "au", "score",
                                                                "present", "label"}


def test_missing_inputs_fail_clearly(report_dir, tmp_path):
    from pipelines.score import ScoreError

    root = report_dir.parent
    store = root / "aligned.zarr"
    with pytest.raises(ScoreError, match="no weights for detector 'jaanet'"):
        score_all(store, root / "synth", [DetectorSpec("jaanet", str(tmp_path / "none"))], tmp_path / "s.parquet")
    with pytest.raises(ScoreError, match="no detectors configured"):
        score_all(store, root / "synth", [], tmp_path / "s.parquet")
    with pytest.raises(ValueError, match="no synthetic store here"):
        score_all(store, tmp_path / "nosynth", [DetectorSpec("hogsvm", str(root / "hogsvm"))], tmp_path / "s.parquet")
    with pytest.raises(ScoreError, match="no score table"):
        rep.write_report(tmp_path / "missing.parquet", root / "synth", store, tmp_path / "r")
