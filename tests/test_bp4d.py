"""BP4D reader on a real-layout tree built here from BP4D's documented conventions (not by the cohort writer),
plus the generic folder reader."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from manifests.aus import AU_COLUMNS
from manifests.bp4d import BP4DError, read_au_occ, read_bp4d
from manifests.folder import FolderError, read_folder
from manifests.schema import FRAME_SCHEMA, read_manifest, write_manifest

# BP4D's AU_OCC header: frame column `0`, then AU numbers, more AUs than the 12 the project uses.
BP4D_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 27, 28)


def _jpg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (120, 90, 80)).save(path)


def _occ(path, frames, value=lambda f, au: (f + au) % 2, header=None, extra="", trailing=False):
    """An AU_OCC file. `extra` adds a last column (e.g. an occlusion flag) with value 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = header or ["0", *map(str, BP4D_AUS)] + ([extra] if extra else [])
    rows = [",".join(head) + ("," if trailing else "")]
    for f in frames:
        vals = [str(f), *(str(value(f, au)) for au in BP4D_AUS)] + (["0"] if extra else [])
        rows.append(",".join(vals) + ("," if trailing else ""))
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture
def tree(tmp_path):
    """Two subjects, three sequences, BP4D's known variants, one missing image, non-subject folders."""
    root = tmp_path / "BP4D"
    occ = root / "AUCoding" / "AU_OCC"
    # F001/T1: zero-padded names, coded segment starting mid-sequence, frame 104 coded 9 for AU12.
    _occ(occ / "F001_T1.csv", range(101, 106), value=lambda f, au: 9 if (f == 104 and au == 12) else int(f > 102))
    for f in range(95, 110):
        _jpg(root / "F001" / "T1" / f"{f:04d}.jpg")
    # F001/T2: unpadded names, an occlusion column and a trailing empty column; frame 12 has no image.
    _occ(occ / "F001_T2.csv", [10, 11, 12], extra="Occlusion", trailing=True)
    for f in (10, 11):
        _jpg(root / "F001" / "T2" / f"{f}.jpg")
    # M002/T8: rows out of order and a blank line at the end.
    _occ(occ / "M002_T8.csv", [3, 1, 2])
    (occ / "M002_T8.csv").write_text((occ / "M002_T8.csv").read_text() + "\n\n")
    for f in (1, 2, 3):
        _jpg(root / "M002" / "T8" / f"{f:04d}.jpg")
    (root / "OpenFace_out" / "F001").mkdir(parents=True)
    (root / "notes").mkdir()
    (root / "README.txt").write_text("not data")
    return root


def test_reads_real_layout(tree, caplog):
    with caplog.at_level(logging.WARNING):
        df = read_bp4d(tree)
    assert list(df.columns) == [f.name for f in FRAME_SCHEMA]
    assert len(df) == 5 + 3 + 3
    assert df["row_id"].tolist() == list(range(11))
    assert (df["dataset"] == "bp4d").all()
    assert df[["subject", "task"]].drop_duplicates().values.tolist() == [["F001", "T1"], ["F001", "T2"],
                                                                         ["M002", "T8"]]
    t1 = df[df.task == "T1"]
    assert t1["frame"].tolist() == [101, 102, 103, 104, 105]
    assert t1["image_path"].tolist() == [f"F001/T1/{f:04d}.jpg" for f in range(101, 106)]
    assert (t1["AU1"].to_numpy() == [0, 0, 1, 1, 1]).all()
    assert (t1["AU12"].to_numpy() == [0, 0, 1, -1, 1]).all()  # 9 -> -1, the row is kept
    for c in AU_COLUMNS:
        assert df[c].dtype == np.int8
    t2 = df[df.task == "T2"]
    assert t2["image_path"].tolist() == ["F001/T2/10.jpg", "F001/T2/11.jpg", "F001/T2/12.jpg"]
    assert t2["status"].tolist() == ["ok", "ok", "missing image: F001/T2/12.jpg"]
    # AU labels of T2 follow (frame + au) % 2; AU2 of frame 10 -> 0, AU1 of frame 10 -> 1.
    assert t2["AU1"].tolist() == [1, 0, 1] and t2["AU2"].tolist() == [0, 1, 0]
    m = df[df.subject == "M002"]
    assert m["frame"].tolist() == [1, 2, 3]  # sorted, blank lines ignored
    assert (df.loc[df.subject == "F001", "fold"] == 1).all()  # JAA-Net part 1
    assert (df.loc[df.subject == "M002", "fold"] == 2).all()  # JAA-Net part 2
    warnings = [r.getMessage() for r in caplog.records if "not subjects" in r.getMessage()]
    assert len(warnings) == 1 and "OpenFace_out" in warnings[0] and "notes" in warnings[0]


