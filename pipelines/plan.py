"""Target planning: which source frame is edited to which 12-AU target vector, decided before generation.

A plan is a Parquet file (schema `PLAN_SCHEMA`, checked on every read and write), one row per synthetic frame.
Making it up front keeps generation deterministic, resumable and auditable. Policies:

- `match-test` (the paper's Table 1 protocol): for every labelled frame of the test fold, one synthetic frame of
  the same subject, edited from *another* frame of that subject to that frame's labels. Subjects and label
  distribution equal the real test set; unknown labels (-1) stay -1 (that AU's region is left as the source).
- `balanced`: `count` frames per subject, every AU present with rate 0.5 (`rates` overrides single AUs).
- `rates`: user-given presence rates per AU; AUs without a rate are left as the source (-1).

Sources (`PlanConfig.source`, recorded per row in `source_policy`):

- `random` (default): any other aligned frame of the same subject.
- `neutral`: among the same subject's frames, those with the fewest present AUs (an unknown label counts
  half), ties drawn at random; so every present target must be drawn by the generator (the paper's Fig. 3
  edits start from neutral faces).
- `sequence-random`, `sequence-neutral`: the same, within the target frame's own sequence (subject and task;
  for balanced/rates plans, a sequence of the subject drawn uniformly). A sequence shares its recording
  conditions (on the cohort: head pose, light and camera noise; on BP4D: session), which detectors also learn:
  on the demo cohort, the counterfactual frames of sources from other tasks score 61.5 F1 (HOG+SVM) against
  68.0 on the real frames, from the same task 67.6 (docs/pipeline.md). The report says which policy a table
  used.

Rates are met exactly per subject (round(rate * count) frames present, positions drawn at random), so the
achieved rates differ from the requested ones only by rounding; `achieved_rates` reports them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lacgan.atomic import replacing
from manifests.aligned import OK, AlignedStore
from manifests.aus import AU_COLUMNS, AUS, N_AUS

POLICIES = ("match-test", "balanced", "rates")
SOURCE_POLICIES = ("random", "neutral", "sequence-random", "sequence-neutral")

PLAN_SCHEMA = pa.schema(
    [
        pa.field("plan_row", pa.int64(), nullable=False),  # 0..N-1: the synthetic frame's index in the store
        pa.field("source_row", pa.int64(), nullable=False),  # aligned-store row edited into this frame
        pa.field("target_row", pa.int64(), nullable=False),  # real frame whose labels are the target, or -1
        pa.field("subject", pa.string(), nullable=False),  # subject of the source (and of the target frame)
        pa.field("task", pa.string(), nullable=False),  # sequence the frame is scored in (target's task if any)
        *[pa.field(c, pa.int8(), nullable=False) for c in AU_COLUMNS],  # target: 1 present, 0 absent, -1 keep
        pa.field("seed", pa.int64(), nullable=False),  # per-frame seed derived from the plan seed
        pa.field("policy", pa.string(), nullable=False),  # one of POLICIES
        pa.field("source_policy", pa.string(), nullable=False),  # one of SOURCE_POLICIES
    ],
    metadata={b"lacgan.schema": b"plan/2"},
)


class PlanError(ValueError):
    """A plan that cannot be made or read; the message names the file or the bad request."""


@dataclass(frozen=True)
class PlanConfig:
    policy: str = "match-test"  # one of POLICIES
    test_fold: int = 3  # match-test: the fold whose frames are matched (JAA-Net's third part)
    count: int = 100  # balanced/rates: synthetic frames per subject
    rates: dict | None = None  # {AU: rate}; balanced: overrides 0.5 per AU; rates: required
    subjects: tuple[str, ...] | None = None  # balanced/rates: subjects to plan for (default: every subject)
    folds: tuple[int, ...] | None = None  # balanced/rates: draw sources only from these folds (default: all)
    seed: int = 0  # everything random in the plan derives from this
    source: str = "random"  # how each frame's source is drawn from its subject's frames: SOURCE_POLICIES

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise PlanError(f"unknown policy {self.policy!r}; choose one of {POLICIES}")
        if self.source not in SOURCE_POLICIES:
            raise PlanError(f"unknown source policy {self.source!r}; choose one of {SOURCE_POLICIES}")


# ---- reading the store's frames ---------------------------------------------------------------------------
def store_frames(store_path) -> pd.DataFrame:
    """The store's manifest rows (row_id, subject, task, frame, labels, fold) with `ok` = aligned successfully."""
    store = AlignedStore.open(store_path)
    df = store.manifest()
    df["ok"] = store.status() == OK
    return df


