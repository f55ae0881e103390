"""The paper's published Table 1 (Liu et al., arXiv:1910.10323, "Quantitative Analysis Of Our Synthetic
Results"), transcribed by hand: BP4D, 3-fold JAA-Net protocol, F1 and accuracy in percent.

Per detector and AU: (real_f1, real_acc, synth_f1, synth_acc, gap_f1, gap_acc), gaps exactly as printed.
OpenFace has no AU24 row ("'−' means there are no results of AU24 with OpenFace classifier").

Two printed values disagree with real − synthesis, and are kept as printed:
- OpenFace AU15 gap F1 is printed 6.8, while 44.3 − 35.7 = 8.6.
- JAA-Net AU24 gap Acc is printed "- 7.7" (a stray dash in the PDF text), while 83.9 − 76.2 = +7.7;
  we store +7.7, the sign of real − synthesis.
Rounding: JAA-Net Avg gap Acc is printed 6.3, 77.9 − 71.7 = 6.2.
"""

from __future__ import annotations

COLUMNS = ("real_f1", "real_acc", "synth_f1", "synth_acc", "gap_f1", "gap_acc")

PAPER_TABLE1: dict[str, dict[str, tuple[float, ...]]] = {
    "openface": {
        "AU1": (64.1, 76.1, 75.8, 88.7, -11.7, -12.6),
        "AU2": (44.3, 66.2, 33.0, 51.3, 11.3, 14.9),
        "AU4": (71.9, 87.4, 67.7, 77.6, 4.2, 9.8),
        "AU6": (84.3, 83.5, 73.1, 75.2, 11.2, 8.3),
        "AU7": (77.6, 76.8, 69.5, 69.4, 8.1, 7.4),
        "AU10": (88.2, 85.0, 76.8, 72.3, 11.4, 12.7),
        "AU12": (73.6, 68.7, 72.8, 78.0, 0.8, -9.3),
        "AU14": (91.0, 89.2, 85.1, 84.8, 5.9, 4.4),
        "AU15": (44.3, 85.7, 35.7, 76.7, 6.8, 9.0),
        "AU17": (69.6, 78.8, 40.4, 51.2, 29.3, 27.6),
        "AU23": (53.6, 80.3, 47.5, 74.9, 6.1, 5.4),
        "avg": (69.3, 79.8, 61.7, 72.7, 7.6, 7.1),
    },
    "jaanet": {
        "AU1": (46.2, 69.7, 59.5, 76.5, -13.3, -6.8),
        "AU2": (48.7, 78.4, 33.7, 67.1, 15.0, 11.3),
        "AU4": (56.4, 84.7, 52.6, 78.7, 3.8, 6.0),
        "AU6": (80.4, 80.2, 72.3, 75.9, 8.1, 4.3),
        "AU7": (73.5, 72.9, 67.2, 65.8, 6.3, 7.1),
        "AU10": (84.9, 80.4, 74.3, 68.5, 10.6, 11.9),
        "AU12": (88.4, 85.7, 83.6, 80.1, 4.8, 5.6),
        "AU14": (59.4, 60.2, 63.7, 65.1, -4.3, -4.9),
        "AU15": (45.6, 84.7, 34.1, 76.4, 11.5, 8.3),
        "AU17": (61.1, 73.3, 35.8, 54.7, 25.3, 18.6),
        "AU23": (36.2, 81.0, 31.7, 74.9, 4.5, 6.1),
        "AU24": (37.4, 83.9, 30.6, 76.2, 6.8, 7.7),
        "avg": (59.9, 77.9, 53.3, 71.7, 6.6, 6.3),
    },
}


def paper_row(detector: str, row: str) -> dict[str, float] | None:
    """The published values for `detector` ("jaanet"/"openface") and `row` ("AU12"/"avg"/"mean"), or None."""
    vals = PAPER_TABLE1.get(detector, {}).get("avg" if row == "mean" else row)
    return None if vals is None else dict(zip(COLUMNS, vals))


PAPER_CELLS = {"real": ("real_f1", "real_acc"), "synthetic": ("synth_f1", "synth_acc"), "gap": ("gap_f1", "gap_acc")}


def paper_cell(detector: str, row: str, cell: str) -> dict[str, float] | None:
    """{f1, acc} the paper printed for a Table 1 cell ("real", "synthetic", "gap"), or None where it printed none."""
    r = paper_row(detector, row)
    if r is None or cell not in PAPER_CELLS:
        return None
    f1, acc = PAPER_CELLS[cell]
    return {"f1": r[f1], "acc": r[acc]}
