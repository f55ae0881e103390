"""lacgan.atomic: a write either replaces the file whole or leaves the old one, and leaves no temp file."""

import pytest

from lacgan.atomic import replacing, write_bytes, write_text


def test_write_replaces_whole_and_leaves_no_temp_file(tmp_path):
    p = tmp_path / "a.json"
    write_text(p, "old")
    write_text(p, "new")
    write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert p.read_text() == "new" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.json", "b.bin"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp(tmp_path):
    p = tmp_path / "a.parquet"
    p.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with replacing(p) as tmp:
            tmp.write_text("half")
            assert tmp.parent == p.parent and tmp.name.startswith(".a.parquet.") and tmp.name.endswith(".tmp")
            raise RuntimeError("disk full")
    assert p.read_text() == "old" and [f.name for f in tmp_path.iterdir()] == ["a.parquet"]


def test_two_writers_of_one_path_get_their_own_temp_files(tmp_path):
    with replacing(tmp_path / "x") as a, replacing(tmp_path / "x") as b:
        assert a != b
        a.write_text("a")
        b.write_text("b")
    assert (tmp_path / "x").read_text() == "a"  # the outer block ends last: its content stays
