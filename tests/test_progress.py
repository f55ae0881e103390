"""lacgan.progress: the line mode used inside flows (rate, ETA, losses), and the mode switch."""

import io

import pytest

from lacgan.progress import LogProgress, progress


def test_log_lines_carry_count_rate_eta_and_postfix():
    out = io.StringIO()
    bar = LogProgress(range(3, 6), total=6, desc="lacgan train", initial=3, every_s=0.0, out=out)
    seen = []
    for i in bar:
        seen.append(i)
        bar.set_postfix(G="1.250")
    assert seen == [3, 4, 5]
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # every_s = 0: one line per item
    assert lines[0].startswith("lacgan train: 4/6 (67%), ") and "it/s" in lines[0] and "ETA " in lines[0]
    assert lines[-1].startswith("lacgan train: 6/6 (100%), ") and lines[-1].endswith(", G=1.250")


def test_log_mode_is_quiet_between_intervals_but_always_reports_the_end():
    out = io.StringIO()
    for _ in LogProgress(range(50), total=50, desc="x", every_s=3600, out=out):
        pass
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]] and "50/50 (100%)" in out.getvalue()


def test_modes():
    assert list(progress(range(3), total=3, desc="d", mode=False)) == [0, 1, 2]  # False = off (a disabled tqdm)
    assert isinstance(progress(range(3), total=3, desc="d", mode="log"), LogProgress)
    with pytest.raises(ValueError, match="progress mode"):
        progress(range(3), total=3, desc="d", mode="loud")
