"""Table 1 report: every number recomputed independently (scikit-learn, pandas) from the score file, the
unedited floor of a copy-the-source editor, fold checks, and the layout of the report folder."""

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
from pipelines.score import DetectorSpec, ScoreError, read_set_scores, score_all
from pipelines.table1 import table1
from standin_editor import write_checkpoint


def _run(tmp, copy: bool):
    """Stand-in generation (see standin_editor) scored by the real HOG+SVM detector, then the report."""
    from detectors.base import detector_preset, train_detector

    store = make_store(tmp, size=32, frames=10)
    plan = build_plan(store, tmp / "plan.parquet", PlanConfig(policy="match-test", test_fold=3))
    gen.generate(plan, store, write_checkpoint(tmp / "ck", 32, copy=copy), tmp / "synth",
                 gen.GenerateConfig(frames_per_shard=8, workers=0, editor="standin_editor:StandInEditor"))
    train_detector("hogsvm", store, tmp / "hogsvm", detector_preset("hogsvm", "cpu"), test_fold=3)
    scores = score_all(store, tmp / "synth", [DetectorSpec("hogsvm", str(tmp / "hogsvm"))], tmp / "scores.parquet")
    rep.write_report(scores, tmp / "synth", store, tmp / "report", rep.ReportConfig(identity_pairs=3))
    return tmp / "report"


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("report"), copy=False)


def sk(d: pd.DataFrame, au: int) -> tuple[float, float, int]:
    d = d[(d["au"] == au) & (d["label"] != -1) & (d["status"] == "ok")]
    return (100 * f1_score(d["label"], d["present"], zero_division=0), 100 * accuracy_score(d["label"], d["present"]),
            len(d))


def unedited_by_hand(scores: pd.DataFrame, synth: pd.DataFrame) -> pd.DataFrame:
    """Each synthetic frame's source scores, labelled with that frame's targets (written independently)."""
    src = scores[scores["set"].isin(["real", "source"])]
    rows = []
    for r in synth.itertuples(index=False):
        s = src[src["frame_id"] == r.source_row]
        for x in s.itertuples(index=False):
            rows.append({"frame_id": r.plan_row, "au": x.au, "present": x.present, "status": x.status,
                         "label": getattr(r, f"AU{x.au}")})
    return pd.DataFrame(rows)


def test_table1_json_matches_independent_recomputation(report_dir):
    from pipelines.synth_store import read_parts

    t1 = json.loads((report_dir / "table1.json").read_text())
    scores = pd.read_parquet(report_dir / "scores.parquet")
    synth = read_parts(report_dir.parent / "synth")
    assert set(scores["set"]) == {"real", "synthetic"}  # match-test: every source is a test-fold frame
    d = scores[scores["detector"] == "hogsvm"]
    uned = unedited_by_hand(d, synth)
    table = t1["hogsvm"]
    for au in AUS:
        row = table[f"AU{au}"]
        real, syn, une = sk(d[d["set"] == "real"], au), sk(d[d["set"] == "synthetic"], au), sk(uned, au)
        for cell, want in (("real", real), ("synthetic", syn), ("unedited", une)):
            assert row[cell]["f1"] == pytest.approx(want[0]) and row[cell]["acc"] == pytest.approx(want[1])
            assert row[cell]["n"] == want[2]
        assert row["gap"]["f1"] == pytest.approx(real[0] - syn[0])
        assert row["edit_gain"]["acc"] == pytest.approx(syn[1] - une[1])
        lab = d[(d["set"] == "real") & (d["au"] == au) & (d["label"] != -1)]["label"]
        assert row["always_present"]["f1"] == pytest.approx(100 * f1_score(lab, np.ones_like(lab)))
        assert row["always_present"]["acc"] == pytest.approx(100 * lab.mean())
        assert row["counterfactual"] is None  # not a cohort: no renderer
    mean = table["mean"]
    assert mean["real"]["f1"] == pytest.approx(np.mean([table[f"AU{a}"]["real"]["f1"] for a in AUS]))
    assert mean["unedited"]["acc"] == pytest.approx(np.mean([table[f"AU{a}"]["unedited"]["acc"] for a in AUS]))
    assert mean["synthetic"]["n"] == synth["plan_row"].nunique()
    assert table["edit_quality_index"] is None and table["grouping"] is None


