"""Label-balanced training sets: synthetic frames planned from the training folds only, so that the real +
synthetic set's AU presence rates move toward a goal. The plan is an ordinary plan (pipelines.plan's schema).

Goals (`TrainsetConfig.goal`, also the plan's `policy`):

- `balanced`: every AU's rate toward `balanced_rate` (0.5); with `floor` (e.g. 0.3), every AU's rate at least
  the floor (AUs already above it are not pushed anywhere).
- `rates`: user-given rates for the named AUs; the other AUs are free and follow their co-occurrences.

Plausible targets. A synthetic frame's target is the whole 12-AU label vector of one real training frame (its
`target_row`), so only co-occurrence patterns that occur in the training folds are ever asked for. What moves the
rates is how often each pattern is drawn: weights w_i ∝ exp(λ·y_i) over the training label vectors y_i, the
distribution closest to uniform (least KL divergence) whose AU rates equal the synthetic rates q that bring the
mixture to the goal, q = ((n + m)·goal − n·real) / m for n real and m synthetic frames, clipped to [0, 1].
λ minimises the convex dual log Σ_i exp(λ·y_i) − λ·q + ½·ridge·|λ|² (λ_j = 0 for a free AU, λ_j ≥ 0 for
a floor); the ridge keeps λ finite when no mixture of the patterns reaches q (say AU23 present in 90 % of the
frames), which then gets as close as the ridge allows: a smaller ridge gets closer with fewer distinct patterns.
Frames with an unknown label are not used as patterns. Patterns are drawn by systematic resampling.

Sources and identities. Every real training frame is a source about `ratio` times (each one floor(ratio) times,
the remainder drawn without replacement), paired with the drawn patterns at random: the synthetic set has the real
set's identities, poses and lighting, and the rare-AU patterns are spread over all training identities instead of
staying with the few subjects who show them. A synthetic frame's subject and task are its source's.

Labels checked by a critic (optional, `TrainsetConfig.critic`). A synthetic frame's labels are its target, but an
edit can fail: the generator is asked to raise a brow and does not. A detector trained on the training folds'
real frames (the job's own HOG+SVM, say) reads every synthetic frame; an AU the edit was to change (source and
target labels known and different) that the critic reads otherwise becomes unknown (-1) in the set's labels, so
no trainer learns from it; unchanged AUs and the critic's agreements keep the target. The critic must have been
trained with this `test_fold` held out. Its readings and the resulting labels are SYNTH/critic.parquet, which
`synthetic_labels` (the payoff, the export) applies. Chosen on the development splits (docs/trainset.md).

No source, identity or target pattern comes from a subject of `test_fold`: the planner draws only from the other
folds and checks its plan, `generate_trainset` checks any plan before generating, and the export checks again
(manifests.folds.check_training_rows).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.optimize import minimize
from scipy.special import logsumexp

from manifests.aus import AU_COLUMNS, AUS
from manifests.folds import check_training_rows
from pipelines.plan import PlanError, _rate_vector, read_plan, store_frames, validate_plan, write_plan

GOALS = ("balanced", "rates")
PLAN, SYNTH, EXPORT, PAYOFF = "plan.parquet", "synthetic", "export", "payoff"  # a training-set folder's parts
CRITIC = "critic.parquet"  # in SYNTH: the critic's readings and the labels the set uses


class TrainsetError(ValueError):
    """A training-set request that cannot be met (bad goal, rates or store); the message names the problem."""


@dataclass(frozen=True)
class TrainsetConfig:
    goal: str = "balanced"  # one of GOALS
    balanced_rate: float = 0.5  # balanced: the presence rate every AU moves toward
    floor: float | None = None  # balanced: raise only AUs below this rate to it (e.g. 0.3); None = all to the rate
    rates: dict | None = None  # rates: {AU: rate} ({12: 0.4} or {"AU12": 0.4}); unnamed AUs are free
    ratio: float = 1.0  # size knob: synthetic frames per real training frame
    test_fold: int = 3  # no source, identity or target pattern from this fold's subjects
    ridge: float = 0.05  # on the tilt λ: how far pattern weights may move to chase an unreachable goal
    seed: int = 0  # everything random in the plan derives from this
    critic: str | None = None  # the job's detector (hogsvm, jaanet; the CLI: its folder) that unlabels failed edits


# ---- goals ------------------------------------------------------------------------------------------------
def label_rates(labels: np.ndarray) -> np.ndarray:
    """(12,) share of frames with the AU present among frames where it is known (NaN if never known)."""
    labels = np.asarray(labels)
    known = (labels != -1).sum(axis=0)
    return np.where(known > 0, (labels == 1).sum(axis=0) / np.maximum(known, 1), np.nan)


def goal_rates(real: np.ndarray, cfg: TrainsetConfig) -> np.ndarray:
    """(12,) presence rates the real + synthetic set should reach (NaN: free, `rates` goal only; with a floor,
    at least these); bad rates are refused with the AU named."""
    if cfg.goal not in GOALS:
        raise TrainsetError(f"unknown goal {cfg.goal!r}; choose one of {GOALS}")
    for name, value in (("balanced_rate", cfg.balanced_rate), ("floor", cfg.floor)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise TrainsetError(f"{name} {value} is impossible: rates must lie in [0, 1]")
    try:
        given = _rate_vector(cfg.rates, None)
    except PlanError as e:
        raise TrainsetError(str(e)) from None
    except ValueError:
        bad = [k for k in cfg.rates if not str(k).upper().removeprefix("AU").isdigit()]
        raise TrainsetError(f"rate given for {bad[0]!r}, which is not an AU (write 12 or AU12)") from None
    if cfg.goal == "rates":
        if not cfg.rates:
            raise TrainsetError("goal 'rates' needs rates per AU, e.g. {'AU23': 0.3, 'AU24': 0.3}")
        return given
    if cfg.rates:
        raise TrainsetError("goal 'balanced' takes no per-AU rates; use goal 'rates' for those")
    if cfg.floor is not None:
        return np.maximum(real, cfg.floor)
    return np.full(len(AUS), cfg.balanced_rate)


def synthetic_share(real: np.ndarray, goal: np.ndarray, n_real: int, n_synth: int) -> np.ndarray:
    """Rates the synthetic frames need so that real + synthetic reaches `goal`, clipped to [0, 1]."""
    return np.clip(((n_real + n_synth) * goal - n_real * real) / n_synth, 0.0, 1.0)  # NaN (free) stays NaN


def pattern_weights(patterns: np.ndarray, q: np.ndarray, ridge: float, at_least: bool = False) -> np.ndarray:
    """Least-KL weights over the rows of `patterns` ((k, 12) in {0, 1}) whose mean is as close to `q` as the
    ridge allows (`at_least`: at least `q`); w ∝ exp(patterns @ λ), λ from the dual (module doc). AUs with q NaN
    are free. Sums to 1."""
    free = np.isnan(q)
    y, q = patterns[:, ~free].astype(np.float64), q[~free]

    def dual(lam):
        s = y @ lam
        w = np.exp(s - logsumexp(s))
        return logsumexp(s) - lam @ q + 0.5 * ridge * lam @ lam, y.T @ w - q + ridge * lam

    bounds = [(0, None) if at_least else (None, None)] * len(q)
    lam = minimize(dual, np.zeros(len(q)), jac=True, method="L-BFGS-B", bounds=bounds).x
    s = y @ lam
    return np.exp(s - logsumexp(s))


def _systematic(weights: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """m indices drawn in proportion to `weights` with the least sampling noise (systematic resampling)."""
    edges = np.cumsum(weights)
    edges[-1] = 1.0
    return np.searchsorted(edges, (rng.random() + np.arange(m)) / m, side="right").clip(max=len(weights) - 1)


def _sources(rows: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """m source rows: every row floor(m / n) times, the remainder without replacement; shuffled."""
    whole, rest = divmod(m, len(rows))
    return rng.permutation(np.concatenate([np.tile(rows, whole), rng.choice(rows, rest, replace=False)]))


def _avoid_self(src: np.ndarray, pat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Swap sources so that no frame is 'edited' to its own labels (source == pattern frame), when possible."""
    src = src.copy()
    for k in np.flatnonzero(src == pat):
        for j in rng.permutation(len(src))[:20]:
            if src[j] != pat[k] and src[k] != pat[j]:
                src[k], src[j] = src[j], src[k]
                break
    return src


