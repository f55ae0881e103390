"""The method comparison (pipelines.compare) and the outside-region change it reports, on hand-made stores.

Two stand-in editors (tests/standin_editor.py, TEST STAND-INS) edit the same plan: one like LAC-GAN (only the
targeted regions, composited back), one that also moves two known boxes outside every AU region by known grey
levels, as a whole-face generator would. Both are scored by the real HOG+SVM detector and reported by the real
report code; the comparison must copy every number from the two reports and find the boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lacgan.regions import attention_maps
from pipeline_fixtures import canonical_landmarks, make_store
from pipelines import compare as cmp
from pipelines import generate as gen
from pipelines import report as rep
from pipelines.plan import PlanConfig, build_plan
from pipelines.score import DetectorSpec, score_all
from standin_editor import write_checkpoint

SIZE = 32
BIG = (0, 4, 0, 8, 20)  # rows 0-3, columns 0-7 moved by 20 grey levels (> 8): outside every region at 32 px
SMALL = (28, 32, 0, 6, 5)  # rows 28-31, columns 0-5 moved by 5 (> 0, not > 8)


def _outside() -> np.ndarray:
    return (attention_maps(canonical_landmarks(SIZE)[None], SIZE) == 0).all(axis=1)[0]


def _method(tmp, store, plan, name: str, boxes=()):
    ck = write_checkpoint(tmp / f"ck-{name}", SIZE, boxes=boxes)
    synth = tmp / f"synth-{name}"
    gen.generate(plan, store, ck, synth, gen.GenerateConfig(frames_per_shard=8, workers=0,
                                                           editor="standin_editor:StandInEditor"))
    scores = score_all(store, synth, [DetectorSpec("hogsvm", str(tmp / "hogsvm"))], tmp / f"scores-{name}.parquet")
    return rep.write_report(scores, synth, store, tmp / f"report-{name}", rep.ReportConfig(identity_pairs=3)).parent


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    from detectors.base import detector_preset, train_detector

    tmp = tmp_path_factory.mktemp("compare")
    store = make_store(tmp, size=SIZE, frames=10)
    plan = build_plan(store, tmp / "plan.parquet", PlanConfig(policy="match-test", test_fold=3))
    train_detector("hogsvm", store, tmp / "hogsvm", detector_preset("hogsvm", "cpu"), test_fold=3)
    reports = {"LAC-GAN": _method(tmp, store, plan, "regions"),
               "whole-face": _method(tmp, store, plan, "boxes", boxes=(BIG, SMALL))}
    md = cmp.write_comparison(reports, tmp / "comparison")
    return tmp, reports, md


def test_boxes_are_outside_every_region():
    out = _outside()
    for y0, y1, x0, x1, _ in (BIG, SMALL):
        assert out[y0:y1, x0:x1].all()


def test_outside_change_of_known_boxes(compared):
    tmp, reports, _ = compared
    n_out = _outside().sum()
    big, small = [(b[1] - b[0]) * (b[3] - b[2]) for b in (BIG, SMALL)]
    loc = json.loads((reports["whole-face"] / "edits.json").read_text())["locality"]
    assert loc["changed_share"] == pytest.approx(100 * (big + small) / n_out)
    assert loc["changed_share_over"] == pytest.approx(100 * big / n_out)
    assert loc["max_change_outside_regions"] == 20 and loc["frames_with_change"] == loc["frames"] > 0
    assert loc["outside_share"] == pytest.approx(100 * n_out / SIZE ** 2)
    with np.load(reports["whole-face"] / rep.OUTSIDE_MAPS) as z:
        changed, over = z["changed"], z["changed_over"]
    want = np.zeros((SIZE, SIZE))
    want[BIG[0]:BIG[1], BIG[2]:BIG[3]] = want[SMALL[0]:SMALL[1], SMALL[2]:SMALL[3]] = 1
    assert np.isnan(changed[~_outside()]).all()  # never outside: no value
    assert (changed[_outside()] == want[_outside()]).all()
    want[SMALL[0]:SMALL[1], SMALL[2]:SMALL[3]] = 0
    assert (over[_outside()] == want[_outside()]).all()
    lac = json.loads((reports["LAC-GAN"] / "edits.json").read_text())["locality"]  # composited back: 0
    assert lac["max_change_outside_regions"] == 0 and lac["changed_share"] == 0 and lac["changed_share_over"] == 0
    assert (tmp / "report-boxes" / "figures" / "outside_change.png").stat().st_size > 1000


def test_side_by_side_numbers_equal_each_report(compared):
    tmp, reports, md = compared
    c = json.loads((md.parent / "comparison.json").read_text())
    assert list(c["methods"]) == ["LAC-GAN", "whole-face"]
    for m, d in reports.items():
        t1 = json.loads((d / "table1.json").read_text())["hogsvm"]
        edits = json.loads((d / "edits.json").read_text())
        nums = c["detectors"]["hogsvm"]
        for cell in ("real", "synthetic", "unedited", "counterfactual", "always_present", "gap", "edit_gain"):
            want = t1["mean"][cell]
            assert nums[f"{cell}_f1"][m] == (None if want is None else want["f1"]), cell
            assert nums[f"{cell}_acc"][m] == (None if want is None else want["acc"]), cell
        assert nums["edit_quality_index"][m] == t1["edit_quality_index"]
        pooled = edits["pooled"]["synthetic"]["hogsvm"]
        assert nums["edit_success"][m] == pooled["success_changed"]
        assert nums["off_target_flips"][m] == pooled["off_target_flips"]
        for au in ("AU1", "AU12"):
            assert c["per_au"]["hogsvm"][au]["synthetic_f1"][m] == t1[au]["synthetic"]["f1"]
            assert c["per_au"]["hogsvm"][au]["off_target_flips"][m] == edits["edits"]["synthetic"]["hogsvm"][au][
                "off_target_flips"]
        fid = c["fidelity"]
        assert fid["same_person_share"][m] == edits["identity"]["same_person_share"]
        assert fid["outside_changed_share_over"][m] == edits["locality"]["changed_share_over"]
        assert fid["outside_max_change"][m] == edits["locality"]["max_change_outside_regions"]
    # the same real frames and detector: the real column is one number; the sources' floor is one too
    assert nums["real_f1"]["LAC-GAN"] == nums["real_f1"]["whole-face"]
    assert nums["unedited_f1"]["LAC-GAN"] == nums["unedited_f1"]["whole-face"]
    text = md.read_text()
    assert "| Outside the AU regions: pixels changed > 8 (%) | 0.00 |" in text
    assert "| metric | LAC-GAN | whole-face |" in text and "**hogsvm per AU**" in text
    for png in ("fig4_grid.png", "outside_change.png"):
        assert (md.parent / "figures" / png).stat().st_size > 1000


def test_fig4_targets_flip_one_au_each():
    from pipelines.figures import single_au_flips

    labels = np.array([[1, 0, -1] + [0] * 9], np.int8)
    t = single_au_flips(labels, aus=(1, 2, 4))
    assert t.shape == (1, 3, 12)
    assert t[0, 0, 0] == 0 and t[0, 1, 1] == 1 and t[0, 2, 2] == 1  # present -> absent, absent/unknown -> present
    assert ((t != -1).sum(axis=2) == 1).all()  # every other AU: keep the source's


def test_reports_of_other_plans_are_refused(compared, tmp_path):
    tmp, reports, _ = compared
    other = tmp_path / "report"
    other.mkdir()
    for name in ("table1.json", "edits.json", "report.json"):
        (other / name).write_text((reports["whole-face"] / name).read_text())
    synth = tmp_path / "synth"
    synth.mkdir()
    g = json.loads((tmp / "synth-boxes" / "generation.json").read_text())
    (synth / "generation.json").write_text(json.dumps({**g, "plan_sha256": "0" * 64}))
    meta = json.loads((other / "report.json").read_text())
    (other / "report.json").write_text(json.dumps({**meta, "synthetic": str(synth)}))
    with pytest.raises(cmp.ComparisonError, match="made with another plan"):
        cmp.write_comparison({"LAC-GAN": reports["LAC-GAN"], "other": other}, tmp_path / "c")
    with pytest.raises(cmp.ComparisonError, match="unreadable"):
        cmp.write_comparison({"LAC-GAN": reports["LAC-GAN"], "none": tmp_path / "nothing"}, tmp_path / "c")


def test_compare_cli_bad_input_is_one_line(compared, tmp_path, capsys):
    from flows.cli import main

    tmp, reports, _ = compared
    assert main(["compare", "--report", f"LAC-GAN={reports['LAC-GAN']}", "--report", "nonsense",
                 "--out", str(tmp_path / "c")]) == 2
    assert "is not NAME=REPORT_DIR" in capsys.readouterr().err
    assert main(["compare", "--report", f"LAC-GAN={reports['LAC-GAN']}", "--report", f"x={tmp_path}",
                 "--out", str(tmp_path / "c")]) == 2
    assert "report.json: unreadable" in capsys.readouterr().err
