"""`lacgan detect train|score` end to end on the tiny aligned store (hogsvm: fast; openface: the test stand-in)."""

from pathlib import Path

import numpy as np

from detectors.base import read_detector_scores
from detectors.frames import FrameSource
from flows.cli import main

STANDIN = Path(__file__).parent / "openface_standin" / "FeatureExtraction"


def test_detect_train_then_score_writes_parquet_and_prints_metrics(aligned_store, tmp_path, capsys):
    out = tmp_path / "hog"
    assert main(["detect", "train", "--detector", "hogsvm", "--store", str(aligned_store), "--out", str(out)]) == 0
    assert "held-out fold 3" in capsys.readouterr().out
    scores = tmp_path / "s.parquet"
    rc = main(["detect", "score", "--detector", "hogsvm", "--weights", str(out), "--store", str(aligned_store),
               "--out", str(scores), "--fold", "3"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| mean |" in printed and "baseline_f1" in printed
    df, info = read_detector_scores(scores)
    fs = FrameSource.from_store(aligned_store, fold=3)
    assert info["detector"] == "hogsvm" and set(df["frame_id"]) == set(fs.frame_ids.tolist())


def test_detect_score_openface_standin_records_grouping(aligned_store, tmp_path, capsys):
    scores = tmp_path / "of.parquet"
    rc = main(["detect", "score", "--detector", "openface", "--openface-bin", str(STANDIN), "--grouping", "static",
               "--store", str(aligned_store), "--out", str(scores), "--fold", "1"])
    assert rc == 0
    df, info = read_detector_scores(scores)
    assert info["settings"]["grouping"] == "static" and info["settings"]["au_models"] == "static"
    assert 24 not in set(df["au"]) and (df["status"] == "ok").all()
    assert "| 24 |" in capsys.readouterr().out  # AU24 row printed with "−" for the detector


def test_detect_score_openface_frame_grouping_counts_partial_failures(aligned_store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STANDIN_FACES", "2")
    scores = tmp_path / "of.parquet"
    rc = main(["detect", "score", "--detector", "openface", "--openface-bin", str(STANDIN.parent), "--grouping",
               "frame", "--store", str(aligned_store), "--out", str(scores), "--fold", "1"])
    assert rc == 0
    df, info = read_detector_scores(scores)
    assert info["settings"]["grouping"] == "frame" and info["settings"]["executable"].endswith("FaceLandmarkImg")
    assert (df["status"] == "ok").all() and "frames failed" not in capsys.readouterr().out
    monkeypatch.setenv("STANDIN_FAIL_FRAME", "3")  # one frame of each sequence: no face tracked
    rc = main(["detect", "score", "--detector", "openface", "--openface-bin", str(STANDIN), "--store",
               str(aligned_store), "--out", str(scores), "--fold", "1"])
    n_seq = FrameSource.from_store(aligned_store, fold=1).sequence_groups().__len__()
    assert rc == 0 and f"({n_seq} of " in capsys.readouterr().out


def test_detect_score_openface_that_fails_on_every_sequence_exits_2(aligned_store, tmp_path, capsys, monkeypatch):
    """Issue 12: a binary that crashes on every sequence used to exit 0 and print a table of zeros."""
    scores = tmp_path / "of.parquet"
    for mode, reason in (("exit1", "exit code 1: stand-in: simulated failure"),
                         ("nocen", "try --openface-model model/main_clnf_general.txt")):
        monkeypatch.setenv("STANDIN_MODE", mode)
        rc = main(["detect", "score", "--detector", "openface", "--openface-bin", str(STANDIN), "--store",
                   str(aligned_store), "--out", str(scores), "--fold", "1", "--timeout", "30"])
        out, err = capsys.readouterr()
        lines = [ln for ln in err.replace("\r", "\n").splitlines() if "error" in ln]  # besides the progress bar
        assert rc == 2 and len(lines) == 1 and "| mean |" not in out
        assert lines[0].startswith("error: openface: every one of the ") and reason in lines[0]
        assert not scores.exists()  # nothing written


def test_detect_errors_are_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENFACE_FEATURE_EXTRACTION", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    rc = main(["detect", "score", "--detector", "openface", "--store", str(tmp_path / "none.zarr"),
               "--out", str(tmp_path / "x.parquet")])
    err = capsys.readouterr().err
    assert rc == 2 and "OPENFACE_FEATURE_EXTRACTION" in err
    rc = main(["detect", "score", "--detector", "hogsvm", "--weights", str(tmp_path), "--store", "s.zarr",
               "--out", str(tmp_path / "x.parquet")])
    assert rc == 2 and "hogsvm.npz" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


def test_detect_score_openface_crashing_on_every_sequence_or_batch_exits_2(aligned_store, tmp_path, capsys,
                                                                          monkeypatch):
    """Issue 12: an OpenFace build that crashes (SIGSEGV: no output, a negative return code) on every call."""
    monkeypatch.setenv("STANDIN_MODE", "crash")
    scores = tmp_path / "of.parquet"
    for grouping, what in (("sequence", "frames"), ("frame", "frames")):
        rc = main(["detect", "score", "--detector", "openface", "--openface-bin", str(STANDIN.parent), "--grouping",
                   grouping, "--store", str(aligned_store), "--out", str(scores), "--fold", "1"])
        out, err = capsys.readouterr()
        lines = [ln for ln in err.replace("\r", "\n").splitlines() if "error" in ln]
        assert rc == 2 and len(lines) == 1 and "| mean |" not in out and not scores.exists(), (grouping, err)
        assert lines[0].startswith(f"error: openface: every one of the ") and f" {what} failed" in lines[0]
        assert "killed by signal SIGSEGV (OpenFace crashed)" in lines[0]


def test_detect_score_openface_crashing_on_one_sequence_counts_it(aligned_store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STANDIN_MODE", "crash")
    monkeypatch.setenv("STANDIN_ONLY", "seq00001")  # only the second sequence's call crashes
    scores = tmp_path / "of.parquet"
    rc = main(["detect", "score", "--detector", "openface", "--openface-bin", str(STANDIN), "--store",
               str(aligned_store), "--out", str(scores), "--fold", "1"])
    groups = list(FrameSource.from_store(aligned_store, fold=1).sequence_groups().values())
    df, _ = read_detector_scores(scores)
    crashed = df.drop_duplicates("frame_id")["status"].str.contains("SIGSEGV")
    assert rc == 0 and crashed.sum() == len(groups[1]) < len(crashed)
    assert f"({len(groups[1])} of {len(crashed)} frames failed: {len(groups[1])} openface: killed by signal SIGSEGV" \
        in capsys.readouterr().out


def test_detect_score_jaanet_config_with_an_unknown_field_is_one_line(aligned_store, tmp_path, capsys):
    import json

    from detectors.jaanet.config import PRESETS, config_json

    weights = tmp_path / "jaanet"
    weights.mkdir()
    (weights / "jaanet.safetensors").write_bytes(b"")  # never read: the config is refused first
    cfg = {**config_json(PRESETS["cpu"]), "lr_gama": 0.1}
    (weights / "config.json").write_text(json.dumps({"detector": "jaanet", "config": cfg}))
    rc = main(["detect", "score", "--detector", "jaanet", "--weights", str(weights), "--store", str(aligned_store),
               "--out", str(tmp_path / "s.parquet")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and not (tmp_path / "s.parquet").exists()
    assert err[0].startswith(f"error: {weights / 'config.json'}: unknown JaaNetConfig fields ['lr_gama']")


def test_detect_train_config_file_typo_or_wrong_type_is_one_line_before_any_work(aligned_store, tmp_path, capsys):
    """`detect train --config FILE` (what the augment flow hands its training step): a misspelt field or a value
    of the wrong type exits 2 naming the file and the field, and nothing is written."""
    import json

    from detectors.jaanet.config import PRESETS, config_json

    for name, change, field in (("typo", {"epoch": 2}, "jaanet.epoch: unknown field"),
                                ("type", {"epochs": "two"}, "jaanet.epochs: expected an integer")):
        cfg = tmp_path / f"{name}.json"
        cfg.write_text(json.dumps({**config_json(PRESETS["demo"]), **change}))
        out = tmp_path / f"out-{name}"
        rc = main(["detect", "train", "--detector", "jaanet", "--store", str(aligned_store), "--out", str(out),
                   "--config", str(cfg)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and not out.exists()
        assert err[0].startswith(f"error: {cfg}: {field}"), err[0]
    rc = main(["detect", "train", "--detector", "hogsvm", "--store", str(aligned_store), "--out", str(tmp_path / "h"),
               "--epochs", "3"])  # HOG+SVM has no epochs: refused, not ignored
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "hogsvm config.epochs: unknown field of HogSvmConfig" in err
