"""Edit-level checks beyond Table 1: did each edit carry its AU, and did it leave the other AUs alone?

Per detector and AU, for a set of edited frames (synthetic, or the counterfactual frames as the ceiling):

- edit success: among frames whose target differs from the state the detector sees on the source, the share
  where it sees the target state on the edited frame (also over all targeted frames);
- off-target flips: among frames where that AU was not asked to change (target -1, or target equal to the
  source's detected state), the share whose detected state differs between source and edited frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from manifests.aus import AUS

DASH = "−"


def edit_metrics(scores: pd.DataFrame, synth: pd.DataFrame, supported: dict[str, list[int]],
                 edited_set: str = "synthetic") -> dict:
    """{detector: {"AU1": {success_changed, n_changed, success_all, n_targeted, off_target_flips, n_unchanged}
    | None}}; `synth` is the synthetic manifest (plan_row, source_row, AU targets)."""
    out = {}
    for det, aus in supported.items():
        d = scores[(scores["detector"] == det) & (scores["status"] == "ok")]
        src = d[d["set"].isin(("real", "source"))].drop_duplicates(["frame_id", "au"])
        src = src.pivot(index="frame_id", columns="au", values="present")
        syn = d[d["set"] == edited_set].pivot(index="frame_id", columns="au", values="present")
        per_au = {}
        for au in AUS:
            if au not in aus:
                per_au[f"AU{au}"] = None
                continue
            target = synth[f"AU{au}"].to_numpy()
            s_syn = syn.reindex(index=synth["plan_row"])[au].to_numpy() if au in syn else np.full(len(synth), np.nan)
            s_src = src.reindex(index=synth["source_row"])[au].to_numpy() if au in src else np.full(len(synth), np.nan)
            valid = ~np.isnan(s_syn) & ~np.isnan(s_src)
            targeted = valid & (target != -1)
            change = targeted & (target != s_src)
            keep = valid & ((target == -1) | (target == s_src))
            rate = lambda m, hit: None if m.sum() == 0 else float(100 * hit[m].mean())  # noqa: E731
            per_au[f"AU{au}"] = {
                "success_changed": rate(change, s_syn == target), "n_changed": int(change.sum()),
                "success_all": rate(targeted, s_syn == target), "n_targeted": int(targeted.sum()),
                "off_target_flips": rate(keep, s_syn != s_src), "n_unchanged": int(keep.sum()),
            }
        out[det] = per_au
    return out


def summarise(per_au: dict) -> dict:
    """Pooled over AUs (weighted by counts): {"success_changed", "n_changed", "off_target_flips", "n_unchanged"}."""
    rows = [r for r in per_au.values() if r is not None]
    pool = lambda rate, n: (None if sum(r[n] for r in rows) == 0 else  # noqa: E731
                            sum((r[rate] or 0) * r[n] for r in rows) / sum(r[n] for r in rows))
    return {"success_changed": pool("success_changed", "n_changed"), "n_changed": sum(r["n_changed"] for r in rows),
            "off_target_flips": pool("off_target_flips", "n_unchanged"),
            "n_unchanged": sum(r["n_unchanged"] for r in rows)}


def _fmt(v) -> str:
    return DASH if v is None else f"{v:.1f}"


def edits_markdown(edits: dict[str, dict]) -> str:
    """edits: {set label: edit_metrics(...)}; one column pair per detector and set."""
    cols = [(label, det) for label, e in edits.items() for det in e]
    head = ["AU"] + [f"{det} {label}: success (changed) / flips" for label, det in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for au in AUS:
        cells = [f"AU{au}"]
        for label, det in cols:
            e = edits[label][det][f"AU{au}"]
            cells.append(DASH if e is None else f"{_fmt(e['success_changed'])} (n={e['n_changed']}) / "
                         f"{_fmt(e['off_target_flips'])} (n={e['n_unchanged']})")
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["pooled"]
    for label, det in cols:
        s = summarise(edits[label][det])
        cells.append(f"{_fmt(s['success_changed'])} (n={s['n_changed']}) / {_fmt(s['off_target_flips'])} "
                     f"(n={s['n_unchanged']})")
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
