"""The Table 1 report folder: Table 1 with its floor and ceiling, counts, edit checks, pixel checks and figures.

Report folder (every number can be recomputed from `scores.parquet`, the images and the manifests):

    table1.json   pipelines.table1's dict: per detector and AU (and "mean") the cells real, synthetic, gap,
                  unedited, edit_gain, counterfactual (null when not available), always_present, each {f1, acc, n};
                  per detector edit_quality_index, n_failed per set, sets (counts), grouping
    table1.md     one Markdown table per detector (when the data is BP4D: the paper's published values in
                  parentheses), and the summary of mean F1 per detector
    table1.csv    one row per detector and AU: <cell>_f1, <cell>_acc, <cell>_n (+ paper_* columns for BP4D)
    edits.json    edit success / off-target flips (synthetic, and counterfactual as their ceiling), locality
                  (change outside every AU region: largest, mean share of pixels > 0 and > 8 grey levels), identity,
                  and the pixel error against the counterfactual frames
    outside_change.npz  fidelity.outside_change's maps: per pixel the share of frames changed outside the
                  regions (> 0, > 8), and the mean source face
    report.md     everything above on one page, with the figures
    report.json   what the report was made from (sets, source policy, test fold, checkpoint hashes)
    scores.parquet  the long score table the numbers come from (pipelines.score.SET_SCORES_SCHEMA)
    figures/      f1_sets.png (F1 per AU and set, per detector), outside_change.png (where pixels outside the
                  AU regions changed), single_au_grid.png (Fig. 3 style),
                  combos_grid.png (Fig. 5 style), counterfactual_grid.png (source | synthetic | counterfactual)
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lacgan.atomic import replacing, write_text as _write_text
from manifests.aus import AUS
from pipelines.edits import DASH, edit_metrics, edits_markdown, summarise
from pipelines.paper_table1 import PAPER_TABLE1, paper_cell
from pipelines.score import read_set_scores_info
from pipelines.table1 import CELLS, ROWS, average_tables, table1

log = logging.getLogger("lacgan.report")

OUTSIDE_MAPS = "outside_change.npz"  # report file: where pixels outside every AU region changed (per-pixel shares)

LABELS = {"real": "Real", "synthetic": "Synth", "gap": "Gap", "unedited": "Unedited", "edit_gain": "Edit gain",
          "counterfactual": "Counterf.", "always_present": "Always"}


@dataclass(frozen=True)
class ReportConfig:
    checkpoint: str | None = None  # LAC-GAN (or GANimation) checkpoint for the Fig. 3/5 grids (None: no grids)
    compare_paper: bool | None = None  # show the paper's Table 1 beside ours; None = when the dataset is BP4D
    identity_pairs: int = 64  # source/synthetic pairs for the dlib identity distance (0.15 s per descriptor)
    grid_faces: int = 3  # test faces in the figure grids
    seed: int = 0  # which pairs/faces are sampled
    regions: str | None = None  # AU region rule for locality and the counterfactual error; None = the rule of the
    #                             synthetic set's generator (its checkpoint), the reference rule for GANimation


# ---- Markdown and CSV ----------------------------------------------------------------------------------------
def _fmt(v) -> str:
    return DASH if v is None else f"{v:.1f}"


def _pair(cell: dict | None) -> list[str]:
    return [DASH, DASH] if cell is None else [_fmt(cell["f1"]), _fmt(cell["acc"])]


def detector_markdown(det: str, t: dict, paper: bool = False, cf_note: str | None = None) -> str:
    """One detector's Table 1: per AU F1/Acc of each cell, and the n every cell averages (always-present: real's)."""
    published = paper and det in PAPER_TABLE1  # the paper reports OpenFace and JAA-Net only
    head = ["AU"] + [f"{LABELS[c]} {m}" for c in CELLS for m in ("F1", "Acc")] + ["n real / synth / uned. / cf."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ROWS:
        r = t[row]
        cells = ["Avg" if row == "mean" else row]
        for c in CELLS:
            pair = _pair(None if r is None else r[c])
            if published and c in ("real", "synthetic", "gap"):
                pub = paper_cell(det, row, c)
                pair = [f"{v} ({_fmt(None if pub is None else pub[k])})" for v, k in zip(pair, ("f1", "acc"))]
            cells += pair
        cells.append(DASH if r is None else " / ".join(
            DASH if r[c] is None else str(r[c]["n"]) for c in ("real", "synthetic", "unedited", "counterfactual")))
        lines.append("| " + " | ".join(cells) + " |")
    grouping = f" Frames grouped: `{t['grouping']}`." if t.get("grouping") else ""
    note = (f"\n\n{det}: values in percent; gap = real − synthesis; edit gain = synthesis − unedited; − = AU not "
            f"supported by the detector.{grouping}")
    if cf_note:
        note += f" Counterfactual: not available ({cf_note})."
    note += training_note(t.get("training"))
    if published:
        note += " In parentheses: the paper's published Table 1 (BP4D; − where it reports nothing)."
    return "\n".join(lines) + note


def training_note(training: dict | None) -> str:
    """How far a trainable detector trained; loud when the wall-clock safety net cut it short."""
    if not training:
        return ""
    done, planned = training.get("epochs_completed"), training.get("epochs")
    if training.get("stopped_by_time_budget"):
        return (f" **Training was stopped by its wall-clock cap after {done} of {planned} epochs**: these numbers "
                f"depend on the machine's speed and load.")
    return f" Trained {done} of {planned} epochs."


def summary_markdown(t1: dict) -> str:
    """Mean F1 per detector: the floor, the synthesis, the ceiling, the real frames, and the index."""
    head = ["detector", "always-present", "unedited (floor)", "synthesis", "counterfactual (ceiling)", "real",
            "gap", "edit gain", "edit-quality index", "failed frames (real / synth / unedited / counterf.)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for det, t in t1.items():
        m = t["mean"]
        f = lambda c: DASH if m[c] is None else _fmt(m[c]["f1"])  # noqa: E731
        eqi = DASH if t["edit_quality_index"] is None else f"{t['edit_quality_index']:.2f}"
        failed = " / ".join(str(t["n_failed"].get(s, DASH)) for s in ("real", "synthetic", "unedited", "counterfactual"))
        lines.append("| " + " | ".join([det, f("always_present"), f("unedited"), f("synthetic"), f("counterfactual"),
                                        f("real"), f("gap"), f("edit_gain"), eqi, failed]) + " |")
    return "\n".join(lines) + ("\n\nMean F1 over the AUs each detector supports. Edit-quality index = (synthesis − "
                               "unedited) / (counterfactual − unedited): 0 = a generator that changes nothing, "
                               "1 = a perfect one.")


def counts_markdown(t1: dict) -> str:
    lines = []
    for det, t in t1.items():
        lines += [f"**{det}**", "", "| set | frames | failed | top failure reasons | " +
                  " | ".join(f"AU{a} pos (label/detected)" for a in AUS) + " |", "|" + "---|" * (4 + len(AUS))]
        for name, c in t["sets"].items():
            reasons = "; ".join(f"{k} ({v})" for k, v in c["top_failures"].items()) or DASH
            pos = [f"{c['label_positives'][f'AU{a}']}/{c['detected_positives'][f'AU{a}']}" for a in AUS]
            lines.append(f"| {name} | {c['frames']} | {c['failed']} | {reasons} | " + " | ".join(pos) + " |")
        lines.append("")
    return "\n".join(lines)


def table1_frame(t1: dict, paper: bool = False) -> pd.DataFrame:
    rows = []
    for det, t in t1.items():
        for row in ROWS:
            r = {"detector": det, "au": row}
            for c in CELLS:
                cell = None if t[row] is None else t[row][c]
                for m in ("f1", "acc", "n"):
                    r[f"{c}_{m}"] = None if cell is None else cell.get(m)
            if paper and det in PAPER_TABLE1:
                for c in ("real", "synthetic", "gap"):
                    pub = paper_cell(det, row, c) or {}
                    r.update({f"paper_{c}_f1": pub.get("f1"), f"paper_{c}_acc": pub.get("acc")})
            rows.append(r)
    return pd.DataFrame(rows)


def cf_error_markdown(err: dict) -> str:
    head = ["AU", "edits (changed)", "L1 synth↔counterf.", "L1 source↔counterf.", "PSNR synth", "PSNR source",
            "synthetic closer (%)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in [f"AU{a}" for a in AUS] + ["all"]:
        e = err[key]
        lines.append("| " + " | ".join([key, str(e["n_edits"]), _fmt(e["l1_synthetic"]), _fmt(e["l1_source"]),
                                        _fmt(e["psnr_synthetic"]), _fmt(e["psnr_source"]),
                                        _fmt(e["closer_share"])]) + " |")
    return "\n".join(lines) + ("\n\nInside each changed AU's region (grey levels 0-255, all channels); synthetic "
                               "closer = share of those edits whose region is nearer the counterfactual than the "
                               "unedited source's is.")


# ---- the report folder -----------------------------------------------------------------------------------
def _dataset(store_path) -> str:
    from pipelines.plan import store_frames

    return str(store_frames(store_path)["dataset"].iloc[0])


def write_report(scores_path, synth_out, store_path, out_dir, cfg: ReportConfig = ReportConfig(),
                 counterfactual=None, cf_unavailable: str | None = None) -> Path:
    """Compute and write the whole report folder (see module doc); returns the path of report.md.
    `counterfactual`: the counterfactual set's folder (pipelines.counterfactual), or None with the reason in
    `cf_unavailable` (e.g. "BP4D has no renderer")."""
    from pipelines import fidelity, figures
    from pipelines.synth_store import open_images, read_parts

    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    scores, info = read_set_scores_info(scores_path)
    supported = info["supported_aus"]
    if Path(scores_path).resolve() != (out_dir / "scores.parquet").resolve():
        with replacing(out_dir / "scores.parquet") as tmp:
            shutil.copyfile(scores_path, tmp)
    if counterfactual is None and (scores["set"] == "counterfactual").any():
        raise ValueError(f"{scores_path}: holds counterfactual scores; pass the counterfactual folder too")
    if counterfactual is None and cf_unavailable is None:
        from pipelines.counterfactual import available

        cf_unavailable = available(store_path) or "no counterfactual set was given"
    cf_note = None if counterfactual is not None else cf_unavailable
    dataset = _dataset(store_path)
    paper = dataset == "bp4d" if cfg.compare_paper is None else cfg.compare_paper
    synth = read_parts(synth_out)
    t1 = table1(scores, supported, synth, info["settings"])
    _write_text(out_dir / "table1.json", json.dumps(t1, indent=2))
    md = "\n\n".join([summary_markdown(t1)] + [detector_markdown(d, t, paper, cf_note) for d, t in t1.items()])
    _write_text(out_dir / "table1.md", md + "\n")
    with replacing(out_dir / "table1.csv") as tmp:
        table1_frame(t1, paper).to_csv(tmp, index=False, float_format="%.4f")

    images = open_images(synth_out)
    sources = synth["source_row"].to_numpy()
    edits = {"synthetic": edit_metrics(scores, synth, supported)}
    rule_name = cfg.regions or generator_regions(synth_out)
    locality, maps = fidelity.outside_change(store_path, images, sources, rule_name=rule_name)
    fid = {"locality": locality,
           "identity": fidelity.identity(store_path, images, sources, cfg.identity_pairs, cfg.seed)}
    write_maps(out_dir / OUTSIDE_MAPS, maps)
    figs = [figures.f1_sets_chart(t1, out_dir / "figures" / "f1_sets.png"),
            figures.outside_change_maps({"this run": maps}, out_dir / "figures" / "outside_change.png")]
    if counterfactual is not None:
        edits["counterfactual"] = edit_metrics(scores, synth, supported, edited_set="counterfactual")
        fid["counterfactual_error"] = fidelity.counterfactual_error(store_path, images, open_images(counterfactual),
                                                                    synth, rule_name=rule_name)
        figs.append(figures.counterfactual_grid(store_path, images, open_images(counterfactual), synth,
                                                out_dir / "figures" / "counterfactual_grid.png", cfg.seed))
    _write_text(out_dir / "edits.json", json.dumps({"edits": edits, "pooled": {
        k: {d: summarise(v) for d, v in e.items()} for k, e in edits.items()}, **fid}, indent=2))
    if cfg.checkpoint:
        figs += figures.edit_grids(cfg.checkpoint, store_path, synth, out_dir / "figures", cfg.grid_faces, cfg.seed)

    policy = sorted(synth["source_policy"].unique().tolist())
    meta = {"dataset": dataset, "scores": "scores.parquet", "synthetic": str(Path(synth_out).resolve()),
            "counterfactual": None if counterfactual is None else str(Path(counterfactual).resolve()),
            "counterfactual_unavailable": cf_note, "store": str(Path(store_path).resolve()),
            "test_fold": info["test_fold"], "source_policy": policy, "settings": info["settings"],
            "frames": {s: int(scores.loc[scores["set"] == s, "frame_id"].nunique()) for s in scores["set"].unique()},
            "checkpoint_sha256": sorted(synth["checkpoint_sha256"].unique().tolist()), "regions": rule_name,
            "config": asdict(cfg)}
    _write_text(out_dir / "report.json", json.dumps(meta, indent=2))
    page = [f"# Table 1 report ({dataset})", "",
            f"Test fold {info['test_fold']}; real test frames: {meta['frames'].get('real', 0)}; synthetic frames: "
            f"{meta['frames'].get('synthetic', 0)} (sources drawn `{', '.join(policy)}` from the same subject); "
            + (f"counterfactual frames: {meta['frames'].get('counterfactual', 0)}." if counterfactual is not None
               else f"counterfactual: not available ({cf_note})."), "",
            "## Table 1: detection on real vs synthetic frames, with the floor and the ceiling", "", md, "",
            "## Counts", "", counts_markdown(t1), "",
            "## Beyond the paper: edits, identity, locality", "", edits_markdown(edits), "",
            _fidelity_markdown(fid), ""]
    if counterfactual is not None:
        page += ["## Against the counterfactual ground truth", "", cf_error_markdown(fid["counterfactual_error"]), ""]
    page += ["## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in figs]
    report = out_dir / "report.md"
    _write_text(report, "\n".join(page) + "\n")
    log.info("report written to %s", report)
    return report


def write_maps(path: Path, maps: dict) -> Path:
    """The outside-region change maps (fidelity.outside_change) as one .npz, through a temp file + rename."""
    with replacing(path) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no suffix
        np.savez_compressed(f, **maps)
    return path


def _pct(v) -> str:
    return DASH if v is None else f"{v:.2f}%"


def generator_regions(synth_out) -> str:
    """The region rule of the generator that wrote a synthetic set (its generation.json's checkpoint); the
    reference rule when the generator has none (GANimation) or the checkpoint is gone."""
    from lacgan.checkpoint import CheckpointError, region_rule
    from lacgan.regions import DEFAULT_RULE
    from pipelines.score import ScoreError, read_generation

    try:
        return region_rule(read_generation(synth_out)["checkpoint"]) or DEFAULT_RULE
    except (KeyError, ScoreError, CheckpointError):
        return DEFAULT_RULE


def _fidelity_markdown(fid: dict) -> str:
    loc, idn = fid.get("locality", {}), fid.get("identity", {})
    lines = [f"Locality (regions drawn by the `{loc.get('regions')}` rule): largest change of any pixel outside every "
             f"AU region = **{loc.get('max_change_outside_regions')}**"
             f" grey levels over {loc.get('frames')} frames ({loc.get('frames_with_change')} frames with any change; "
             f"LAC-GAN composites its regions back, so 0 by construction). Outside pixels changed, mean per frame: "
             f"**{_pct(loc.get('changed_share'))}** (> 0), **{_pct(loc.get('changed_share_over'))}** "
             f"(> {loc.get('threshold')} grey levels); outside every region: {_pct(loc.get('outside_share'))} of "
             f"the crop. Where: figures/outside_change.png (maps in {OUTSIDE_MAPS})."]
    if idn.get("pairs"):
        lines.append(f"Identity (dlib descriptor distance, source vs synthetic, {idn['pairs']} pairs): mean "
                     f"{idn['mean_distance']:.3f}, median {idn['median_distance']:.3f}, max {idn['max_distance']:.3f};"
                     f" {100 * idn['same_person_share']:.1f}% below dlib's same-person threshold {idn['threshold']}.")
    return "\n\n".join(lines)


def write_fold_report(report_dirs: list, out_dir, paper: bool = False) -> Path:
    """`--folds all`: Table 1 averaged over the folds' reports (each fold's models trained on the other folds),
    written as table1.json / table1.md / table1.csv and a report.md that links every fold's own report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = [json.loads((Path(d) / "table1.json").read_text()) for d in report_dirs]
    t1 = average_tables(tables)
    _write_text(out_dir / "table1.json", json.dumps(t1, indent=2))
    md = "\n\n".join([summary_markdown(t1)] + [detector_markdown(d, t, paper) for d, t in t1.items()])
    _write_text(out_dir / "table1.md", md + "\n")
    with replacing(out_dir / "table1.csv") as tmp:
        table1_frame(t1, paper).to_csv(tmp, index=False, float_format="%.4f")
    links = [f"- fold {i + 1}: [{Path(d)}]({Path(d).resolve() / 'report.md'})" for i, d in enumerate(report_dirs)]
    page = [f"# Table 1 averaged over {len(report_dirs)} folds", "",
            "Each fold's LAC-GAN and detectors were trained on the other folds; cells are the mean over folds, n "
            "the sum.", "", md, "", "## Per-fold reports", "", *links]
    report = out_dir / "report.md"
    _write_text(report, "\n".join(page) + "\n")
    return report
