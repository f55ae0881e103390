"""Per-AU F1 and accuracy against labels, with the always-present baseline beside them.

Frames labelled unknown (-1) are dropped per AU, as are frames whose detector output is missing for that AU
(a failed OpenFace frame). AUs a detector does not support get NaN (reports print "−"), and the mean is taken
over the supported AUs only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from manifests.aus import AUS


def _as_matrix(present, frame_ids, aus) -> np.ndarray:
    if isinstance(present, pd.DataFrame):
        if frame_ids is None:
            raise ValueError("au_metrics: a long score table needs the frame_ids of the label rows")
        from detectors.base import presence_matrix

        ok = present[present["status"] == "ok"] if "status" in present else present
        return presence_matrix(ok, frame_ids, aus)
    m = np.asarray(present, dtype=np.float64)
    if m.shape[1] != len(aus):
        raise ValueError(f"au_metrics: present must have {len(aus)} columns (AUS order), got {m.shape}")
    return m


def au_metrics(labels: np.ndarray, present, supported_aus: tuple[int, ...] = AUS,
               frame_ids: np.ndarray | None = None) -> pd.DataFrame:
    """labels (n, 12) int8 in AUS order; present (n, 12) {1, 0} in AUS order, or a long score table (then
    `frame_ids` (n,) gives the frame of each label row). Returns one row per AU and a final "mean" row:

        au, n (frames scored), positives, f1, acc, baseline_f1, baseline_acc   (F1 / acc in percent)
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != len(AUS):
        raise ValueError(f"au_metrics: labels must be (n, {len(AUS)}), got {labels.shape}")
    pred = _as_matrix(present, frame_ids, AUS)
    if pred.shape[0] != labels.shape[0]:
        raise ValueError(f"au_metrics: {labels.shape[0]} label rows but {pred.shape[0]} prediction rows")
    rows = []
    for j, au in enumerate(AUS):
        y = labels[:, j]
        keep = y != -1
        if au in supported_aus:  # frames without a valid output for this AU are not scored
            keep &= ~np.isnan(pred[:, j])
        yt = y[keep].astype(int)
        row = {"au": str(au), "n": int(keep.sum()), "positives": int(yt.sum()),
               "f1": np.nan, "acc": np.nan, "baseline_f1": np.nan, "baseline_acc": np.nan}
        if keep.any():
            row["baseline_f1"] = 100 * f1_score(yt, np.ones_like(yt), zero_division=0)
            row["baseline_acc"] = 100 * accuracy_score(yt, np.ones_like(yt))
            if au in supported_aus:
                yp = pred[keep, j].astype(int)
                row["f1"] = 100 * f1_score(yt, yp, zero_division=0)
                row["acc"] = 100 * accuracy_score(yt, yp)
        rows.append(row)
    df = pd.DataFrame(rows)
    sup = df[df["au"].isin([str(a) for a in supported_aus])]
    mean = {"au": "mean", "n": int(sup["n"].sum()), "positives": int(sup["positives"].sum()),
            **{c: float(sup[c].mean()) for c in ("f1", "acc", "baseline_f1", "baseline_acc")}}
    return pd.concat([df, pd.DataFrame([mean])], ignore_index=True)


def format_table(df: pd.DataFrame, title: str = "") -> str:
    """Markdown table of `au_metrics` output; NaN prints as "−"."""
    cols = ["au", "n", "positives", "f1", "acc", "baseline_f1", "baseline_acc"]
    fmt = lambda v: "−" if isinstance(v, float) and np.isnan(v) else (f"{v:.1f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ([f"### {title}", ""] if title else []) + ["| " + " | ".join(cols) + " |",
                                                       "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines)