def test_manifest_round_trip(tree, tmp_path):
    df = read_bp4d(tree)
    path = write_manifest(df, tmp_path / "m.parquet", root=tree)
    back = read_manifest(path)
    pd.testing.assert_frame_equal(back, df)


@pytest.mark.parametrize("header, message", [
    (["frame", "1", "2"], "first column must be 0"),
    (["0", "1", "2", "4", "6", "7", "10", "12", "14", "15", "17", "23"], "AU columns [24] are missing"),
    (["0", *map(str, BP4D_AUS), "comment"], "column 25 is 'comment'"),
    (["0", "1", "1", *map(str, BP4D_AUS[1:])], "AU column 1 appears twice"),
])
def test_bad_header(tmp_path, header, message):
    path = tmp_path / "F001_T1.csv"
    path.write_text(",".join(header) + "\n" + ",".join(["1"] + ["0"] * (len(header) - 1)) + "\n")
    with pytest.raises(BP4DError, match="F001_T1.csv, line 1: bad header") as e:
        read_au_occ(path)
    assert message in str(e.value)


@pytest.mark.parametrize("bad, message", [
    ("2", "AU4 value '2' is not 0, 1 or 9"),
    ("", "AU4 value '' is not 0, 1 or 9"),
    ("x", "AU4 value 'x' is not 0, 1 or 9"),
])
def test_bad_value(tmp_path, bad, message):
    path = tmp_path / "F001_T1.csv"
    _occ(path, [1, 2, 3], value=lambda f, au: bad if (f == 3 and au == 4) else 0)
    with pytest.raises(BP4DError, match=r"F001_T1.csv, line 4: ") as e:
        read_au_occ(path)
    assert message in str(e.value)


def test_bad_value_in_unused_au_is_tolerated(tmp_path):
    path = tmp_path / "F001_T1.csv"
    _occ(path, [1, 2], value=lambda f, au: 5 if au == 27 else 1)
    frames, labels = read_au_occ(path)
    assert frames.tolist() == [1, 2] and (labels == 1).all()


def test_bad_frame_numbers(tmp_path):
    path = tmp_path / "F001_T1.csv"
    _occ(path, [1, 2, 2])
    with pytest.raises(BP4DError, match=r"line 4: frame 2 is labelled twice"):
        read_au_occ(path)
    _occ(path, [1, "2a"], value=lambda f, au: 0)
    with pytest.raises(BP4DError, match=r"line 3: frame number '2a'"):
        read_au_occ(path)


def test_unknown_subject_format(tree):
    _occ(tree / "AUCoding" / "AU_OCC" / "S01_T1.csv", [1])
    with pytest.raises(BP4DError, match=r"S01_T1.csv: unknown subject id format 'S01'"):
        read_bp4d(tree)


def test_empty_root_and_missing_au_occ(tmp_path):
    with pytest.raises(BP4DError, match="empty directory"):
        read_bp4d(tmp_path)
    (tmp_path / "F001" / "T1").mkdir(parents=True)
    with pytest.raises(BP4DError, match=r"no AUCoding/AU_OCC/ folder"):
        read_bp4d(tmp_path)
    (tmp_path / "AUCoding" / "AU_OCC").mkdir(parents=True)
    with pytest.raises(BP4DError, match="no AU occurrence files"):
        read_bp4d(tmp_path)
    with pytest.raises(BP4DError, match="not a directory"):
        read_bp4d(tmp_path / "nope")


