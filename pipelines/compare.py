"""LAC-GAN beside a baseline (GANimation): one page that puts the numbers of per-method report folders side by side.

Each method has its own synthetic set, score table and report folder (pipelines.report), all made from the same
aligned store, plan (so the same sources and targets), detectors, test fold and counterfactual set.
`write_comparison` checks that, copies each report's numbers (table1.json, edits.json) and writes:

    comparison.json  {"methods": {name: {report, synthetic, checkpoint, editor}},
                      "detectors": {det: {metric: {method: value}}},      Table 1 means, edit success, flips
                      "per_au": {det: {"AU1": {metric: {method: value}}}},
                      "fidelity": {metric: {method: value}}}               identity, counterfactual error, locality
    comparison.md    the same as tables, one column per method
    figures/fig4_grid.png       the same sources and single-AU targets, rows source | each method (Fig. 4 style)
    figures/outside_change.png  where each method changed pixels outside every AU region (one colour scale)

Every number is read from the per-method reports, never recomputed, so each equals its own report's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from manifests.aus import AUS
from pipelines.edits import DASH, summarise

log = logging.getLogger("lacgan.compare")

METHODS = {"lacgan": "LAC-GAN", "ganimation": "GANimation"}  # model kind -> the name its column carries

CELLS = (("real", "Real"), ("synthetic", "Synthesis"), ("unedited", "Unedited (floor)"),
         ("counterfactual", "Counterfactual (ceiling)"), ("always_present", "Always-present"),
         ("gap", "Gap (real − synthesis)"), ("edit_gain", "Edit gain (synthesis − unedited)"))
EDITS = (("edit_success", "Edit success, changed AUs (%)", "success_changed"),
         ("off_target_flips", "Off-target flips (%)", "off_target_flips"))
PER_AU = (("synthetic_f1", "synth. F1"), ("edit_success", "success"), ("off_target_flips", "flips"))
FIDELITY = (  # (key, label, section of edits.json, field, digits); identity's share is a fraction (shown in %)
    ("same_person_share", "Identity: pairs under dlib's 0.6 (%)", "identity", "same_person_share", 1),
    ("identity_distance", "Identity: mean descriptor distance", "identity", "mean_distance", 3),
    ("cf_l1_synthetic", "Counterfactual error: in-region L1, edit", "counterfactual_error", "l1_synthetic", 1),
    ("cf_l1_source", "Counterfactual error: in-region L1, unedited source", "counterfactual_error", "l1_source", 1),
    ("cf_closer_share", "Counterfactual error: edits closer than the source (%)", "counterfactual_error",
     "closer_share", 1),
    ("outside_changed_share", "Outside the AU regions: pixels changed > 0 (%)", "locality", "changed_share", 2),
    ("outside_changed_share_over", "Outside the AU regions: pixels changed > 8 (%)", "locality",
     "changed_share_over", 2),
    ("outside_max_change", "Outside the AU regions: largest change (grey levels)", "locality",
     "max_change_outside_regions", 0),
    ("outside_frames_with_change", "Outside the AU regions: frames with any change", "locality",
     "frames_with_change", 0),
)


class ComparisonError(ValueError):
    """Report folders that cannot be compared (missing, or made from different data); the message names them."""


@dataclass(frozen=True)
class CompareConfig:
    grid_faces: int = 2  # test faces in the Fig. 4 grid (each: a source row and one row per method)
    seed: int = 0  # which faces


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ComparisonError(f"{path}: unreadable ({e}); is this a report folder of `lacgan report`?") from None


def method_record(report_dir) -> dict:
    """What the comparison reads of one report folder: its table1.json, edits.json, report.json and the
    generation record of its synthetic set."""
    d = Path(report_dir)
    meta = _read(d / "report.json")
    return {"dir": d, "table1": _read(d / "table1.json"), "edits": _read(d / "edits.json"), "meta": meta,
            "generation": _read(Path(meta["synthetic"]) / "generation.json")}


def check_protocol(records: dict[str, dict]) -> None:
    """ComparisonError unless every report used the same store, plan, test fold, counterfactual set, detectors and
    AU region rule (outside-region change and the counterfactual error are measured inside those regions)."""
    (first, a), *rest = records.items()
    for name, b in rest:
        for what, get in (("aligned store", lambda r: r["meta"]["store"]),
                          ("plan", lambda r: r["generation"].get("plan_sha256")),
                          ("test fold", lambda r: r["meta"]["test_fold"]),
                          ("counterfactual set", lambda r: r["meta"].get("counterfactual")),
                          ("detectors", lambda r: sorted(r["table1"])),
                          ("AU region rule", lambda r: r["meta"].get("regions"))):
            if get(a) != get(b):
                raise ComparisonError(f"{b['dir']}: made with another {what} than {a['dir']} ({name}: {get(b)!r}, "
                                      f"{first}: {get(a)!r}); compare reports of the same plan and detectors")


def _cell(t: dict, row: str, cell: str, metric: str):
    r = t.get(row)
    return None if r is None or r.get(cell) is None else r[cell].get(metric)


def detector_numbers(rec: dict, det: str) -> dict:
    """{metric: value} of one method and detector: Table 1 means (F1 and accuracy), the index, pooled edits."""
    t = rec["table1"][det]
    out = {f"{c}_{m}": _cell(t, "mean", c, m) for c, _ in CELLS for m in ("f1", "acc")}
    out["edit_quality_index"] = t.get("edit_quality_index")
    pooled = summarise(rec["edits"]["edits"]["synthetic"][det])
    out.update({key: pooled[field] for key, _, field in EDITS})
    return out


def per_au_numbers(rec: dict, det: str) -> dict:
    """{"AU1": {synthetic_f1, edit_success, off_target_flips}} of one method and detector (None: unsupported)."""
    t, e = rec["table1"][det], rec["edits"]["edits"]["synthetic"][det]
    return {f"AU{a}": None if e.get(f"AU{a}") is None else {
        "synthetic_f1": _cell(t, f"AU{a}", "synthetic", "f1"), "edit_success": e[f"AU{a}"]["success_changed"],
        "off_target_flips": e[f"AU{a}"]["off_target_flips"]} for a in AUS}


def _per_au_side_by_side(records: dict[str, dict], det: str) -> dict:
    per = {m: per_au_numbers(r, det) for m, r in records.items()}
    return {f"AU{a}": {k: {m: None if v[f"AU{a}"] is None else v[f"AU{a}"][k] for m, v in per.items()}
                       for k, _ in PER_AU} for a in AUS}


def fidelity_numbers(rec: dict) -> dict:
    out = {}
    for key, _, section, field, _ in FIDELITY:
        part = rec["edits"].get(section) or {}
        out[key] = (part.get("all") or {}).get(field) if section == "counterfactual_error" else part.get(field)
    return out


def comparison(records: dict[str, dict]) -> dict:
    """The side-by-side numbers (see module doc) of checked records {method: method_record(...)}."""
    first = next(iter(records.values()))
    dets = list(first["table1"])
    flip = lambda per: {k: {m: v[k] for m, v in per.items()} for k in next(iter(per.values()))}  # noqa: E731
    return {
        "methods": {m: {"report": str(r["dir"].resolve()), "synthetic": r["meta"]["synthetic"],
                        "checkpoint": r["generation"].get("checkpoint"),
                        "editor": (r["generation"].get("config") or {}).get("editor")} for m, r in records.items()},
        "detectors": {d: flip({m: detector_numbers(r, d) for m, r in records.items()}) for d in dets},
        "per_au": {d: _per_au_side_by_side(records, d) for d in dets},
        "fidelity": flip({m: fidelity_numbers(r) for m, r in records.items()}),
    }


# ---- Markdown ----------------------------------------------------------------------------------------------
def _num(v, digits: int = 1) -> str:
    if v is None:
        return DASH
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def comparison_markdown(c: dict) -> str:
    methods = list(c["methods"])
    head = lambda first: ["| " + " | ".join([first] + methods) + " |", "|" + "---|" * (1 + len(methods))]  # noqa: E731
    parts = []
    for det, nums in c["detectors"].items():
        lines = [f"**{det}** (mean over the AUs it supports; F1 / accuracy in %)", ""] + head("metric")
        for cell, label in CELLS:
            lines.append("| " + " | ".join([label] + [f"{_num(nums[f'{cell}_f1'][m])} / {_num(nums[f'{cell}_acc'][m])}"
                                                    for m in methods]) + " |")
        lines.append("| Edit-quality index | " + " | ".join(_num(nums["edit_quality_index"][m], 2) for m in methods)
                     + " |")
        for key, label, _ in EDITS:
            lines.append(f"| {label} | " + " | ".join(_num(nums[key][m]) for m in methods) + " |")
        parts.append("\n".join(lines))
    lines = ["**Detector-independent** (identity on the report's sampled pairs; counterfactual error over the "
             "changed-AU edits, all AUs; outside = pixels outside every AU region, mean share per frame)", ""]
    lines += head("metric")
    for key, label, _, _, digits in FIDELITY:
        scale = 100 if key == "same_person_share" else 1
        lines.append(f"| {label} | " + " | ".join(_num(None if c["fidelity"][key][m] is None else
                                                       scale * c["fidelity"][key][m], digits) for m in methods) + " |")
    parts.append("\n".join(lines))
    for det, per in c["per_au"].items():
        cols = [(k, label, m) for k, label in PER_AU for m in methods]
        lines = [f"**{det} per AU** (synthesis F1; edit success on changed AUs; off-target flips, %)", "",
                 "| AU | " + " | ".join(f"{label} {m}" for _, label, m in cols) + " |", "|" + "---|" * (1 + len(cols))]
        for au, row in per.items():
            lines.append(f"| {au} | " + " | ".join(_num(row[k][m]) for k, _, m in cols) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


# ---- the comparison folder ------------------------------------------------------------------------------------
def write_comparison(reports: dict, out_dir, cfg: CompareConfig = CompareConfig()) -> Path:
    """Compare report folders {method name: report dir} (the first is the reference, e.g. LAC-GAN) into
    `out_dir` (see module doc); returns the path of comparison.md."""
    from pipelines import figures
    from lacgan.atomic import write_text as _write_text
    from pipelines.report import OUTSIDE_MAPS
    from pipelines.shard_task import load_editor
    from pipelines.synth_store import read_parts

    if len(reports) < 2:
        raise ComparisonError(f"give at least two report folders to compare, got {list(reports)}")
    records = {m: method_record(d) for m, d in reports.items()}
    check_protocol(records)
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    c = comparison(records)
    _write_text(out_dir / "comparison.json", json.dumps(c, indent=2))

    maps = {}
    for m, r in records.items():
        try:
            with np.load(r["dir"] / OUTSIDE_MAPS) as z:
                maps[m] = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise ComparisonError(f"{r['dir'] / OUTSIDE_MAPS}: unreadable ({e}); re-run `lacgan report` for "
                                  f"{m}") from None
    figs = [figures.outside_change_maps(maps, out_dir / "figures" / "outside_change.png")]
    first = next(iter(records.values()))
    editors = {m: load_editor(r["generation"]["checkpoint"], None,
                              (r["generation"].get("config") or {}).get("editor", "auto")) for m, r in records.items()}
    figs.append(figures.fig4_grid(editors, first["meta"]["store"], read_parts(first["meta"]["synthetic"]),
                                  out_dir / "figures" / "fig4_grid.png", cfg.grid_faces, cfg.seed))
    names = " vs ".join(records)
    meta = first["meta"]
    page = [f"# {names}", "",
            f"Same aligned store (`{meta['store']}`), same plan ({len(read_parts(meta['synthetic']))} frames, sources "
            f"`{', '.join(meta['source_policy'])}`), same detectors, test fold {meta['test_fold']}; counterfactual "
            f"set: {meta.get('counterfactual') or 'not available'}. Each method's own report: "
            + "; ".join(f"[{m}]({r['dir'].resolve() / 'report.md'})" for m, r in records.items()) + ".", "",
            comparison_markdown(c), "",
            "Outside the AU regions: LAC-GAN composites its edited regions back into the source (Eq. 2), so its "
            "share is 0 by construction; the same function measures every method. Fig. 4 grid: per face, the source "
            "and each method's edit of it with one AU flipped (the column's), every other AU asked to stay.", "",
            "## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in figs]
    path = out_dir / "comparison.md"
    _write_text(path, "\n".join(page) + "\n")
    log.info("comparison written to %s", path)
    return path
