"""Table 1 with the baselines that keep it honest, computed from the long score table alone.

Per detector and AU (and `mean`, the mean over the AUs the detector supports), each cell `{f1, acc, n}` in
percent, n = frames the cell averages (label known, score valid; for `mean`, frames of the set):

    real            the held-out fold's real frames against their labels (the paper's "Real")
    synthetic       the synthetic frames against their target labels (the paper's "Synthesis")
    gap             real − synthetic (the paper's "Gaps")
    unedited        each synthetic frame's SOURCE frame, unedited, against that synthetic frame's targets: what a
                    generator that changes nothing gets (the floor)
    edit_gain       synthetic − unedited: what the edits add
    counterfactual  the cohort's own rendering of each source with its targets (pipelines/counterfactual.py)
                    against the targets: what a perfect generator gets (the ceiling); None when not available
    always_present  predicting every AU present on the real frames scored in `real`

and per detector: `edit_quality_index` = (synthetic − unedited) / (counterfactual − unedited) on mean F1 (1 for a
perfect generator, 0 for one that changes nothing; None when there is no counterfactual or its distance to the
floor is under `MIN_SPAN` points), `n_failed` {set: frames without a valid score}, `sets` (counts: frames, failed
frames and their top reasons, label and detected positives per AU), and the detector's `grouping` (OpenFace: how
frames were grouped; None for detectors without one).

F1 and accuracy are `detectors.metrics.au_metrics` (scikit-learn): frames labelled -1 are dropped per AU, as are
frames whose score for that AU is not valid.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from detectors.metrics import au_metrics
from manifests.aus import AUS

ROWS = tuple(f"AU{a}" for a in AUS) + ("mean",)
CELLS = ("real", "synthetic", "gap", "unedited", "edit_gain", "counterfactual", "always_present")
MIN_SPAN = 1.0  # F1 points between counterfactual and unedited below which the edit-quality index is undefined
TOP_REASONS = 3


def set_scores(d: pd.DataFrame, set_name: str) -> pd.DataFrame:
    return d[d["set"] == set_name]


def unedited_scores(d: pd.DataFrame, synth: pd.DataFrame) -> pd.DataFrame:
    """One detector's scores of each synthetic frame's source, re-keyed to the plan row and labelled with the
    synthetic frame's targets. `synth`: the synthetic manifest (plan_row, source_row, AU targets)."""
    src = d[d["set"].isin(("real", "source"))].drop_duplicates(["frame_id", "au"])
    src = src.rename(columns={"frame_id": "source_row"}).drop(columns=["label", "set"])
    targets = synth.melt(id_vars=["plan_row", "source_row"], value_vars=[f"AU{a}" for a in AUS],
                         var_name="au", value_name="label")
    targets["au"] = targets["au"].str[2:].astype("int8")
    out = targets.merge(src, on=["source_row", "au"], how="inner")
    return out.rename(columns={"plan_row": "frame_id"}).assign(set="unedited")


def _metrics(df: pd.DataFrame, aus: list[int]) -> pd.DataFrame:
    """au_metrics of one set of one detector's long table; indexed by AU ("1", ..., "mean")."""
    frame_ids = np.sort(df["frame_id"].unique())
    lab = (df.pivot_table(index="frame_id", columns="au", values="label", aggfunc="first")
           .reindex(index=frame_ids, columns=list(AUS)).fillna(-1).to_numpy(np.int8))
    return au_metrics(lab, df, tuple(aus), frame_ids).set_index("au")


def _cell(m: pd.DataFrame | None, key: str, frames: int, baseline: bool = False) -> dict | None:
    if m is None:
        return None
    f1, acc = ("baseline_f1", "baseline_acc") if baseline else ("f1", "acc")
    n = frames if key == "mean" else int(m.at[key, "n"])
    v = lambda x: None if pd.isna(x) else float(x)  # noqa: E731
    return {"f1": v(m.at[key, f1]), "acc": v(m.at[key, acc]), "n": n}


def _diff(a: dict | None, b: dict | None) -> dict | None:
    if a is None or b is None:
        return None
    sub = lambda x, y: None if x is None or y is None else x - y  # noqa: E731
    return {"f1": sub(a["f1"], b["f1"]), "acc": sub(a["acc"], b["acc"])}


def set_counts(df: pd.DataFrame) -> dict:
    """Frames, failed frames (status != ok) with the top reasons, label and detected positives per AU."""
    frames = df["frame_id"].nunique()
    bad = df[df["status"] != "ok"]
    reasons = bad.drop_duplicates("frame_id")["status"].value_counts().head(TOP_REASONS)
    ok = df[df["status"] == "ok"]
    return {"frames": int(frames), "failed": int(bad["frame_id"].nunique()),
            "top_failures": {str(k): int(v) for k, v in reasons.items()},
            "label_positives": {f"AU{a}": int(((df["au"] == a) & (df["label"] == 1)).sum()) for a in AUS},
            "detected_positives": {f"AU{a}": int(((ok["au"] == a) & (ok["present"] == 1)).sum()) for a in AUS}}


