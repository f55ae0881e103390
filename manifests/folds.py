"""Subject-disjoint folds: JAA-Net's BP4D partition for real BP4D, a deterministic balanced split otherwise.

Rule for anything that is not real BP4D (the embedded cohort, whose ids look like BP4D's but are not BP4D
people; folder datasets; a BP4D tree holding subjects outside the partition):

1. Subjects are grouped by their gender letter (the first character of the id when it is `F` or `M`, else one
   group "?"); groups are handled largest first.
2. Inside a group, subjects are taken in decreasing frame count; ties are ordered by a permutation drawn from
   `seed` (so `seed` changes the split, and the same inputs always give the same split).
3. Each subject goes to the fold with the fewest subjects of its group so far, ties broken by the fewest frames
   so far, then by the lowest fold number.

So every group is spread over the folds as evenly as its size allows (counts differ by at most one), and frame
totals are balanced greedily within that constraint. Folds are 1-based.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import numpy as np

log = logging.getLogger(__name__)

# JAA-Net's three-fold BP4D partition (Shao et al., ECCV 2018), which the LAC-GAN paper reuses (Sec. 4.1).
JAANET_BP4D_PARTS: dict[int, tuple[str, ...]] = {
    1: ("F001", "F002", "F008", "F009", "F010", "F016", "F018", "F023",
        "M001", "M004", "M007", "M008", "M012", "M014"),
    2: ("F003", "F005", "F011", "F013", "F020", "F022",
        "M002", "M005", "M010", "M011", "M013", "M016", "M017", "M018"),
    3: ("F004", "F006", "F007", "F012", "F014", "F015", "F017", "F019", "F021",
        "M003", "M006", "M009", "M015"),
}
_JAANET_FOLD = {s: k for k, subs in JAANET_BP4D_PARTS.items() for s in subs}


def jaanet_fold(subject: str) -> int | None:
    """JAA-Net part (1..3) of a BP4D subject id, or None when the id is not in the partition."""
    return _JAANET_FOLD.get(subject)


def assign_folds(subjects: Iterable[str] | Mapping[str, int], dataset: str, n_folds: int = 3,
                 seed: int = 0) -> dict[str, int]:
    """subject -> fold (1..n_folds).

    `subjects` is either ids, or a mapping id -> frame count (used to balance frames). `dataset` "bp4d" with
    3 folds and every id in the JAA-Net partition gives that partition; anything else gives the balanced split
    described in the module docstring.
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    frames = {str(s): int(n) for s, n in subjects.items()} if isinstance(subjects, Mapping) \
        else {str(s): 1 for s in subjects}
    if not frames:
        return {}
    if dataset == "bp4d" and n_folds == 3:
        outside = sorted(s for s in frames if s not in _JAANET_FOLD)
        if not outside:
            return {s: _JAANET_FOLD[s] for s in frames}
        log.warning("BP4D subjects %s are not in JAA-Net's partition; using the balanced split for all "
                    "subjects instead", outside)
    if len(frames) < n_folds:
        log.warning("%d subjects for %d folds: some folds will be empty", len(frames), n_folds)
    return _balanced(frames, n_folds, seed)


def _gender(subject: str) -> str:
    return subject[0] if subject[:1] in ("F", "M") else "?"


def _balanced(frames: dict[str, int], n_folds: int, seed: int) -> dict[str, int]:
    ids = sorted(frames)
    tie = dict(zip(ids, np.random.default_rng(seed).permutation(len(ids)).tolist()))
    groups: dict[str, list[str]] = {}
    for s in ids:
        groups.setdefault(_gender(s), []).append(s)
    fold_frames = [0] * n_folds
    out: dict[str, int] = {}
    for g in sorted(groups, key=lambda g: (-len(groups[g]), g)):
        count = [0] * n_folds
        for s in sorted(groups[g], key=lambda s: (-frames[s], tie[s])):
            k = min(range(n_folds), key=lambda k: (count[k], fold_frames[k], k))
            out[s] = k + 1
            count[k] += 1
            fold_frames[k] += frames[s]
    return out


# ---- keeping test subjects out of training sets ----------------------------------------------------------
class FoldLeakError(ValueError):
    """A training set that would contain a test-fold subject; the message names the subject and the file."""


def check_training_rows(rows, frames, test_fold: int, source: str = "<rows>") -> None:
    """Refuse rows (a table with `subject`, `source_row` and optionally `target_row`, e.g. a plan or a synthetic
    manifest) whose identity, source frame or target label pattern belongs to a subject of `test_fold`.

    `frames` is the frame manifest the rows refer to (row_id, subject, fold). Raises FoldLeakError naming
    `source`, what leaked and the first leaked subject."""
    subject_of = frames.set_index("row_id")["subject"]
    test = set(frames.loc[frames["fold"] == test_fold, "subject"].astype(str))
    checks = [("identities (subject column)", rows["subject"].astype(str))]
    for col, what in (("source_row", "source frames"), ("target_row", "target label patterns")):
        if col in rows:
            ids = rows[col].to_numpy()
            ids = ids[ids >= 0]
            unknown = np.setdiff1d(ids, subject_of.index.to_numpy())
            if len(unknown):
                raise FoldLeakError(f"{source}: {col} values {unknown[:5].tolist()} are not rows of the frame "
                                    f"manifest, so their subjects cannot be checked")
            checks.append((what, subject_of.loc[ids].astype(str)))
    for what, subjects in checks:
        leaked = sorted(set(subjects) & test)
        if leaked:
            more = f" (and {len(leaked) - 1} more: {', '.join(leaked[1:4])})" if len(leaked) > 1 else ""
            raise FoldLeakError(f"{source}: {what} include test-fold subject {leaked[0]}{more}; a training set "
                                f"may use only subjects outside fold {test_fold}")


DEV_VALIDATION_FOLD = 3  # the fold number the validation subjects get in a development manifest


def development_split(df, validate: Iterable[str], test_fold: int = 3):
    """A development manifest for choosing designs without touching the test fold: rows of `test_fold`'s subjects
    are marked unusable (status "held out: test fold K"), the `validate` subjects (from the other folds) become
    fold 3, the rest keep their training folds. Every step then runs unchanged with test fold 3 = validation."""
    validate = [str(s) for s in validate]
    subjects = set(df["subject"].astype(str))
    unknown = sorted(set(validate) - subjects)
    if unknown:
        raise ValueError(f"validation subjects {unknown} are not in the manifest")
    test = set(df.loc[df["fold"] == test_fold, "subject"].astype(str))
    leaked = sorted(set(validate) & test)
    if leaked:
        raise ValueError(f"validation subjects {leaked} belong to test fold {test_fold}; choose them from the "
                         f"training folds")
    out = df.copy()
    held = out["subject"].isin(test)
    out.loc[held, "status"] = f"held out: test fold {test_fold}"
    val = out["subject"].isin(validate)
    train = ~held & ~val
    # the training subjects must not keep fold 3, or they would count as validation
    out.loc[train & (out["fold"] == DEV_VALIDATION_FOLD), "fold"] = 1 if test_fold != 1 else 2
    out.loc[val, "fold"] = DEV_VALIDATION_FOLD
    return out
