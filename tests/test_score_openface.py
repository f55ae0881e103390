"""OpenFace where Table 1 is made: `lacgan score` and `lacgan augment` take --openface-bin, --openface-model,
--grouping and --timeout, score real and synthetic frames with the same settings, record them in the score
file, and stop with one line and exit code 2 when every frame fails. OpenFace here is the labelled TEST STAND-IN
(tests/openface_standin); flow-level tests are in test_flows.py."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.cli import main
from pipeline_fixtures import make_synthetic

STANDIN_DIR = Path(__file__).parent / "openface_standin"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("synth"))


def _score(synthetic, out, *extra):
    store, synth = synthetic
    return main(["score", "--store", str(store), "--synthetic", str(synth), "--detector", "openface",
                 "--out", str(out), *extra])


@pytest.mark.parametrize("grouping, executable", [("frame", "FaceLandmarkImg"), ("static", "FeatureExtraction")])
def test_score_uses_one_openface_setting_for_real_and_synthetic(synthetic, tmp_path, monkeypatch, grouping,
                                                                executable):
    log = tmp_path / "args.log"
    monkeypatch.setenv("STANDIN_ARGS_LOG", str(log))
    out = tmp_path / "scores.parquet"
    rc = _score(synthetic, out, "--openface-bin", str(STANDIN_DIR), "--grouping", grouping,
                "--openface-model", "model/main_clnf_general.txt", "--timeout", "60")
    assert rc == 0
    table = pq.read_table(out)
    df = table.to_pandas()
    assert set(df["set"]) == {"real", "synthetic"} and (df["status"] == "ok").all()
    settings = json.loads(table.schema.metadata[b"lacgan.settings"])["openface"]
    assert settings["grouping"] == grouping and settings["executable"].endswith(executable)
    assert settings["model"] == "model/main_clnf_general.txt" and settings["timeout"] == 60
    calls = log.read_text().splitlines()
    assert calls and all("\t-mloc\tmodel/main_clnf_general.txt" in c for c in calls)
    assert all(("-au_static" in c) == (grouping == "static") for c in calls)  # the same flags for both sets
    if grouping == "frame":  # one FaceLandmarkImg call per set: each set is a single batch here
        assert len(calls) == 2


def test_score_stops_with_one_line_when_every_openface_frame_fails(synthetic, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STANDIN_MODE", "nocen")
    out = tmp_path / "scores.parquet"
    rc = _score(synthetic, out, "--openface-bin", str(STANDIN_DIR), "--grouping", "frame")
    err = [ln for ln in capsys.readouterr().err.replace("\r", "\n").splitlines() if "error" in ln]
    assert rc == 2 and len(err) == 1 and not out.exists()
    assert err[0].startswith("lacgan score: error: openface: every one of the ")
    assert "real frames failed" in err[0] and "Could not find CEN patch experts" in err[0]
    assert "try --openface-model model/main_clnf_general.txt" in err[0]


def test_score_and_augment_reject_bad_openface_options_in_one_line(synthetic, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("OPENFACE_FEATURE_EXTRACTION", raising=False)
    assert _score(synthetic, tmp_path / "s.parquet") == 2  # no OpenFace anywhere
    assert "FeatureExtraction not found" in capsys.readouterr().err
    assert _score(synthetic, tmp_path / "s.parquet", "--timeout", "0") == 2
    assert "timeout > 0" in capsys.readouterr().err
    rc = main(["augment", "--out", str(tmp_path / "a"), "--preset", "smoke", "--grouping", "frame"])
    err = capsys.readouterr().err
    assert rc == 2 and "without the OpenFace binary" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()  # refused before any step ran


def test_augment_prints_one_line_when_the_flow_fails_on_openface(tmp_path, capsys, monkeypatch):
    """The flow's score task raises DetectorFailed (test_flows.py runs that under Prefect); the CLI maps it."""
    import flows.augment
    from detectors.failures import DetectorFailed

    seen = {}

    def failing_flow(**kw):
        seen.update(kw)
        raise DetectorFailed("openface: every one of the 12 real frames failed; reason: openface: exit code 1: x")

    monkeypatch.setattr(flows.augment, "augment", failing_flow)
    rc = main(["augment", "--out", str(tmp_path / "a"), "--openface-bin", str(STANDIN_DIR), "--grouping", "frame",
               "--openface-model", "model/main_clnf_general.txt", "--timeout", "30"])
    err = capsys.readouterr().err
    assert rc == 2 and err == ("lacgan augment: error: openface: every one of the 12 real frames failed; reason: "
                               "openface: exit code 1: x\n")
    assert seen["openface_bin"] == str(STANDIN_DIR) and seen["openface_grouping"] == "frame"
    assert seen["openface_model"] == "model/main_clnf_general.txt" and seen["openface_timeout"] == 30.0