def edit_quality_index(synthetic: float | None, unedited: float | None, counterfactual: float | None
                       ) -> float | None:
    """(synthetic − unedited) / (counterfactual − unedited) on mean F1; None when undefined (see module doc)."""
    if None in (synthetic, unedited, counterfactual) or counterfactual - unedited < MIN_SPAN:
        return None
    return (synthetic - unedited) / (counterfactual - unedited)


def detector_table(d: pd.DataFrame, aus: list[int], synth: pd.DataFrame, grouping: str | None = None) -> dict:
    """Table 1 of one detector (see module doc); `d` is that detector's part of the long score table."""
    sets = {"real": set_scores(d, "real"), "synthetic": set_scores(d, "synthetic"),
            "unedited": unedited_scores(d, synth)}
    if (d["set"] == "counterfactual").any():
        sets["counterfactual"] = set_scores(d, "counterfactual")
    metrics = {k: _metrics(v, aus) for k, v in sets.items()}
    frames = {k: int(v.loc[v["status"] == "ok", "frame_id"].nunique()) for k, v in sets.items()}
    rows = {}
    for row in ROWS:
        key = "mean" if row == "mean" else row[2:]
        if row != "mean" and int(key) not in aus:
            rows[row] = None
            continue
        c = {name: _cell(metrics.get(name), key, frames.get(name, 0)) for name in ("real", "synthetic", "unedited",
                                                                              "counterfactual")}
        rows[row] = {"real": c["real"], "synthetic": c["synthetic"], "gap": _diff(c["real"], c["synthetic"]),
                     "unedited": c["unedited"], "edit_gain": _diff(c["synthetic"], c["unedited"]),
                     "counterfactual": c["counterfactual"],
                     "always_present": _cell(metrics["real"], key, frames["real"], baseline=True)}
    mean = rows["mean"]
    eqi = edit_quality_index(mean["synthetic"]["f1"], mean["unedited"]["f1"],
                             None if mean["counterfactual"] is None else mean["counterfactual"]["f1"])
    counts = {k: set_counts(v) for k, v in sets.items()}
    return {**rows, "edit_quality_index": eqi, "n_failed": {k: v["failed"] for k, v in counts.items()},
            "sets": counts, "grouping": grouping}


def table1(scores: pd.DataFrame, supported: dict[str, list[int]], synth: pd.DataFrame,
           settings: dict | None = None) -> dict:
    """{detector: detector_table(...)} for every detector of the score table."""
    settings = settings or {}
    out = {}
    for det, aus in supported.items():
        s = settings.get(det) or {}
        out[det] = detector_table(scores[scores["detector"] == det], aus, synth, s.get("grouping"))
        out[det]["training"] = s.get("training")  # trainable detectors: epochs planned / done, stopped early?
    return out


def average_tables(tables: list[dict]) -> dict:
    """Table 1 averaged over folds (`--folds all`): per detector, AU and cell the mean of f1 / acc over the folds
    that have the cell, n summed; the index recomputed from the averaged means; counts summed per set."""
    out = {}
    for det in tables[0]:
        per = [t[det] for t in tables if det in t]
        rows = {}
        for row in ROWS:
            if all(p[row] is None for p in per):
                rows[row] = None
                continue
            rows[row] = {c: _mean_cells([p[row][c] for p in per if p[row] is not None]) for c in CELLS}
        m = rows["mean"]
        eqi = edit_quality_index(*(None if m[c] is None else m[c]["f1"] for c in ("synthetic", "unedited",
                                                                                 "counterfactual")))
        n_failed = {}
        for p in per:
            for k, v in p["n_failed"].items():
                n_failed[k] = n_failed.get(k, 0) + v
        out[det] = {**rows, "edit_quality_index": eqi, "n_failed": n_failed, "sets": {}, "grouping": per[0]["grouping"],
                    "folds": len(per)}
    return out


def _mean_cells(cells: list[dict | None]) -> dict | None:
    cells = [c for c in cells if c is not None]
    if not cells:
        return None
    mean = lambda k: (None if any(c[k] is None for c in cells) else float(np.mean([c[k] for c in cells])))  # noqa: E731
    out = {"f1": mean("f1"), "acc": mean("acc")}
    if all("n" in c for c in cells):
        out["n"] = int(sum(c["n"] for c in cells))
    return out