# ---- the plan ---------------------------------------------------------------------------------------------
def training_frames(store_path, test_fold: int) -> pd.DataFrame:
    """The store's aligned frames outside `test_fold` (the only frames a training set may use)."""
    frames = store_frames(store_path)
    train = frames[frames["ok"] & (frames["fold"] != test_fold)]
    if train.empty:
        raise TrainsetError(f"{store_path}: no aligned frames outside test fold {test_fold}")
    return train.reset_index(drop=True)


def make_trainset_plan(store_path, cfg: TrainsetConfig = TrainsetConfig()) -> pd.DataFrame:
    """The training-set plan for the store (validated, checked for test-fold subjects, deterministic)."""
    if not cfg.ratio > 0:
        raise TrainsetError(f"ratio must be positive (synthetic frames per real frame), got {cfg.ratio}")
    frames = store_frames(store_path)
    train = training_frames(store_path, cfg.test_fold)
    labels = train[list(AU_COLUMNS)].to_numpy(np.int8)
    real = label_rates(labels)
    if np.isnan(real).any():
        raise TrainsetError(f"{store_path}: AU{AUS[int(np.flatnonzero(np.isnan(real))[0])]} is never labelled "
                            f"in the training folds, so its rate cannot be moved")
    goal = goal_rates(real, cfg)
    full = (labels != -1).all(axis=1)
    if not full.any():
        raise TrainsetError(f"{store_path}: no training frame has all 12 AUs labelled, so there are no label "
                            f"patterns to draw targets from")
    n, m = len(train), max(1, int(round(cfg.ratio * len(train))))
    rng = np.random.default_rng(cfg.seed)
    w = pattern_weights(labels[full], synthetic_share(real, goal, n, m), cfg.ridge, at_least=cfg.floor is not None)
    pattern_pos = np.flatnonzero(full)[_systematic(w, m, rng)]
    pattern_pos = pattern_pos[rng.permutation(m)]
    row_ids = train["row_id"].to_numpy()
    src = _avoid_self(_sources(row_ids, m, rng), row_ids[pattern_pos], rng)
    by_row = train.set_index("row_id")
    df = pd.DataFrame(labels[pattern_pos], columns=list(AU_COLUMNS))
    df.insert(0, "task", by_row.loc[src, "task"].to_numpy())
    df.insert(0, "subject", by_row.loc[src, "subject"].to_numpy())
    df.insert(0, "target_row", row_ids[pattern_pos])
    df.insert(0, "source_row", src)
    df.insert(0, "plan_row", np.arange(m, dtype=np.int64))
    df["seed"] = rng.integers(0, 2**62, size=m, dtype=np.int64)
    df["policy"] = cfg.goal
    df["source_policy"] = "random"  # for plan schemas that record it; ignored by those that do not
    plan = validate_plan(df, "<new training-set plan>", frames)
    check_training_rows(plan, frames, cfg.test_fold, "<new training-set plan>")
    return plan