# ---- policies ---------------------------------------------------------------------------------------------
def _expressiveness(frames: pd.DataFrame) -> np.ndarray:
    """Per frame: present AUs + half the unknown ones (the `neutral` source policy takes the smallest)."""
    lab = frames[list(AU_COLUMNS)].to_numpy(np.int8)
    return (lab == 1).sum(axis=1) + 0.5 * (lab == -1).sum(axis=1)


def _pick_sources(pool: pd.DataFrame, n: int, source: str, rng: np.random.Generator) -> np.ndarray:
    """`n` positions into `pool` (one subject's candidate frames): uniformly (`*random`) or among the least
    expressive (`*neutral`); `sequence-*` first draws a sequence (task) uniformly, then a frame inside it."""
    expressive = _expressiveness(pool)
    tasks = pool["task"].to_numpy()

    def draw(idx: np.ndarray, k: int) -> np.ndarray:
        if source.endswith("neutral"):
            idx = idx[expressive[idx] == expressive[idx].min()]
        return idx[rng.integers(len(idx), size=k)]

    everything = np.arange(len(pool))
    if not source.startswith("sequence-"):
        return draw(everything, n)
    names = np.unique(tasks)
    which = names[rng.integers(len(names), size=n)]
    out = np.empty(n, np.int64)
    for name in names:
        at = np.flatnonzero(which == name)
        if len(at):
            out[at] = draw(everything[tasks == name], len(at))
    return out


def _rate_vector(rates: dict | None, default: float | None) -> np.ndarray:
    """{AU: rate} -> (12,) float with NaN for "leave as source"; AUs given as 12 or "AU12"."""
    vec = np.full(N_AUS, np.nan if default is None else default, dtype=np.float64)
    for key, rate in (rates or {}).items():
        au = int(str(key).upper().removeprefix("AU"))
        if au not in AUS:
            raise PlanError(f"rate given for AU{au}, which is not one of BP4D's 12 AUs {AUS}")
        rate = float(rate)
        if not 0.0 <= rate <= 1.0:
            raise PlanError(f"rate {rate} for AU{au} is impossible: rates must lie in [0, 1]")
        vec[AUS.index(au)] = rate
    return vec


def _match_test(frames: pd.DataFrame, cfg: PlanConfig, rng: np.random.Generator) -> pd.DataFrame:
    ok = frames[frames["ok"]]
    labels = ok[list(AU_COLUMNS)].to_numpy(np.int8)
    targets = ok[(ok["fold"] == cfg.test_fold) & (labels != -1).any(axis=1)]
    if targets.empty:
        folds = sorted(frames["fold"].unique().tolist())
        raise PlanError(f"test fold {cfg.test_fold} has no aligned, labelled frames (folds present: {folds})")
    rows = []
    for subject, group in targets.groupby("subject", sort=True):
        mine = ok[ok["subject"] == subject]
        if len(mine) < 2:
            raise PlanError(f"subject {subject} has only {len(mine)} aligned frame(s); match-test needs another "
                            f"frame of the same subject to edit from")
        for t in group.itertuples(index=False):
            keep = mine["row_id"].to_numpy() != t.row_id
            if cfg.source.startswith("sequence-"):
                keep &= mine["task"].to_numpy() == t.task
                if not keep.any():
                    raise PlanError(f"sequence {subject}/{t.task} has no other aligned frame to edit from "
                                    f"(source policy {cfg.source}); use a subject-wide policy")
            cand = mine[keep]
            src = int(cand["row_id"].iat[int(_pick_sources(cand, 1, cfg.source, rng)[0])])
            rows.append((src, int(t.row_id), subject, t.task, *[getattr(t, c) for c in AU_COLUMNS]))
    return pd.DataFrame(rows, columns=["source_row", "target_row", "subject", "task", *AU_COLUMNS])