def test_counts_are_recomputed_from_the_score_file(report_dir):
    t1 = json.loads((report_dir / "table1.json").read_text())["hogsvm"]
    scores = pd.read_parquet(report_dir / "scores.parquet")
    for name in ("real", "synthetic"):
        d = scores[(scores["detector"] == "hogsvm") & (scores["set"] == name)]
        c = t1["sets"][name]
        assert c["frames"] == d["frame_id"].nunique()
        assert c["failed"] == d.loc[d["status"] != "ok", "frame_id"].nunique() == t1["n_failed"][name]
        for au in AUS:
            assert c["label_positives"][f"AU{au}"] == int(((d["au"] == au) & (d["label"] == 1)).sum())
            assert c["detected_positives"][f"AU{au}"] == int(((d["au"] == au) & (d["present"] == 1)).sum())


def test_unedited_floor_of_a_copy_editor_equals_its_synthesis(tmp_path):
    t1 = json.loads((_run(tmp_path, copy=True) / "table1.json").read_text())["hogsvm"]
    for row in [f"AU{a}" for a in AUS] + ["mean"]:
        assert t1[row]["unedited"] == t1[row]["synthetic"], row
        assert t1[row]["edit_gain"] == {"f1": 0.0, "acc": 0.0}


def test_synthetic_labels_are_the_targets(report_dir):
    from pipelines.synth_store import read_parts

    scores = pd.read_parquet(report_dir / "scores.parquet")
    synth = read_parts(report_dir.parent / "synth").set_index("plan_row")
    s = scores[scores["set"] == "synthetic"]
    expected = [synth.at[f, f"AU{a}"] for f, a in zip(s["frame_id"], s["au"])]
    assert (s["label"].to_numpy() == np.asarray(expected)).all()
    assert set(scores.loc[scores["set"] == "real", "frame_id"]) == set(synth["target_row"])


def test_report_files_and_locality(report_dir):
    for name in ("table1.md", "table1.csv", "table1.json", "edits.json", "report.md", "report.json",
                 "scores.parquet", "figures/f1_sets.png"):
        assert (report_dir / name).exists(), name
    md = (report_dir / "table1.md").read_text()
    table = md[md.index("| AU |"):].split("\n\n")[0]  # the first detector's table
    rows = [line.split(" |")[0][2:] for line in table.splitlines() if line.startswith("| ")][1:]
    assert rows == [f"AU{a}" for a in AUS] + ["Avg"]
    assert "Counterfactual: not available" in md and "unedited (floor)" in md
    edits = json.loads((report_dir / "edits.json").read_text())
    assert edits["locality"]["max_change_outside_regions"] == 0
    assert edits["identity"]["pairs"] == 3 and edits["identity"]["mean_distance"] >= 0
    csv = pd.read_csv(report_dir / "table1.csv")
    assert len(csv) == 13 and list(csv["au"])[-1] == "mean"
    assert {"unedited_f1", "edit_gain_f1", "counterfactual_f1", "always_present_n", "real_n"} <= set(csv.columns)
    meta = json.loads((report_dir / "report.json").read_text())
    assert meta["source_policy"] == ["random"] and meta["test_fold"] == 3 and meta["counterfactual"] is None


def _scores(detector, supported, rng, n_real=40, n_syn=30):
    """A hand-built long score table (not detector output) for the pure Table 1 functions; synthetic frame f
    was edited from real frame f."""
    rows = []
    for set_name, n in (("real", n_real), ("synthetic", n_syn)):
        for f in range(n):
            for au in supported:
                rows.append((f, set_name, detector, au, 0.5, int(rng.integers(2)), int(rng.integers(-1, 2)), "ok"))
    df = pd.DataFrame(rows, columns=["frame_id", "set", "detector", "au", "score", "present", "label", "status"])
    syn = df[df["set"] == "synthetic"].pivot(index="frame_id", columns="au", values="label")
    synth = pd.DataFrame({"plan_row": np.arange(n_syn), "source_row": np.arange(n_syn),
                          **{f"AU{a}": (syn[a].to_numpy() if a in syn else -1) for a in AUS}})
    return df, synth


