"""OpenFace grouping "frame" (FaceLandmarkImg, every frame alone): command building, per-image CSVs, batching,
mapping CSVs back to frames, failures; and detectors.failures.

tests/openface_standin/FaceLandmarkImg is a TEST STAND-IN (a small Python script), not OpenFace: per image it
writes a CSV whose AU values follow the image's mean pixel value (`level`), so each test can check which image a
CSV came from. The real-install test is in test_detectors_openface.py.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detectors.failures import DetectorFailed, failure_reasons, require_scored, summarise_failures
from detectors.frames import FrameSource
from detectors.openface import OpenFaceDetector
from detectors.openface_run import (NO_FACE, SUPPORTED, OpenFaceCsvError, build_image_command, parse_image_csv)

IMG_STANDIN = Path(__file__).parent / "openface_standin" / "FaceLandmarkImg"
sys.path.insert(0, str(IMG_STANDIN.parent))
from _standin import AU_HEADER, AUS_R, au_values  # noqa: E402  (the stand-in's own value rule)

pytestmark = pytest.mark.skipif(shutil.which("python3") is None, reason="stand-in needs python3 on PATH")


def _frames(levels, size=24):
    """Uniform frames of the given grey levels, ids out of storage order, two sequences interleaved."""
    imgs = np.stack([np.full((size, size, 3), g, np.uint8) for g in levels])
    ids = 1000 - 7 * np.arange(len(levels))
    seqs = np.array(["S1/T1", "S2/T1"] * len(levels), dtype=object)[:len(levels)]
    return FrameSource.from_arrays(imgs, ids, seqs)


def _expected(level: int) -> tuple[np.ndarray, np.ndarray]:
    """What the stand-in writes for an image of `level`, in SUPPORTED order (score, present)."""
    vals = dict(zip(AU_HEADER, au_values(level)))
    r = np.array([float(vals[f"AU{a:02d}_r"]) for a in SUPPORTED], np.float32)
    return r, (np.array([float(vals[f"AU{a:02d}_c"]) for a in SUPPORTED]) > 0.5).astype(np.int8)


def _wide(df: pd.DataFrame, column: str) -> pd.DataFrame:
    return df.pivot(index="frame_id", columns="au", values=column)[list(SUPPORTED)]


def _detector(tmp_path, **kw) -> OpenFaceDetector:
    return OpenFaceDetector.load(grouping="frame", image_binary=str(IMG_STANDIN), workdir=str(tmp_path / "w"), **kw)


# ---- pure ---------------------------------------------------------------------------------------------------
def test_build_image_command_is_an_argument_list_without_of_or_au_static():
    cmd = build_image_command("/opt/of/FaceLandmarkImg", "/t/frames", "/t/out")
    assert cmd == ["/opt/of/FaceLandmarkImg", "-fdir", "/t/frames", "-out_dir", "/t/out", "-aus"]
    cmd = build_image_command("FLI", "a b", "o", model="model/main_clnf_general.txt")
    assert cmd[-2:] == ["-mloc", "model/main_clnf_general.txt"] and "a b" in cmd and "-of" not in cmd


def _image_csv(tmp_path, rows: list[tuple[int, str, list[str]]], sep=", ") -> Path:
    p = tmp_path / "img.csv"
    p.write_text(sep.join(["face", "confidence"] + AU_HEADER) + "\n"
                 + "".join(sep.join([str(f), c] + v) + "\n" for f, c, v in rows))
    return p


@pytest.mark.parametrize("sep", [", ", ","])  # 2.0.x writes ", "; later versions ","
def test_parse_image_csv_takes_the_most_confident_face(tmp_path, sep):
    p = _image_csv(tmp_path, [(0, "0.61", au_values(1)), (1, "0.93", au_values(4)), (2, "0.20", au_values(2))], sep)
    score, present, status = parse_image_csv(p)
    exp_r, exp_c = _expected(4)
    assert status == "ok" and np.array_equal(score, exp_r) and np.array_equal(present, exp_c)
    tie = _image_csv(tmp_path, [(0, "0.90", au_values(3)), (1, "0.90", au_values(5))], sep)
    assert np.array_equal(parse_image_csv(tie)[0], _expected(3)[0])  # a tie: the first face


def test_parse_image_csv_no_face_and_broken_files(tmp_path):
    score, present, status = parse_image_csv(tmp_path / "absent.csv")  # FaceLandmarkImg found no face
    assert status == NO_FACE and np.isnan(score).all() and (present == 0).all()
    assert parse_image_csv(_image_csv(tmp_path, []))[2] == NO_FACE
    (tmp_path / "cols.csv").write_text("face, confidence\n0, 0.9\n")
    with pytest.raises(OpenFaceCsvError, match="lacks columns") as e:
        parse_image_csv(tmp_path / "cols.csv")
    assert str(tmp_path) not in e.value.problem  # the reason itself has no path: failures count per reason
    bad = _image_csv(tmp_path, [(0, "0.9", ["n/a"] + au_values(1)[1:])])  # AU01_r unreadable
    with pytest.raises(OpenFaceCsvError, match="non-numeric"):
        parse_image_csv(bad)
    cut = _image_csv(tmp_path, [(0, "0.9", au_values(1)[:5])])  # a row cut short (a crash while writing)
    with pytest.raises(OpenFaceCsvError, match="wrong number of fields"):
        parse_image_csv(cut)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(OpenFaceCsvError, match="empty CSV"):
        parse_image_csv(tmp_path / "empty.csv")


# ---- with the stand-in --------------------------------------------------------------------------------------
def test_frame_grouping_calls_once_per_batch_and_maps_every_csv_to_its_frame(monkeypatch, tmp_path):
    log = tmp_path / "args.log"
    monkeypatch.setenv("STANDIN_ARGS_LOG", str(log))
    levels = [3, 250, 17, 128, 64, 9, 200, 33]
    fs = _frames(levels)
    det = _detector(tmp_path, batch=3, model="model/main_clnf_general.txt")
    df = det.score(fs)
    calls = [line.split("\t") for line in log.read_text().splitlines()]
    assert len(calls) == 3  # 8 frames in batches of 3: 3 + 3 + 2
    assert all("-au_static" not in c and "-of" not in c and c[-2:] == ["-mloc", "model/main_clnf_general.txt"]
               for c in calls)
    assert (df["status"] == "ok").all() and len(df) == len(fs) * len(SUPPORTED)
    score, present = _wide(df, "score"), _wide(df, "present")
    for fid, level in zip(fs.frame_ids, levels):  # each frame got the CSV of its own image
        exp_r, exp_c = _expected(level)
        assert np.array_equal(score.loc[fid].to_numpy(np.float32), exp_r)
        assert np.array_equal(present.loc[fid].to_numpy(np.int8), exp_c)
    assert list(dict.fromkeys(df["frame_id"])) == list(fs.frame_ids)  # source order, sequences ignored
    written = sorted(p.name for p in (tmp_path / "w" / "batch00002" / "frames").iterdir())
    assert written == ["000001.bmp", "000002.bmp"]
    s = det.settings()
    assert s["grouping"] == "frame" and s["executable"] == str(IMG_STANDIN) and s["au_models"] == "static"
    assert s["temporal_context"].startswith("none") and s["batch"] == 3


def test_frames_without_a_face_fail_alone_and_several_faces_take_the_most_confident(monkeypatch, tmp_path):
    monkeypatch.setenv("STANDIN_NOFACE_LEVEL", "17")
    monkeypatch.setenv("STANDIN_FACES", "2")  # face 0 (0.40) has level+1's values, face 1 (0.90) the image's own
    fs = _frames([3, 17, 250, 17])
    df = _detector(tmp_path, batch=10).score(fs)
    bad = df[df["status"] != "ok"]
    assert set(bad["frame_id"]) == {fs.frame_ids[1], fs.frame_ids[3]}
    assert (bad["status"] == NO_FACE).all() and bad["score"].isna().all() and (bad["present"] == 0).all()
    score = _wide(df, "score")
    assert np.array_equal(score.loc[fs.frame_ids[2]].to_numpy(np.float32), _expected(250)[0])


def test_a_crash_mid_batch_keeps_the_finished_images_and_marks_the_rest(monkeypatch, tmp_path):
    monkeypatch.setenv("STANDIN_CRASH_AFTER", "2")  # CSVs of images 1-2, then "Could not open the image"
    fs = _frames([5, 6, 7, 8, 9])
    df = _detector(tmp_path, batch=10, retries=1).score(fs)
    status = df.drop_duplicates("frame_id").set_index("frame_id")["status"]
    assert (status.loc[fs.frame_ids[:2]] == "ok").all()
    rest = status.loc[fs.frame_ids[2:]]
    assert rest.str.startswith("openface: exit code 1: Error: Could not open the image: <work>/frames/").all()
    assert df[df["frame_id"].isin(fs.frame_ids[2:])]["score"].isna().all()


@pytest.mark.parametrize("mode, reason", [("nocen", "--openface-model model/main_clnf_general.txt"),
                                          ("exit1", "exit code 1"), ("nocols", "openface: CSV lacks columns"),
                                          ("norows", NO_FACE)])
def test_whole_batch_failures_carry_one_stable_reason(monkeypatch, tmp_path, mode, reason):
    monkeypatch.setenv("STANDIN_MODE", mode)
    df = _detector(tmp_path, batch=2, retries=0).score(_frames([1, 2, 3]))
    reasons = failure_reasons(df)
    assert len(reasons) == 1 and reason in reasons.index[0] and reasons.iloc[0] == 3  # two batches, one reason
    assert df["score"].isna().all()
    with pytest.raises(DetectorFailed) as e:
        require_scored(df, "openface", "real frames")
    msg = str(e.value)
    assert msg.startswith("openface: every one of the 3 real frames failed; reason: ") and reason in msg
    assert "\n" not in msg


def test_timeout_is_per_call(monkeypatch, tmp_path):
    monkeypatch.setenv("STANDIN_MODE", "sleep")
    monkeypatch.setenv("STANDIN_ONLY", "batch00001")  # only the second batch hangs
    fs = _frames([1, 2, 3, 4])
    df = _detector(tmp_path, batch=2, timeout=1.0, retries=0).score(fs)
    status = df.drop_duplicates("frame_id").set_index("frame_id")["status"]
    assert (status.loc[fs.frame_ids[:2]] == "ok").all()
    assert (status.loc[fs.frame_ids[2:]] == "openface: timed out after 1 s").all()


# ---- detectors.failures -----------------------------------------------------------------------------------
def test_partial_failures_are_counted_per_reason_and_pass():
    st = ["ok", "openface: no face found", "ok", "openface: no face found", "openface: timed out after 9 s"]
    df = pd.DataFrame({"frame_id": np.repeat(np.arange(5), 2), "au": np.tile([1, 2], 5),
                       "status": np.repeat(st, 2)})
    assert require_scored(df, "openface") is df
    assert failure_reasons(df).to_dict() == {"openface: no face found": 2, "openface: timed out after 9 s": 1}
    assert summarise_failures(df) == ("3 of 5 frames failed: 2 openface: no face found; "
                                      "1 openface: timed out after 9 s")
    assert summarise_failures(df.assign(status="ok")) == ""
    empty = df.iloc[:0]
    assert require_scored(empty, "openface") is empty  # nothing to score is not a failure
    mixed = df.assign(status=np.repeat(["a"] * 3 + ["b"] * 2, 2))
    with pytest.raises(DetectorFailed, match=r"most common reason \(3 frames\): a \(1 other reasons\)"):
        require_scored(mixed, "hogsvm")
