"""The OpenFace 2.x wrapper, sequence groupings (FeatureExtraction): command building, CSV parsing, failures,
finding the executables, with a labelled stand-in executable. Frame grouping: test_detectors_openface_frame.py.

tests/openface_standin/FeatureExtraction is a TEST STAND-IN (a small Python script), not OpenFace. The tests
marked `openface` run the real executables when the environment (OPENFACE_FEATURE_EXTRACTION,
OPENFACE_FACE_LANDMARK_IMG or PATH) provides them; OPENFACE_MODEL, when set, is passed as the model (-mloc).
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from detectors.frames import FrameSource
from detectors.openface import (ENV_VAR, IMG_BINARY_NAME, IMG_ENV_VAR, OpenFaceDetector, OpenFaceNotFound,
                                find_binary)
from detectors.openface_config import OpenFaceConfig, OpenFaceSettingsError, optional_settings, settings_for
from detectors.openface_run import SUPPORTED, OpenFaceCsvError, build_command, parse_csv, run_command

STANDIN = Path(__file__).parent / "openface_standin" / "FeatureExtraction"
IMG_STANDIN = STANDIN.parent / IMG_BINARY_NAME

pytestmark = pytest.mark.skipif(shutil.which("python3") is None, reason="stand-in needs python3 on PATH")


def _frames(n_seq=2, per=4, size=32):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (n_seq * per, size, size, 3), dtype=np.uint8)
    seqs = np.repeat([f"S{i}/T1" for i in range(n_seq)], per)
    ids = np.arange(len(imgs))[::-1] + 100  # sequence order must follow frame_id order, not storage order
    return FrameSource.from_arrays(imgs, ids, seqs)


def test_supported_aus_exclude_au24():
    assert 24 not in SUPPORTED and len(SUPPORTED) == 11


def test_build_command_is_an_argument_list():
    cmd = build_command("/opt/of/FeatureExtraction", "/t/frames", "/t/out", "seq")
    assert cmd == ["/opt/of/FeatureExtraction", "-fdir", "/t/frames", "-out_dir", "/t/out", "-of", "seq", "-aus"]
    cmd = build_command("FE", "a b", "o", "n", static=True, model="model/main_clnf_general.txt")
    assert cmd[-3:] == ["-au_static", "-mloc", "model/main_clnf_general.txt"] and "a b" in cmd


def test_missing_binary_error_names_all_three_ways(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OpenFaceNotFound) as e:
        find_binary(str(tmp_path / "also-nope"))
    msg = str(e.value)
    assert "--openface-bin" in msg and ENV_VAR in msg and "PATH" in msg and "also-nope" in msg


def test_binary_found_from_setting_env_then_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(STANDIN.parent))
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert find_binary() == STANDIN
    monkeypatch.setenv(ENV_VAR, str(STANDIN))
    assert find_binary() == STANDIN
    assert find_binary(str(STANDIN)) == STANDIN
    assert find_binary(str(STANDIN.parent)) == STANDIN  # the folder of OpenFace's executables


def test_face_landmark_img_found_from_setting_env_next_to_feature_extraction_then_path(monkeypatch, tmp_path):
    monkeypatch.delenv(IMG_ENV_VAR, raising=False)
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))

    def img(**settings):
        return OpenFaceDetector.load(grouping="frame", **settings).binary

    assert img(image_binary=str(IMG_STANDIN)) == IMG_STANDIN
    assert img(binary=str(STANDIN)) == IMG_STANDIN  # beside --openface-bin's FeatureExtraction
    assert img(binary=str(STANDIN.parent)) == IMG_STANDIN
    monkeypatch.setenv(ENV_VAR, str(STANDIN))
    assert img() == IMG_STANDIN  # beside $OPENFACE_FEATURE_EXTRACTION
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv(IMG_ENV_VAR, str(IMG_STANDIN))
    assert img() == IMG_STANDIN
    monkeypatch.delenv(IMG_ENV_VAR)
    with pytest.raises(OpenFaceNotFound) as e:
        img(binary=str(tmp_path))  # a folder without FaceLandmarkImg, and nothing on PATH
    assert IMG_ENV_VAR in str(e.value) and "--openface-bin" in str(e.value) and str(tmp_path) in str(e.value)
    monkeypatch.setenv("PATH", str(STANDIN.parent))
    assert img() == IMG_STANDIN
    assert OpenFaceDetector.load(grouping="frame", binary=str(tmp_path / "no-FeatureExtraction")).binary == IMG_STANDIN


def test_settings_are_validated_before_any_work():
    with pytest.raises(OpenFaceSettingsError, match="grouping must be one of"):
        OpenFaceConfig(grouping="frames")
    with pytest.raises(OpenFaceSettingsError, match="timeout > 0"):
        settings_for(timeout=0)
    assert settings_for("FE", grouping="frame")["grouping"] == "frame"
    assert settings_for()["timeout"] == OpenFaceConfig().timeout  # unset options take the config's defaults
    assert optional_settings(None) is None and optional_settings(None, grouping="sequence") is None
    with pytest.raises(OpenFaceSettingsError, match="without the OpenFace binary"):
        optional_settings(None, model="model/main_clnf_general.txt")
    with pytest.raises(OpenFaceSettingsError, match="grouping"):
        optional_settings(None, grouping="frame")


def _csv(tmp_path, text):
    p = tmp_path / "seq.csv"
    p.write_text(text)
    return p


HEADER = ", ".join(["frame", "face_id", "timestamp", "confidence", "success"]
                   + [f"AU{a:02d}_r" for a in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)]
                   + [f"AU{a:02d}_c" for a in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45, 28)])


def test_parse_csv_with_comma_space_separators_and_a_failed_frame(tmp_path):
    r = ", ".join(["2.50"] * 17)
    c = ", ".join(["1.00"] * 18)
    text = (HEADER + "\n" + f"1, 0, 0.000, 0.98, 1, {r}, {c}\n"
            + "2, 0, 0.033, 0.00, 0, " + ", ".join(["0.00"] * 35) + "\n")
    score, present, status = parse_csv(_csv(tmp_path, text), 3)
    assert score.shape == (3, 11) and np.allclose(score[0], 2.5) and (present[0] == 1).all()
    assert status[0] == "ok" and "success 0" in status[1] and np.isnan(score[1]).all() and (present[1] == 0).all()
    assert status[2] == "openface: no CSV row for this frame"  # a stable reason, counted per reason in reports


def test_parse_csv_missing_columns_and_missing_file(tmp_path):
    with pytest.raises(OpenFaceCsvError, match="lacks columns"):
        parse_csv(_csv(tmp_path, "frame, success\n1, 1\n"), 1)
    with pytest.raises(OpenFaceCsvError, match="wrote no CSV"):
        parse_csv(tmp_path / "absent.csv", 1)


def test_detector_with_standin_scores_sequences_and_marks_a_failed_frame(monkeypatch, tmp_path):
    log = tmp_path / "args.log"
    monkeypatch.setenv("STANDIN_FAIL_FRAME", "2")
    monkeypatch.setenv("STANDIN_ARGS_LOG", str(log))
    det = OpenFaceDetector.load(binary=str(STANDIN), grouping="static", workdir=str(tmp_path / "w"))
    fs = _frames()
    df = det.score(fs)
    assert len(df) == len(fs) * 11 and set(df["au"]) == set(SUPPORTED)
    calls = [line.split("\t") for line in log.read_text().splitlines()]
    assert len(calls) == 2 and all("-au_static" in c for c in calls)  # one run per sequence, static models
    # sequence S0 holds ids 107..104; frame 2 of it in frame_id order is id 105
    bad = df[df["status"] != "ok"]
    assert set(bad["frame_id"]) == {105, 101} and bad["score"].isna().all()
    # stand-in value for frame k and AU a is (k + a) % 6: first frame (k=1) of S0 is id 104
    au12 = df[(df["frame_id"] == 104) & (df["au"] == 12)].iloc[0]
    assert au12["score"] == pytest.approx((1 + 12) % 6) and au12["present"] == int((1 + 12) % 6 >= 3)
    frames_written = sorted(p.name for p in (tmp_path / "w" / "seq00000" / "frames").iterdir())
    assert frames_written == ["000001.png", "000002.png", "000003.png", "000004.png"]
    settings = det.settings()
    assert settings["au_models"] == "static" and settings["grouping"] == "static"
    assert "7-frame" in settings["temporal_context"] and settings["executable"] == str(STANDIN)


@pytest.mark.parametrize("mode, reason", [("exit1", "exit code 1"), ("nocols", "lacks columns"),
                                          ("short", "no CSV row")])
def test_failures_are_reported_per_frame_with_their_reason(monkeypatch, mode, reason):
    monkeypatch.setenv("STANDIN_MODE", mode)
    det = OpenFaceDetector.load(binary=str(STANDIN), retries=0)
    df = det.score(_frames(n_seq=1))
    bad = df[df["status"] != "ok"]
    assert len(bad) and bad["status"].str.contains(reason).all() and bad["score"].isna().all()
    if mode == "short":
        assert bad["frame_id"].nunique() == 1  # only the last frame lacks a row


def test_timeout_is_reported_and_other_sequences_still_scored(monkeypatch, tmp_path):
    monkeypatch.setenv("STANDIN_MODE", "sleep")
    res = run_command([str(STANDIN), "-fdir", "x"], timeout=0.5, retries=1, backoff=0.0)
    assert not res.ok and "timed out" in res.reason and res.attempts == 2
    monkeypatch.setenv("STANDIN_ONLY", "seq00001")  # only the second sequence hangs
    det = OpenFaceDetector.load(binary=str(STANDIN), timeout=1.0, retries=0, workdir=str(tmp_path / "w"))
    fs = _frames(n_seq=3)
    df = det.score(fs)
    bad = df[df["status"] != "ok"]
    assert set(bad["frame_id"]) == set(fs.frame_ids[4:8]) and bad["status"].str.contains("timed out").all()
    assert (df[~df["frame_id"].isin(fs.frame_ids[4:8])]["status"] == "ok").all()
    res = run_command([str(tmp_path / "gone")], timeout=5)
    assert not res.ok and "cannot run" in res.reason and res.attempts == 1


def test_missing_ce_clm_experts_are_explained_and_not_retried(monkeypatch, tmp_path):
    log = tmp_path / "args.log"
    monkeypatch.setenv("STANDIN_MODE", "nocen")
    monkeypatch.setenv("STANDIN_ARGS_LOG", str(log))
    df = OpenFaceDetector.load(binary=str(STANDIN), retries=2).score(_frames(n_seq=2))
    reasons = set(df["status"])
    assert len(reasons) == 1  # one stable reason for every frame of every sequence
    reason = reasons.pop()
    assert "exit code 1" in reason and "Could not find CEN patch experts" in reason
    assert "--openface-model model/main_clnf_general.txt" in reason
    assert len(log.read_text().splitlines()) == 2  # one attempt per sequence: the same failure every time


def test_failure_reason_quotes_openface_error_lines_from_stdout(tmp_path):
    script = tmp_path / "fails"
    script.write_text("#!/usr/bin/env python3\nimport sys\nprint('Loading the model')\n"
                      "print('ERROR: Could not load the landmark detector')\nprint('done')\n"
                      "print('some warning', file=sys.stderr)\nsys.exit(1)\n")
    script.chmod(0o755)
    res = run_command([str(script)], timeout=10, retries=0)
    assert not res.ok and res.reason == "openface: exit code 1: ERROR: Could not load the landmark detector"


def test_transient_failure_is_retried(monkeypatch, tmp_path):
    monkeypatch.setenv("STANDIN_MODE", "flaky")
    det = OpenFaceDetector.load(binary=str(STANDIN), retries=1, workdir=str(tmp_path))
    det_df = det.score(_frames(n_seq=1))
    assert (det_df["status"] == "ok").all()


def _real_install(grouping: str) -> OpenFaceDetector:
    """The user's OpenFace for `grouping`, with $OPENFACE_MODEL as -mloc when set; skip without an install."""
    try:
        det = OpenFaceDetector.load(grouping=grouping, model=os.environ.get("OPENFACE_MODEL") or None)
    except OpenFaceNotFound as e:
        pytest.skip(f"no OpenFace install: {str(e).split('. ')[0]}")
    if det.binary.resolve().parent == STANDIN.parent.resolve():
        pytest.skip("only the test stand-in is configured")
    return det


def _astronaut(n: int) -> FrameSource:
    from skimage import data as skdata
    import cv2

    face = cv2.resize(skdata.astronaut()[0:300, 100:400], (256, 256))
    return FrameSource.from_arrays(np.stack([face] * n), sequences=["astronaut"] * n)


@pytest.mark.openface
def test_real_openface_binary_scores_a_face():
    df = _real_install("static").score(_astronaut(2))
    assert (df["status"] == "ok").all(), df["status"].unique()
    assert df["score"].between(0, 5).all()


@pytest.mark.openface
def test_real_face_landmark_img_scores_every_frame_alone():
    det = _real_install("frame")
    df = OpenFaceDetector(OpenFaceConfig(grouping="frame", model=det.cfg.model, batch=2), det.binary).score(
        _astronaut(3))  # two FaceLandmarkImg calls: a batch of 2 and one of 1
    assert (df["status"] == "ok").all(), df["status"].unique()
    assert df["score"].between(0, 5).all() and set(df["present"]) <= {0, 1}
    first = df[df["frame_id"] == 0].sort_values("au")["score"].to_numpy()
    last = df[df["frame_id"] == 2].sort_values("au")["score"].to_numpy()
    assert np.allclose(first, last)  # the same image decided alone gives the same intensities