def test_unsupported_aus_print_dash_and_paper_beside_ours():
    rng = np.random.default_rng(0)
    supported = [a for a in AUS if a != 24]
    df, synth = _scores("openface", supported, rng)
    t1 = table1(df, {"openface": supported}, synth, {"openface": {"grouping": "frame"}})
    assert t1["openface"]["AU24"] is None and t1["openface"]["grouping"] == "frame"
    md = rep.detector_markdown("openface", t1["openface"], paper=True)
    au24 = next(line for line in md.splitlines() if line.startswith("| AU24"))
    assert au24.count("− (−)") == 6
    au1 = next(line for line in md.splitlines() if line.startswith("| AU1 "))
    assert "(64.1)" in au1 and "(-11.7)" in au1  # the paper's OpenFace real F1 and gap F1 for AU1
    assert "grouped: `frame`" in md
    csv = rep.table1_frame(t1, paper=True)
    assert csv.loc[csv["au"] == "mean", "paper_synthetic_acc"].item() == 72.7


def test_invalid_scores_are_excluded():
    rng = np.random.default_rng(1)
    df, synth = _scores("jaanet", list(AUS), rng)
    base = table1(df, {"jaanet": list(AUS)}, synth)["jaanet"]
    extra = df[df["set"] == "real"].head(12).assign(frame_id=999, present=1, label=1, status="no face")
    t = table1(pd.concat([df, extra]), {"jaanet": list(AUS)}, synth)["jaanet"]
    for row in [f"AU{a}" for a in AUS] + ["mean"]:
        assert t[row] == base[row]
    assert t["n_failed"]["real"] == 1 and t["sets"]["real"]["top_failures"] == {"no face": 1}


def test_edit_quality_index():
    from pipelines.table1 import edit_quality_index

    assert edit_quality_index(60.0, 40.0, 60.0) == 1.0
    assert edit_quality_index(40.0, 40.0, 60.0) == 0.0
    assert edit_quality_index(50.0, 40.0, 60.0) == 0.5
    assert edit_quality_index(50.0, 40.0, 40.5) is None  # ceiling within MIN_SPAN of the floor: undefined
    assert edit_quality_index(50.0, 40.0, None) is None


def test_score_file_round_trip(report_dir):
    df, supported = read_set_scores(report_dir / "scores.parquet")
    assert set(supported) == {"hogsvm"} and set(df.columns) >= {"frame_id", "set", "detector", "au", "score",
                                                                "present", "label"}


def test_fold_mismatches_are_refused(report_dir, tmp_path):
    root = report_dir.parent
    store = root / "aligned.zarr"
    with pytest.raises(ScoreError, match="matches test fold 3, but fold 2 is being scored"):
        score_all(store, root / "synth", [DetectorSpec("hogsvm", str(root / "hogsvm"))], tmp_path / "s.parquet",
                  test_fold=2)
    from detectors.base import detector_preset, train_detector

    train_detector("hogsvm", store, tmp_path / "hog2", detector_preset("hogsvm", "cpu"), test_fold=2)
    with pytest.raises(ScoreError, match="held out fold 2, but fold 3"):
        score_all(store, root / "synth", [DetectorSpec("hogsvm", str(tmp_path / "hog2"))], tmp_path / "s.parquet")
    ck = write_checkpoint(tmp_path / "ck2", 32)
    cfg = json.loads((ck / "standin.json").read_text())
    (ck / "standin.json").write_text(json.dumps({**cfg, "test_fold": 1}))
    with pytest.raises(gen.GenerationError, match="held out fold 1"):
        gen.generate(root / "plan.parquet", store, ck, tmp_path / "synth2",
                     gen.GenerateConfig(workers=0, editor="standin_editor:StandInEditor"))


def test_missing_inputs_fail_clearly(report_dir, tmp_path):
    root = report_dir.parent
    store = root / "aligned.zarr"
    with pytest.raises(ScoreError, match="no weights for detector 'jaanet'"):
        score_all(store, root / "synth", [DetectorSpec("jaanet", str(tmp_path / "none"))], tmp_path / "s.parquet")
    import shutil

    shutil.copytree(root / "hogsvm", tmp_path / "broken")
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ScoreError, match="broken: cannot load detector 'hogsvm'"):
        score_all(store, root / "synth", [DetectorSpec("hogsvm", str(tmp_path / "broken"))], tmp_path / "s.parquet")
    with pytest.raises(ScoreError, match="no detectors configured"):
        score_all(store, root / "synth", [], tmp_path / "s.parquet")
    with pytest.raises(ValueError, match="unreadable generation record|no synthetic store here"):
        score_all(store, tmp_path / "nosynth", [DetectorSpec("hogsvm", str(root / "hogsvm"))], tmp_path / "s.parquet")
    with pytest.raises(ScoreError, match="no score table"):
        rep.write_report(tmp_path / "missing.parquet", root / "synth", store, tmp_path / "r")


