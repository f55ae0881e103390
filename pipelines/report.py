"""The Table 1 report: real vs synthetic detection metrics per AU and detector, plus checks beyond the paper.

Report folder (all numbers can be recomputed from `scores.parquet`):

    table1.json   {detector: {"AU1": {real_f1, real_acc, synth_f1, synth_acc, gap_f1, gap_acc}, ..., "avg": {...}}}
                  values in percent, null where the detector does not support the AU; gap = real − synthesis
    table1.md     Markdown (when the data is BP4D: the paper's published values in parentheses)
    table1.csv    one row per detector and AU (+ paper_* columns for BP4D)
    edits.json    per detector and AU: edit success and off-target flips; identity and locality (see below)
    report.md     everything above in one page, with the figures
    scores.parquet  the long score table the numbers come from (pipelines.score.SCORES_SCHEMA)
    figures/      f1_gap.png, single_au_grid.png (Fig. 3 style), combos_grid.png (Fig. 5 style)

F1 and accuracy use only frames whose label is known (not -1) and whose score is valid (status "ok"), as
`detectors.metrics.au_metrics` defines them; Avg is the mean over the AUs the detector supports.

Beyond the paper, per detector and AU:
- edit success: among synthetic frames whose target differs from the state the detector sees on the source,
  the share where it sees the target state on the synthetic frame (also over all targeted frames);
- off-target flips: among synthetic frames where that AU was not asked to change (target -1, or target equal to
  the source's detected state), the share whose detected state differs between source and synthetic frame.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.metrics import au_metrics
from manifests.aus import AUS
from pipelines.paper_table1 import COLUMNS, PAPER_TABLE1, paper_row
from pipelines.score import read_scores

log = logging.getLogger("lacgan.report")

ROWS = tuple(f"AU{a}" for a in AUS) + ("avg",)
DASH = "−"


@dataclass(frozen=True)
class ReportConfig:
    checkpoint: str | None = None  # LAC-GAN checkpoint for the Fig. 3/5 grids (None: no grids)
    compare_paper: bool | None = None  # show the paper's Table 1 beside ours; None = when the dataset is BP4D
    identity_pairs: int = 64  # source/synthetic pairs for the dlib identity distance (0.15 s per descriptor)
    grid_faces: int = 3  # test faces in the figure grids
    seed: int = 0  # which pairs/faces are sampled


# ---- Table 1 ---------------------------------------------------------------------------------------------
def _metrics(df: pd.DataFrame, supported: list[int]) -> pd.DataFrame:
    """au_metrics for one detector and one set of the long score table."""
    frame_ids = np.sort(df["frame_id"].unique())
    lab = (df.pivot_table(index="frame_id", columns="au", values="label", aggfunc="first")
           .reindex(index=frame_ids, columns=list(AUS)).fillna(-1).to_numpy(np.int8))
    return au_metrics(lab, df, tuple(supported), frame_ids).set_index("au")


def table1(scores: pd.DataFrame, supported: dict[str, list[int]]) -> dict:
    """{detector: {"AU1".."AU24", "avg": {real_f1, real_acc, synth_f1, synth_acc, gap_f1, gap_acc} | None}}."""
    out = {}
    for det, aus in supported.items():
        d = scores[scores["detector"] == det]
        real = _metrics(d[d["set"] == "real"], aus)
        synth = _metrics(d[d["set"] == "synthetic"], aus)
        rows = {}
        for row in ROWS:
            key = "mean" if row == "avg" else row[2:]
            if row != "avg" and int(key) not in aus:
                rows[row] = None
                continue
            r = {"real_f1": real.at[key, "f1"], "real_acc": real.at[key, "acc"],
                 "synth_f1": synth.at[key, "f1"], "synth_acc": synth.at[key, "acc"]}
            r["gap_f1"], r["gap_acc"] = r["real_f1"] - r["synth_f1"], r["real_acc"] - r["synth_acc"]
            rows[row] = {k: (None if pd.isna(v) else float(v)) for k, v in r.items()}
        out[det] = rows
    return out


def _fmt(v) -> str:
    return DASH if v is None else f"{v:.1f}"


def table1_markdown(t1: dict, paper: bool = False) -> str:
    """The paper's layout: rows AU1..AU24 + Avg; per detector Real, Synthesis and Gaps (F1, Acc)."""
    dets = list(t1)
    head = ["AU"] + [f"{d} {m}" for d in dets for m in ("Real F1", "Real Acc", "Synth F1", "Synth Acc",
                                                         "Gap F1", "Gap Acc")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ROWS:
        cells = ["Avg" if row == "avg" else row]
        for d in dets:
            ours = t1[d][row]
            published = paper and d in PAPER_TABLE1  # the paper reports OpenFace and JAA-Net only
            pub = paper_row(d, row) if published else None
            for c in COLUMNS:
                cell = _fmt(None if ours is None else ours[c])
                if published:
                    cell += f" ({_fmt(None if pub is None else pub[c])})"
                cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    note = "\n\nValues in percent; gap = real − synthesis; − = AU not supported by the detector."
    if paper:
        note += " In parentheses: the paper's published Table 1 (BP4D; − where it reports nothing)."
    return "\n".join(lines) + note


def table1_frame(t1: dict, paper: bool = False) -> pd.DataFrame:
    rows = []
    for det, table in t1.items():
        for row in ROWS:
            r = {"detector": det, "au": row, **{c: (None if table[row] is None else table[row][c]) for c in COLUMNS}}
            if paper and det in PAPER_TABLE1:
                pub = paper_row(det, row) or {}
                r.update({f"paper_{c}": pub.get(c) for c in COLUMNS})
            rows.append(r)
    return pd.DataFrame(rows)


# ---- beyond the paper ----------------------------------------------------------------------------------
def edit_metrics(scores: pd.DataFrame, synth: pd.DataFrame, supported: dict[str, list[int]]) -> dict:
    """Per detector and AU: edit success and off-target flips (see module doc); `synth` is the synthetic
    manifest (plan_row, source_row, AU targets)."""
    out = {}
    for det, aus in supported.items():
        d = scores[(scores["detector"] == det) & (scores["status"] == "ok")]
        src = d[d["set"].isin(("real", "source"))].drop_duplicates(["frame_id", "au"])
        src = src.pivot(index="frame_id", columns="au", values="present")
        syn = d[d["set"] == "synthetic"].pivot(index="frame_id", columns="au", values="present")
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


def edits_markdown(edits: dict, fidelity: dict) -> str:
    lines = ["| AU | " + " | ".join(f"{d} edit success (changed) | {d} off-target flips" for d in edits) + " |",
             "|" + "---|" * (1 + 2 * len(edits))]
    for au in AUS:
        cells = [f"AU{au}"]
        for d in edits:
            e = edits[d][f"AU{au}"]
            cells += [DASH, DASH] if e is None else [
                f"{_fmt(e['success_changed'])} (n={e['n_changed']})", f"{_fmt(e['off_target_flips'])} (n={e['n_unchanged']})"]
        lines.append("| " + " | ".join(cells) + " |")
    loc, idn = fidelity.get("locality", {}), fidelity.get("identity", {})
    lines += ["", f"Locality: largest change of any pixel outside every AU region = "
              f"**{loc.get('max_change_outside_regions')}** over {loc.get('frames')} frames (must be 0)."]
    if idn.get("pairs"):
        lines.append(f"Identity (dlib descriptor distance, source vs synthetic, {idn['pairs']} pairs): mean "
                     f"{idn['mean_distance']:.3f}, median {idn['median_distance']:.3f}, max {idn['max_distance']:.3f};"
                     f" {100 * idn['same_person_share']:.1f}% below dlib's same-person threshold {idn['threshold']}.")
    return "\n".join(lines)


# ---- the report folder -----------------------------------------------------------------------------------
def _dataset(store_path) -> str:
    from pipelines.plan import store_frames

    return str(store_frames(store_path)["dataset"].iloc[0])


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(scores_path, synth_out, store_path, out_dir, cfg: ReportConfig = ReportConfig()) -> Path:
    """Compute and write the whole report folder (see module doc); returns the path of report.md."""
    from pipelines import fidelity, figures
    from pipelines.synth_store import open_images, read_parts

    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    scores, supported = read_scores(scores_path)
    if Path(scores_path).resolve() != (out_dir / "scores.parquet").resolve():
        shutil.copyfile(scores_path, out_dir / ".scores.parquet.tmp")
        os.replace(out_dir / ".scores.parquet.tmp", out_dir / "scores.parquet")
    dataset = _dataset(store_path)
    paper = dataset == "bp4d" if cfg.compare_paper is None else cfg.compare_paper
    t1 = table1(scores, supported)
    _write_text(out_dir / "table1.json", json.dumps(t1, indent=2))
    md = table1_markdown(t1, paper)
    _write_text(out_dir / "table1.md", md + "\n")
    table1_frame(t1, paper).to_csv(out_dir / ".table1.csv.tmp", index=False, float_format="%.4f")
    os.replace(out_dir / ".table1.csv.tmp", out_dir / "table1.csv")

    synth = read_parts(synth_out)
    images = open_images(synth_out)
    sources = synth["source_row"].to_numpy()
    fid = {"locality": fidelity.locality(store_path, images, sources),
           "identity": fidelity.identity(store_path, images, sources, cfg.identity_pairs, cfg.seed)}
    edits = edit_metrics(scores, synth, supported)
    _write_text(out_dir / "edits.json", json.dumps({"edits": edits, **fid}, indent=2))

    figs = [figures.f1_gap_chart(t1, out_dir / "figures" / "f1_gap.png")]
    if cfg.checkpoint:
        figs += figures.edit_grids(cfg.checkpoint, store_path, synth, out_dir / "figures", cfg.grid_faces, cfg.seed)
    meta = {"dataset": dataset, "scores": "scores.parquet", "synthetic": str(Path(synth_out).resolve()),
            "store": str(Path(store_path).resolve()), "frames": {s: int(scores.loc[scores["set"] == s, "frame_id"]
                                                                       .nunique()) for s in scores["set"].unique()},
            "checkpoint_sha256": sorted(synth["checkpoint_sha256"].unique().tolist()), "config": asdict(cfg)}
    _write_text(out_dir / "report.json", json.dumps(meta, indent=2))
    page = [f"# Table 1 report ({dataset})", "",
            f"Real test frames: {meta['frames'].get('real', 0)}; synthetic frames: {meta['frames'].get('synthetic', 0)}.",
            "", "## Table 1: detection on real vs synthetic frames", "", md, "",
            "## Beyond the paper: edits, identity, locality", "", edits_markdown(edits, fid), "", "## Figures", ""]
    page += [f"![{p.stem}](figures/{p.name})" for p in figs]
    report = out_dir / "report.md"
    _write_text(report, "\n".join(page) + "\n")
    log.info("report written to %s", report)
    return report