def plan_trainset(store_path, out_path, cfg: TrainsetConfig = TrainsetConfig()) -> Path:
    """Make and write the plan (the step the CLI and the flow call). An existing plan file is kept when it
    is exactly this plan (so generation resumes) and refused when it is another one."""
    plan, out_path = make_trainset_plan(store_path, cfg), Path(out_path)
    if out_path.exists():
        if read_plan(out_path).equals(plan):
            return out_path
        raise TrainsetError(f"{out_path}: holds a different plan (other store, goal, ratio or seed); use a new "
                            f"output folder or delete it")
    return write_plan(plan, out_path, store_path, cfg)


def generate_trainset(plan_path, store_path, checkpoint, out, test_fold: int = 3, gen_cfg=None):
    """Generate a training-set plan with pipelines.generate, after refusing any plan that uses a subject of
    `test_fold` (as source, identity or target pattern). Returns the GenerateSummary."""
    from pipelines.generate import GenerateConfig, generate

    check_training_rows(read_plan(plan_path), store_frames(store_path), test_fold, str(plan_path))
    return generate(plan_path, store_path, checkpoint, out, gen_cfg or GenerateConfig())


def _checked_synthetic(synth_out, store_path, test_fold: int):
    """The preamble both extras share: a finished generation's labelled manifest (`synthetic_labels`), refused when
    its identities, sources or target patterns include a test-fold subject or it was generated from another store;
    with the aligned store and the landmarks at its source rows."""
    import zarr

    from manifests.aligned import AlignedStore
    from pipelines import synth_store as ss

    man = synthetic_labels(synth_out)
    check_training_rows(man, store_frames(store_path), test_fold, str(synth_out))
    made_from = zarr.open_group(str(Path(synth_out) / ss.STORE_NAME), mode="r").attrs.get("store")
    if made_from and Path(made_from).resolve() != Path(store_path).resolve():
        raise TrainsetError(f"{synth_out}: generated from the aligned store {made_from}, not {store_path}")
    store = AlignedStore.open(store_path)
    rows = man["source_row"].to_numpy(np.int64)
    return man, store, rows, store.landmarks.get_orthogonal_selection((rows, slice(None), slice(None)))