def test_tables_average_over_folds(tmp_path):
    from pipelines.table1 import average_tables

    rng = np.random.default_rng(2)
    tables = []
    for k in range(3):
        df, synth = _scores("jaanet", list(AUS), rng)
        tables.append(table1(df, {"jaanet": list(AUS)}, synth)["jaanet"])
    avg = average_tables([{"jaanet": t} for t in tables])["jaanet"]
    for row in ("AU1", "mean"):
        assert avg[row]["real"]["f1"] == pytest.approx(np.mean([t[row]["real"]["f1"] for t in tables]))
        assert avg[row]["unedited"]["n"] == sum(t[row]["unedited"]["n"] for t in tables)
        assert avg[row]["gap"]["acc"] == pytest.approx(np.mean([t[row]["gap"]["acc"] for t in tables]))
    assert avg["folds"] == 3 and avg["mean"]["counterfactual"] is None
    for k, t in enumerate(tables):
        d = tmp_path / f"fold-{k}"
        d.mkdir()
        (d / "table1.json").write_text(json.dumps({"jaanet": t}))
    md = rep.write_fold_report([tmp_path / f"fold-{k}" for k in range(3)], tmp_path / "all")
    assert "averaged over 3 folds" in md.read_text()
    assert json.loads((tmp_path / "all" / "table1.json").read_text())["jaanet"]["mean"] == json.loads(
        json.dumps(avg["mean"]))


@pytest.mark.parametrize("training, expected", [
    ({"epochs": 10, "epochs_completed": 4, "stopped_by_time_budget": True}, "stopped by its wall-clock cap after 4 of 10"),
    ({"epochs": 10, "epochs_completed": 10, "stopped_by_time_budget": False}, "Trained 10 of 10 epochs."),
])
def test_detector_tables_say_how_far_training_went(training, expected):
    rng = np.random.default_rng(0)
    df, synth = _scores("jaanet", list(AUS), rng)
    t1 = table1(df, {"jaanet": list(AUS)}, synth, {"jaanet": {"training": training}})
    assert t1["jaanet"]["training"] == training
    assert expected in rep.detector_markdown("jaanet", t1["jaanet"])
    plain = table1(df, {"jaanet": list(AUS)}, synth)  # no training record (e.g. OpenFace): no sentence
    assert "epochs" not in rep.detector_markdown("jaanet", plain["jaanet"])


def test_locality_is_measured_in_the_generators_own_regions(tmp_path):
    """A change inside the `wide` regions but outside every `reference` region: 0 under the generator's rule
    (wide), visible under the other; the report takes the rule from the synthetic set's checkpoint."""
    import torch

    from lacgan.checkpoint import region_rule, save_checkpoint
    from lacgan.config import preset
    from lacgan.regions import attention_maps
    from manifests.aligned import AlignedStore
    from pipelines import fidelity

    store = make_store(tmp_path, size=64)
    src, lm, _ = AlignedStore.open(store).read(np.arange(4))
    only_wide = (attention_maps(lm, 64, "wide") > 0).any(1) & (attention_maps(lm, 64, "reference") == 0).all(1)
    assert only_wide.any()
    edited = src.astype(np.int16)
    edited[only_wide] += 20
    edited = np.clip(edited, 0, 255).astype(np.uint8)
    wide = fidelity.locality(store, edited, np.arange(4), rule_name="wide")
    ref = fidelity.locality(store, edited, np.arange(4), rule_name="reference")
    assert wide["max_change_outside_regions"] == 0 and wide["regions"] == "wide"
    assert ref["max_change_outside_regions"] == 20 and ref["frames_with_change"] == 4

    cfg = preset("smoke")
    assert cfg.net.regions == "wide"
    save_checkpoint(tmp_path / "run", 1, cfg, {"G": torch.nn.Linear(1, 1)}, {})
    assert region_rule(tmp_path / "run") == "wide"
    (tmp_path / "synth").mkdir()
    (tmp_path / "synth" / "generation.json").write_text(json.dumps({"checkpoint": str(tmp_path / "run")}))
    assert rep.generator_regions(tmp_path / "synth") == "wide"
    assert rep.generator_regions(tmp_path / "no-such-set") == "reference"  # GANimation / unknown: the reference
