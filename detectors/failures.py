"""Failed frames in a score table: count them per reason, and stop a step whose detector failed on every frame.

A detector never hides a failure as a zero score: a frame without a valid output has `status` = the reason
(e.g. "openface: no face found") and NaN scores. `failure_reasons` counts frames per reason (what reports
show beside each set's n); `require_scored` turns "every frame failed" into one clear error naming the
detector, the set and the most common reason, so that a misconfigured install ends the step with exit code
2 instead of writing a table of failures.
"""

from __future__ import annotations

import pandas as pd


class DetectorFailed(ValueError):
    """Every frame of a set failed for one detector; the message names the detector, set and top reason."""


def failure_reasons(df: pd.DataFrame) -> pd.Series:
    """Failed frames per reason (`status` != "ok"), most common first; a frame counts once."""
    per_frame = df.drop_duplicates("frame_id")["status"]  # a frame's status is the same on all its AU rows
    bad = per_frame[per_frame != "ok"]
    return bad.value_counts().rename("frames")


def summarise_failures(df: pd.DataFrame, most: int = 3) -> str:
    """"" when every frame is ok, else e.g. "3 of 40 frames failed: 2 openface: no face found; 1 ..."."""
    reasons = failure_reasons(df)
    if reasons.empty:
        return ""
    n = df["frame_id"].nunique()
    shown = "; ".join(f"{k} {reason}" for reason, k in reasons.head(most).items())
    more = f"; and {len(reasons) - most} other reasons" if len(reasons) > most else ""
    return f"{int(reasons.sum())} of {n} frames failed: {shown}{more}"


def require_scored(df: pd.DataFrame, detector: str, what: str = "frames") -> pd.DataFrame:
    """`df` unchanged when at least one frame has status "ok" (or there are no frames); else DetectorFailed."""
    n = df["frame_id"].nunique() if len(df) else 0
    if n == 0 or (df["status"] == "ok").any():
        return df
    reasons = failure_reasons(df)
    top, k = reasons.index[0], int(reasons.iloc[0])
    others = f" ({len(reasons) - 1} other reasons)" if len(reasons) > 1 else ""
    raise DetectorFailed(f"{detector}: every one of the {n} {what} failed; "
                         f"{'reason' if k == n else f'most common reason ({k} frames)'}: {top}{others}")