def synthetic_extra(synth_out, store_path, test_fold: int = 3):
    """The synthetic frames of a finished `generate` output as detectors.frames.ExtraFrames (labels =
    `synthetic_labels`: the targets, or the critic's where it read the set; landmarks = the sources'), for
    `train_detector(..., extra=[...])`. Refused: frames generated from another store, or whose identities, sources
    or target patterns include a test-fold subject."""
    from detectors.frames import ExtraFrames, FrameSource
    from pipelines import synth_store as ss

    man, _, _, landmarks = _checked_synthetic(synth_out, store_path, test_fold)
    frames = FrameSource.from_group(Path(synth_out) / ss.STORE_NAME, frame_ids=man["plan_row"].to_numpy(),
                                    sequences=(man["subject"] + "/" + man["task"]).to_numpy(dtype=object),
                                    labels=man[list(AU_COLUMNS)].to_numpy(np.int8))
    return ExtraFrames(frames, landmarks)


def source_extra(synth_out, store_path, test_fold: int = 3):
    """The synthetic frames' SOURCE frames again, each with its own real labels and landmarks, as
    detectors.frames.ExtraFrames: the payoff's control arm (pipelines.payoff), as many extra frames of the same
    faces as the synthetic set, with nothing new in them. Refused like `synthetic_extra`."""
    from detectors.frames import ExtraFrames, FrameSource, store_sequences

    man, store, rows, landmarks = _checked_synthetic(synth_out, store_path, test_fold)
    frames = FrameSource(store.images, rows, man["plan_row"].to_numpy(np.int64), store_sequences(store)[rows],
                         store.labels()[rows], name=f"{synth_out} (its sources)")
    return ExtraFrames(frames, landmarks)


# ---- the critic: labels the edits carry ------------------------------------------------------------------
def critic_labels(targets: np.ndarray, sources: np.ndarray, readings: np.ndarray) -> np.ndarray:
    """(n, 12) int8 training labels of synthetic frames: the targets, with every AU the edit was to change (source
    and target label known, different) set to unknown (-1) where the critic read it otherwise. `readings` is the
    critic's 1 / 0, or -1 where it does not score the AU (then the target stays)."""
    targets, sources, readings = (np.asarray(a, np.int8) for a in (targets, sources, readings))
    doubted = _changed(targets, sources) & (readings != -1) & (readings != targets)
    return np.where(doubted, np.int8(-1), targets).astype(np.int8)