def _by_rates(frames: pd.DataFrame, cfg: PlanConfig, rates: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    if cfg.count < 1:
        raise PlanError(f"count must be at least 1 frame per subject, got {cfg.count}")
    ok = frames[frames["ok"]]
    if cfg.folds is not None:
        ok = ok[ok["fold"].isin(cfg.folds)]
        if ok.empty:
            raise PlanError(f"folds {list(cfg.folds)} hold no aligned frames")
    known = sorted(frames["subject"].unique().tolist())
    subjects = sorted(ok["subject"].unique().tolist()) if cfg.subjects is None else list(cfg.subjects)
    unknown = [s for s in subjects if s not in known]
    if unknown:
        raise PlanError(f"unknown subjects {unknown}; the store has {known}")
    parts = []
    for subject in subjects:
        pool = ok.loc[ok["subject"] == subject]
        if pool.empty:
            raise PlanError(f"subject {subject} has no aligned frames in the chosen folds")
        pick = _pick_sources(pool, cfg.count, cfg.source, rng)
        target = np.full((cfg.count, N_AUS), -1, dtype=np.int8)
        for j, rate in enumerate(rates):
            if np.isnan(rate):
                continue
            present = np.zeros(cfg.count, dtype=np.int8)
            present[rng.permutation(cfg.count)[: int(round(rate * cfg.count))]] = 1
            target[:, j] = present
        part = pd.DataFrame(target, columns=list(AU_COLUMNS))
        part.insert(0, "task", pool["task"].to_numpy()[pick])
        part.insert(0, "subject", subject)
        part.insert(0, "target_row", -1)
        part.insert(0, "source_row", pool["row_id"].to_numpy()[pick])
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def make_plan(store_path, cfg: PlanConfig = PlanConfig()) -> pd.DataFrame:
    """The plan for the aligned store at `store_path` (validated, deterministic from `cfg.seed`)."""
    frames = store_frames(store_path)
    rng = np.random.default_rng(cfg.seed)
    if cfg.policy == "match-test":
        df = _match_test(frames, cfg, rng)
    elif cfg.policy == "balanced":
        df = _by_rates(frames, cfg, _rate_vector(cfg.rates, 0.5), rng)  # given rates override 0.5
    else:
        if not cfg.rates:
            raise PlanError("policy 'rates' needs rates per AU, e.g. {12: 0.5, 4: 0.3}")
        df = _by_rates(frames, cfg, _rate_vector(cfg.rates, None), rng)
    df.insert(0, "plan_row", np.arange(len(df), dtype=np.int64))
    df["seed"] = rng.integers(0, 2**62, size=len(df), dtype=np.int64)
    df["policy"] = cfg.policy
    df["source_policy"] = cfg.source
    return validate_plan(df, "<new plan>", frames)


# ---- schema ----------------------------------------------------------------------------------------------
def validate_plan(df: pd.DataFrame, source: str = "<memory>", frames: pd.DataFrame | None = None) -> pd.DataFrame:
    """`df` in PLAN_SCHEMA's order and dtypes, or PlanError naming `source`. With `frames` (see
    `store_frames`), also checks that every source/target row exists in the store and was aligned."""
    missing = [f.name for f in PLAN_SCHEMA if f.name not in df.columns]
    if missing:
        raise PlanError(f"{source}: plan lacks columns {missing}")
    out = df[[f.name for f in PLAN_SCHEMA]].copy()
    for f in PLAN_SCHEMA:
        if out[f.name].isna().any():
            raise PlanError(f"{source}: column {f.name!r} has missing values")
        out[f.name] = out[f.name].astype(f.type.to_pandas_dtype()) if pa.types.is_integer(f.type) \
            else out[f.name].astype(str)
    if not np.array_equal(out["plan_row"].to_numpy(), np.arange(len(out))):
        raise PlanError(f"{source}: plan_row must be 0..N-1 in order")
    if not np.isin(out[list(AU_COLUMNS)].to_numpy(), (-1, 0, 1)).all():
        raise PlanError(f"{source}: target labels must be 1, 0 or -1")
    if not out["policy"].isin(POLICIES).all():
        raise PlanError(f"{source}: unknown policy values {sorted(set(out['policy']) - set(POLICIES))}")
    if not out["source_policy"].isin(SOURCE_POLICIES).all():
        raise PlanError(f"{source}: unknown source policies {sorted(set(out['source_policy']) - set(SOURCE_POLICIES))}")
    if frames is not None:
        ok = frames["row_id"].to_numpy()[frames["ok"].to_numpy()]
        for col in ("source_row", "target_row"):
            rows = out[col].to_numpy()
            rows = rows[rows >= 0] if col == "target_row" else rows
            bad = np.setdiff1d(rows, ok)
            if len(bad):
                raise PlanError(f"{source}: {col} values {bad[:5].tolist()} are not aligned frames of the store "
                                f"(missing or failed alignment)")
    return out.reset_index(drop=True)


def write_plan(df: pd.DataFrame, path, store_path=None, cfg: PlanConfig | None = None) -> Path:
    """Validate and write atomically; the store path and the config are kept in the file's metadata."""
    path = Path(path)
    df = validate_plan(df, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(PLAN_SCHEMA.metadata)
    if store_path is not None:
        meta[b"lacgan.store"] = str(Path(store_path).resolve()).encode()
    if cfg is not None:
        meta[b"lacgan.plan_config"] = json.dumps({**cfg.__dict__, "rates": _jsonable(cfg.rates)}).encode()
    table = pa.Table.from_pandas(df, schema=PLAN_SCHEMA.with_metadata(meta), preserve_index=False)
    with replacing(path) as tmp:
        pq.write_table(table, tmp)
    return path


def _jsonable(rates):
    return None if rates is None else {str(k): float(v) for k, v in rates.items()}


def read_plan(path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise PlanError(f"{path}: no such plan (run `lacgan plan` first)")
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise PlanError(f"{path}: not a readable Parquet file ({e})") from e
    return validate_plan(table.to_pandas(), str(path))


def plan_config(path) -> dict | None:
    """The PlanConfig fields a plan was made with (from its metadata), or None when not recorded."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    return json.loads(meta[b"lacgan.plan_config"]) if b"lacgan.plan_config" in meta else None


def plan_store(path) -> Path | None:
    """The aligned store a plan was made for (from its metadata), if recorded."""
    meta = pq.read_schema(path).metadata or {}
    return Path(meta[b"lacgan.store"].decode()) if b"lacgan.store" in meta else None


def plan_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def plan_labels(df: pd.DataFrame) -> np.ndarray:
    """(N, 12) int8 target labels in AUS order."""
    return df[list(AU_COLUMNS)].to_numpy(np.int8)


def achieved_rates(df: pd.DataFrame) -> pd.DataFrame:
    """Per AU: frames targeted (label != -1) and the share of those set present."""
    lab = plan_labels(df)
    known = (lab != -1).sum(axis=0)
    present = (lab == 1).sum(axis=0)
    rate = np.where(known > 0, present / np.maximum(known, 1), np.nan)
    return pd.DataFrame({"au": list(AUS), "targeted": known, "present": present, "rate": rate})


def build_plan(store_path, out_path, cfg: PlanConfig = PlanConfig()) -> Path:
    """Make and write the plan; the step the CLI and the flow call."""
    return write_plan(make_plan(store_path, cfg), out_path, store_path, cfg)