def test_ambiguous_and_missing_folder(tree):
    _jpg(tree / "F001" / "T1" / "101.jpg")  # both 0101.jpg and 101.jpg now exist
    _occ(tree / "AUCoding" / "AU_OCC" / "F002_T3.csv", [7])  # no image folder at all
    df = read_bp4d(tree)
    st = dict(zip(zip(df.subject, df.task, df.frame), df.status))
    assert st[("F001", "T1", 101)] == "ambiguous image: F001/T1/ holds 0101.jpg and 101.jpg"
    assert st[("F002", "T3", 7)] == "missing image: F002/T3/0007.jpg (no folder F002/T3)"


# ---- generic folder + CSV --------------------------------------------------------------------------------

def test_folder_reader(tmp_path, caplog):
    root = tmp_path / "myset"
    for p in ("s01/a.png", "s01/b.png", "s02/c.png"):
        _jpg(root / p)
    csv = tmp_path / "labels.csv"
    csv.write_text("image,AU1,AU2,4,AU6,AU7,AU12,AU27\n"
                   "s01/a.png,1,0,9,0,1,-1,3\n"
                   "s01/b.png,0,0,0,0,0,1,0\n"
                   "s02/c.png,0,1,0,1,0,0,0\n"
                   "s03/d.png,0,0,0,0,0,0,0\n")
    with caplog.at_level(logging.WARNING):
        df = read_folder(root, csv)
    assert (df["dataset"] == "folder:myset").all()
    assert df["subject"].tolist() == ["s01", "s01", "s02", "s03"]
    assert df["frame"].tolist() == [0, 1, 0, 0]  # non-numeric names: position in subject
    assert df.loc[0, ["AU1", "AU2", "AU4", "AU12", "AU24"]].tolist() == [1, 0, -1, -1, -1]
    assert df["status"].tolist()[:3] == ["ok"] * 3 and df["status"][3] == "missing image: s03/d.png"
    assert sorted(df.groupby("subject")["fold"].first().tolist()) == [1, 2, 3]
    assert any("[10, 14, 15, 17, 23, 24]" in r.getMessage() for r in caplog.records)


def test_folder_reader_errors(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    csv = tmp_path / "l.csv"
    csv.write_text("img,AU1\nx.png,1\n")
    with pytest.raises(FolderError, match="no `image` column"):
        read_folder(root, csv)
    csv.write_text("image,AU1\nx.png,3\n")
    with pytest.raises(FolderError, match=r"l.csv, line 2: AU1 value '3' is not 0, 1, 9 or -1"):
        read_folder(root, csv)
    csv.write_text("image,AU27\nx.png,1\n")
    with pytest.raises(FolderError, match="none of BP4D's 12 AUs"):
        read_folder(root, csv)
    csv.write_text("image,AU1\n../x.png,1\n")
    with pytest.raises(FolderError, match="relative to the root"):
        read_folder(root, csv)
    csv.write_text("image,subject,frame,AU1\nx.png,s,1,1\ny.png,s,q,1\n")
    with pytest.raises(FolderError, match=r"line 3: frame 'q'"):
        read_folder(root, csv)


def _cli(argv):
    import argparse

    from pipelines.cli_data import register

    parser = argparse.ArgumentParser(prog="lacgan")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_ingest_command(tree, tmp_path, capsys):
    out = tmp_path / "m.parquet"
    assert _cli(["ingest", "--dataset", "bp4d", "--root", str(tree), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "dataset bp4d: 2 subjects, 3 sequences, 11 labelled frames (10 ok)" in text
    assert "fold 1: 1 subjects (F001), 8 frames" in text and "fold 2: 1 subjects (M002), 3 frames" in text
    assert "status 'missing image': 1 frames (e.g. missing image: F001/T2/12.jpg)" in text
    assert len(read_manifest(out)) == 11
    (tree / "AUCoding" / "AU_OCC" / "F001_T1.csv").write_text("frame,1\n1,0\n")
    assert _cli(["ingest", "--dataset", "bp4d", "--root", str(tree), "--out", str(out)]) == 2
    assert "F001_T1.csv, line 1: bad header" in capsys.readouterr().err
    assert len(read_manifest(out)) == 11  # the earlier manifest is untouched