def _changed(targets: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Where an edit changes an AU: source and target label known and different."""
    return (targets != sources) & (targets != -1) & (sources != -1)


def _critic_record(synth_out, critic_dir) -> dict:
    from lacgan.checkpoint import file_sha256

    return {"generation_sha256": file_sha256(Path(synth_out) / "generation.json"),
            "critic": str(Path(critic_dir).resolve()),
            "critic_config_sha256": file_sha256(Path(critic_dir) / "config.json")}


def check_edits(synth_out, store_path, critic_dir, test_fold: int = 3, device: str | None = None) -> Path:
    """Score every synthetic frame of a finished generation with the critic (a trained detector folder whose
    training held out `test_fold`) and write SYNTH/critic.parquet: plan_row, the training labels
    (`critic_labels`), and the critic's reading per AU. Kept when it is already this critic's reading of this
    generation (resume)."""
    from detectors.base import load_detector
    from detectors.frames import FrameSource
    from manifests.aligned import AlignedStore
    from manifests.schema import write_table
    from pipelines import synth_store as ss

    synth_out, critic_dir = Path(synth_out), Path(critic_dir)
    path = synth_out / CRITIC
    try:
        info = json.loads((critic_dir / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise TrainsetError(f"{critic_dir}: not a trained detector folder ({e})") from None
    held_out = info.get("summary", {}).get("test_fold")
    if held_out != test_fold:
        raise TrainsetError(f"{critic_dir}: the critic was trained with test fold {held_out}, not {test_fold}: it "
                            f"may have seen the held-out subjects; train it on the training folds only")
    record = _critic_record(synth_out, critic_dir)
    try:
        if path.exists() and _read_critic(path)[1] == record:
            return path
    except TrainsetError:  # unreadable: it is derived, so it is made again
        pass
    man = ss.read_parts(synth_out)
    check_training_rows(man, store_frames(store_path), test_fold, str(synth_out))
    detector = load_detector(info["detector"], critic_dir, device=device)
    frames = FrameSource.from_group(synth_out / ss.STORE_NAME, frame_ids=man["plan_row"].to_numpy())
    read = detector.score(frames).pivot(index="frame_id", columns="au", values="present")
    readings = read.reindex(index=man["plan_row"].to_numpy(), columns=list(AUS)).fillna(-1).to_numpy(np.int8)
    sources = AlignedStore.open(store_path).labels()[man["source_row"].to_numpy()]
    labels = critic_labels(man[list(AU_COLUMNS)].to_numpy(np.int8), sources, readings)
    df = pd.DataFrame({"plan_row": man["plan_row"].to_numpy(np.int64),
                       **{c: labels[:, j] for j, c in enumerate(AU_COLUMNS)},
                       **{f"read_{c}": readings[:, j] for j, c in enumerate(AU_COLUMNS)}})
    schema = pa.schema([pa.field("plan_row", pa.int64(), nullable=False),
                        *[pa.field(c, pa.int8(), nullable=False) for c in AU_COLUMNS],
                        *[pa.field(f"read_{c}", pa.int8(), nullable=False) for c in AU_COLUMNS]])
    return write_table(df, path, schema, {b"lacgan.critic": json.dumps(record).encode()})


def _read_critic(path: Path) -> tuple[pd.DataFrame, dict]:
    try:
        meta = pq.read_schema(path).metadata or {}
        return pd.read_parquet(path), json.loads(meta.get(b"lacgan.critic", b"{}"))
    except (OSError, ValueError, pa.ArrowInvalid) as e:
        raise TrainsetError(f"{path}: unreadable critic file ({e}); re-run `lacgan trainset --critic ...` to make it "
                            f"again") from None


def synthetic_labels(synth_out) -> pd.DataFrame:
    """The synthetic manifest (synth_store.read_parts) with the labels a training set uses: the critic's
    (SYNTH/critic.parquet, `check_edits`) where it exists, else the targets. A critic file from another generation
    is refused."""
    from pipelines import synth_store as ss

    return _with_critic_labels(ss.read_parts(synth_out), synth_out)


def _with_critic_labels(man: pd.DataFrame, synth_out) -> pd.DataFrame:
    """synthetic_labels for a manifest already read."""
    from lacgan.checkpoint import file_sha256

    path = Path(synth_out) / CRITIC
    if not path.exists():
        return man
    critic, record = _read_critic(path)
    if record.get("generation_sha256") != file_sha256(Path(synth_out) / "generation.json"):
        raise TrainsetError(f"{path}: the critic read another generation; run `lacgan trainset --critic ...` again "
                            f"or delete the file")
    if not np.array_equal(critic["plan_row"].to_numpy(), man["plan_row"].to_numpy()):
        raise TrainsetError(f"{path}: its rows are not the synthetic frames' rows")
    man = man.copy()
    man[list(AU_COLUMNS)] = critic[list(AU_COLUMNS)].to_numpy(np.int8)
    return man


def critic_summary(synth_out, store_path) -> pd.DataFrame:
    """Per AU: synthetic frames whose edit changes it, how many of those the critic made unknown, and the share."""
    from manifests.aligned import AlignedStore
    from pipelines import synth_store as ss

    man = ss.read_parts(synth_out)
    used = _with_critic_labels(man, synth_out)
    sources = AlignedStore.open(store_path).labels()[man["source_row"].to_numpy()]
    changed = _changed(man[list(AU_COLUMNS)].to_numpy(np.int8), sources)
    unknown = changed & (used[list(AU_COLUMNS)].to_numpy(np.int8) == -1)
    return pd.DataFrame({"au": list(AU_COLUMNS), "changed": changed.sum(0), "made_unknown": unknown.sum(0),
                         "share_%": 100 * unknown.sum(0) / np.maximum(changed.sum(0), 1)})


def critic_fingerprint(synth_out) -> str | None:
    """Hash of SYNTH/critic.parquet (None without one): part of what the payoff and the export were made from."""
    from lacgan.checkpoint import file_sha256

    path = Path(synth_out) / CRITIC
    return file_sha256(path) if path.exists() else None


def build_trainset(store_path, checkpoint, out, cfg: TrainsetConfig = TrainsetConfig(), gen_cfg=None,
                   plan_path=None, critic_dir=None) -> dict:
    """Plan (or take `plan_path`), generate, check the edits with the critic (`critic_dir`, a trained detector
    folder; needed when `cfg.critic` names one) and export a training set into `out` (OUT/plan.parquet,
    OUT/synthetic, OUT/export); every step resumes. Returns the paths and each step's wall time."""
    import time

    from pipelines.trainset_export import ExportConfig, export_trainset

    out, times = Path(out), {}
    t0 = time.perf_counter()
    plan = Path(plan_path) if plan_path else plan_trainset(store_path, out / PLAN, cfg)
    times["plan_s"] = time.perf_counter() - t0
    summary = generate_trainset(plan, store_path, checkpoint, out / SYNTH, cfg.test_fold, gen_cfg)
    times["generate_s"] = time.perf_counter() - t0 - times["plan_s"]
    if cfg.critic is not None and critic_dir is None:
        raise TrainsetError(f"trainset.critic is {cfg.critic!r}: give that detector's trained folder")
    if critic_dir is not None:
        check_edits(out / SYNTH, store_path, critic_dir, cfg.test_fold)
    elif (out / SYNTH / CRITIC).exists():  # a critic's labels from an earlier build with one: not this set's
        (out / SYNTH / CRITIC).unlink()
    times["critic_s"] = time.perf_counter() - t0 - times["plan_s"] - times["generate_s"]
    manifest = export_trainset(store_path, out / SYNTH, out / EXPORT, ExportConfig(test_fold=cfg.test_fold))
    times["export_s"] = time.perf_counter() - t0 - sum(times.values())
    return {"plan": str(plan), "synthetic": str(out / SYNTH), "export": str(out / EXPORT),
            "manifest": str(manifest), "generation": summary, **times}


# ---- what the set looks like ------------------------------------------------------------------------------
def rate_table(real_labels: np.ndarray, synth_labels: np.ndarray, goal: np.ndarray | None = None) -> pd.DataFrame:
    """Per AU: presence rate of the real frames (before), of the synthetic frames, of real + synthetic (after),
    and the goal when given."""
    both = np.concatenate([real_labels, synth_labels])
    table = pd.DataFrame({"au": [f"AU{a}" for a in AUS], "real": label_rates(real_labels),
                          "synthetic": label_rates(synth_labels), "real+synthetic": label_rates(both)})
    if goal is not None:
        table["goal"] = goal
    return table


def trainset_rates(store_path, plan_path, test_fold: int = 3, cfg: TrainsetConfig | None = None) -> pd.DataFrame:
    """`rate_table` of a training-set plan against the store's training frames (with the goal of `cfg`)."""
    real = training_frames(store_path, test_fold)[list(AU_COLUMNS)].to_numpy(np.int8)
    synth = read_plan(plan_path)[list(AU_COLUMNS)].to_numpy(np.int8)
    return rate_table(real, synth, None if cfg is None else goal_rates(label_rates(real), cfg))


def config_dict(cfg: TrainsetConfig) -> dict:
    return {**asdict(cfg), "rates": None if cfg.rates is None else {str(k): float(v) for k, v in cfg.rates.items()}}
