"""The payoff of a training set: does adding the synthetic frames help a detector on held-out real frames?

Each trainable detector (detectors.base.TRAINERS) is trained twice per seed, with the same preset, seed and
budget: on the store's real training frames (arm `real`), and on those plus the synthetic frames (arm
`real+synthetic`, `train_detector(..., extra=[synthetic_extra(...)])`). Both are scored on the held-out fold's
REAL frames only. Same budget: HOG+SVM is one convex fit with the same settings either way; JAA-Net runs the same
number of optimizer steps (an epoch stays len(real training frames) // batch steps, drawn from the larger set;
detectors/jaanet/train.py).

Two optional arms (`PayoffConfig.controls`) tell what a delta is made of, trained and scored like the others:

- `sources` (arm `real+sources`, the control): the synthetic frames' source frames again, each with its own
  real labels and landmarks. As many extra frames of the same faces, drawn the same way, with nothing new in
  them: what mixing in that many frames does to the detector under the same budget.
- `counterfactual` (arm `real+counterfactual`, the ceiling; the embedded cohort only): the cohort's renderings
  of the same plan (pipelines.counterfactual: each source re-rendered with its target AUs), labelled with the
  targets. What a generator that drew every edit exactly as the renderer does would buy. It never reaches
  LAC-GAN; it measures the plan and the detector, not the generator.

Output folder:

    OUT/runs/<detector>-<arm>-seed<k>/    each trained detector (resumes; JAA-Net from its checkpoint)
    OUT/scores/<...>.parquet             its held-out scores, written once it is trained (the resume mark)
    OUT/scores.parquet                   all of them (PAYOFF_SCHEMA): every number below is recomputed from it
    OUT/payoff.{md,csv,json}, OUT/payoff.png   per-AU F1 mean ± sd over seeds per arm, the delta, which AUs
                                         gained or lost, and the always-present baseline
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from manifests.aus import AUS
from manifests.schema import write_table

ARMS = ("real", "real+synthetic")
CONTROLS = {"sources": "real+sources", "counterfactual": "real+counterfactual"}  # optional arms (module doc)

PAYOFF_SCHEMA = pa.schema(
    [
        pa.field("detector", pa.string(), nullable=False),  # registry name
        pa.field("arm", pa.string(), nullable=False),  # one of ARMS: what it was trained on
        pa.field("seed", pa.int64(), nullable=False),  # training seed
        pa.field("frame_id", pa.int64(), nullable=False),  # aligned-store row of a held-out real frame
        pa.field("au", pa.int8(), nullable=False),  # AU number; unsupported AUs have no rows
        pa.field("score", pa.float32()),  # the detector's score
        pa.field("present", pa.int8(), nullable=False),  # its 1/0 decision
        pa.field("label", pa.int8(), nullable=False),  # ground truth: 1, 0, -1 unknown
        pa.field("status", pa.string(), nullable=False),  # "ok" or why the frame has no valid score
    ],
    metadata={b"lacgan.schema": b"payoff-scores/1"},
)


class PayoffError(ValueError):
    """A payoff run that cannot start or resume; the message names the folder or the input."""


def check_controls(controls) -> None:
    """Refuse a control name that is not one of CONTROLS (PayoffError naming it)."""
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown:
        raise PayoffError(f"unknown payoff control {unknown[0]!r}; choose from {sorted(CONTROLS)}")


@dataclass(frozen=True)
class PayoffConfig:
    detectors: tuple[str, ...] = ("hogsvm",)  # trainable detectors (detectors.base.TRAINERS)
    seeds: tuple[int, ...] = (0, 1)  # training seeds (each config's `seed`); each arm is trained once per seed
    configs: dict = field(default_factory=dict)  # {detector: its typed config} for both arms; unnamed: the "cpu"
    #                                             preset (detectors.base.detector_preset)
    test_fold: int = 3  # trained on by neither arm; its real frames are the only ones scored
    band: float = 1.0  # |delta| below this many F1 points counts as unchanged
    controls: tuple[str, ...] = ()  # optional arms, names of CONTROLS: "sources" (control), "counterfactual" (ceiling)

    def __post_init__(self):
        check_controls(self.controls)

    @property
    def arms(self) -> tuple[str, ...]:
        """The arms trained per detector and seed: real, real+synthetic, then the controls asked for."""
        return ARMS + tuple(CONTROLS[c] for c in CONTROLS if c in self.controls)

    def config(self, det: str, seed: int):
        """Detector `det`'s config for one run: its config (or the "cpu" preset) with `seed`."""
        from dataclasses import replace

        from detectors.base import detector_preset

        base = self.configs.get(det) or detector_preset(det, "cpu")
        return replace(base, seed=seed)


def _slug(arm: str) -> str:
    return arm.replace("+", "-")


def _fingerprint(store_path, synth_out, det: str, arm: str, seed: int, cfg: PayoffConfig) -> bytes:
    from pipelines.trainset import critic_fingerprint

    gen = Path(synth_out) / "generation.json"
    synthetic = arm != "real" and gen.exists()
    blob = {"store": str(Path(store_path).resolve()), "detector": det, "arm": arm, "seed": seed,
            "config": asdict(cfg.config(det, seed)), "test_fold": cfg.test_fold,
            "synthetic": hashlib.sha256(gen.read_bytes()).hexdigest() if synthetic else None}
    # the labels the synthetic frames carry (only that arm learns them)
    critic = critic_fingerprint(synth_out) if synthetic and arm == ARMS[1] else None
    if critic:  # absent: the targets, and the fingerprint of a set without a critic stays what it was
        blob["critic"] = critic
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest().encode()


def _current(path: Path, fingerprint: bytes) -> bool:
    try:
        return (pq.read_schema(path).metadata or {}).get(b"lacgan.fingerprint") == fingerprint
    except (OSError, pa.ArrowInvalid):
        return False


def train_and_score(store_path, run_dir, det: str, seed: int, cfg: PayoffConfig, extra=None
                    ) -> tuple[pd.DataFrame, dict]:
    """Train one detector (one arm, one seed) and score the held-out fold's real frames; (long table, info)."""
    from detectors.base import load_detector, train_detector
    from detectors.frames import FrameSource

    t0 = time.perf_counter()
    summary = train_detector(det, store_path, run_dir, cfg.config(det, seed), test_fold=cfg.test_fold, extra=extra)
    test = FrameSource.from_store(store_path, fold=cfg.test_fold)
    detector = load_detector(det, run_dir)
    df = detector.score(test)
    pos = pd.Series(np.arange(len(test)), index=test.frame_ids).loc[df["frame_id"].to_numpy()].to_numpy()
    df["label"] = test.labels[pos, np.searchsorted(np.asarray(AUS), df["au"].to_numpy())]
    info = {"supported_aus": [int(a) for a in detector.supported_aus], "train_frames": summary.get("train_frames"),
            "extra_frames": summary.get("extra_frames", 0), "steps_per_epoch": summary.get("steps_per_epoch"),
            "minutes": round((time.perf_counter() - t0) / 60, 2),
            "config": json.loads(json.dumps(asdict(cfg.config(det, seed)), default=str))}
    return df, info


def measure_payoff(store_path, synth_out, out, cfg: PayoffConfig = PayoffConfig()) -> Path:
    """Train, score and tabulate every (detector, seed, arm); resumes with what is missing. Returns payoff.md."""
    from pipelines.trainset import source_extra, synthetic_extra

    out = Path(out)
    if not cfg.seeds or not cfg.detectors:
        raise PayoffError("give at least one detector and one seed")
    extras = {ARMS[0]: None, ARMS[1]: [synthetic_extra(synth_out, store_path, cfg.test_fold)]}
    if "sources" in cfg.controls:
        extras[CONTROLS["sources"]] = [source_extra(synth_out, store_path, cfg.test_fold)]
    if "counterfactual" in cfg.controls:
        cf = _counterfactual_frames(synth_out, store_path, out / "counterfactual")
        extras[CONTROLS["counterfactual"]] = [synthetic_extra(cf, store_path, cfg.test_fold)]
    parts, runs = [], {}
    for det in cfg.detectors:
        for seed in cfg.seeds:
            for arm in cfg.arms:
                name = f"{det}-{_slug(arm)}-seed{seed}"
                part, fp = out / "scores" / f"{name}.parquet", _fingerprint(store_path, synth_out, det, arm, seed, cfg)
                if not _current(part, fp):
                    df, info = train_and_score(store_path, out / "runs" / name, det, seed, cfg, extras[arm])
                    df = df.assign(detector=det, arm=arm, seed=seed)
                    meta = {b"lacgan.fingerprint": fp, b"lacgan.run": json.dumps(info).encode()}
                    write_table(df, part, PAYOFF_SCHEMA, meta)
                table = pq.read_table(part)
                runs[name] = json.loads(table.schema.metadata[b"lacgan.run"])
                parts.append(table.to_pandas())
    scores = pd.concat(parts, ignore_index=True)
    write_table(scores, out / "scores.parquet", PAYOFF_SCHEMA, {b"lacgan.runs": json.dumps(runs).encode(),
                                            b"lacgan.test_fold": str(cfg.test_fold).encode()})
    return write_payoff(out / "scores.parquet", out, cfg.band)


def _counterfactual_frames(synth_out, store_path, out) -> Path:
    """The cohort's renderings of the plan the synthetic set was generated from, in `out` (resumes)."""
    import zarr

    from pipelines import synth_store as ss
    from pipelines.counterfactual import write_counterfactuals
    from pipelines.plan import plan_sha256

    attrs = zarr.open_group(str(Path(synth_out) / ss.STORE_NAME), mode="r").attrs
    plan = Path(attrs.get("plan", ""))
    if not plan.is_file() or plan_sha256(plan) != attrs.get("plan_sha256"):
        raise PayoffError(f"{synth_out}: the plan it was generated from ({plan}) is gone or changed; the "
                          f"counterfactual control renders that plan")
    return write_counterfactuals(plan, store_path, out)


# ---- the numbers, from the score file ---------------------------------------------------------------------
def read_payoff_scores(path) -> tuple[pd.DataFrame, dict]:
    """(long score table, {run name: info incl. supported_aus})."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid) as e:
        raise PayoffError(f"{path}: no readable payoff score table ({e}); run `lacgan payoff` first") from None
    if meta.get(b"lacgan.schema") != b"payoff-scores/1":
        raise PayoffError(f"{path}: not a payoff score table (schema tag missing)")
    return pd.read_parquet(path), json.loads(meta.get(b"lacgan.runs", b"{}"))


def run_f1(scores: pd.DataFrame, supported: list[int]) -> pd.DataFrame:
    """Per-AU metrics (detectors.metrics.au_metrics) of one run's long table."""
    from detectors.metrics import au_metrics

    ids = np.sort(scores["frame_id"].unique())
    labels = scores.pivot_table(index="frame_id", columns="au", values="label", aggfunc="first")
    labels = labels.reindex(index=ids, columns=list(AUS)).fillna(-1).to_numpy(np.int8)
    return au_metrics(labels, scores, tuple(supported), ids)


def run_auc(scores: pd.DataFrame) -> pd.Series:
    """Per-AU ROC AUC of one run's long table (its `score` against the known labels; NaN where an AU's frames
    hold one class only), and their "mean": how well the detector ranks, whatever its threshold."""
    from sklearn.metrics import roc_auc_score

    ok = scores[(scores["label"] != -1) & (scores["status"] == "ok") & scores["score"].notna()]
    auc = {str(au): roc_auc_score(g["label"], g["score"]) if g["label"].nunique() == 2 else np.nan
           for au, g in ok.groupby("au")}
    auc["mean"] = float(np.nanmean(list(auc.values()))) if any(np.isfinite(list(auc.values()))) else np.nan
    return pd.Series(auc, name="auc")


def payoff_table(scores: pd.DataFrame, runs: dict, band: float = 1.0) -> pd.DataFrame:
    """One row per detector and AU (and "mean"): always-present F1, F1 mean/sd over seeds per arm, the mean
    paired delta and its sd, a verdict (gain / loss / unchanged, |delta| < band), and each arm's ROC AUC
    (mean over seeds; `*_auc`)."""
    per_run = []
    for (det, arm, seed), g in scores.groupby(["detector", "arm", "seed"], sort=True):
        m = run_f1(g, runs[f"{det}-{_slug(arm)}-seed{seed}"]["supported_aus"])
        m = m.merge(run_auc(g), left_on="au", right_index=True, how="left")
        per_run.append(m.assign(detector=det, arm=arm, seed=seed))
    runs_df = pd.concat(per_run, ignore_index=True)
    auc = runs_df.pivot_table(index=["detector", "au"], columns="arm", values="auc", aggfunc="mean", dropna=False)
    wide = runs_df.pivot_table(index=["detector", "au", "seed"], columns="arm", values="f1", dropna=False)
    wide["delta"] = wide[ARMS[1]] - wide[ARMS[0]]
    controls = [k for k, arm in CONTROLS.items() if arm in wide.columns]
    for k in controls:
        wide[f"{k}_delta"] = wide[CONTROLS[k]] - wide[ARMS[0]]
    agg = wide.groupby(level=["detector", "au"], sort=False).agg(["mean", "std"])
    base = runs_df[runs_df["arm"] == ARMS[0]].groupby(["detector", "au"], sort=False)[["baseline_f1", "n",
                                                                                       "positives"]].first()
    cols = {"n": base["n"], "positives": base["positives"], "always_present": base["baseline_f1"],
            "real_mean": agg[(ARMS[0], "mean")], "real_sd": agg[(ARMS[0], "std")],
            "synth_mean": agg[(ARMS[1], "mean")], "synth_sd": agg[(ARMS[1], "std")],
            "delta": agg[("delta", "mean")], "delta_sd": agg[("delta", "std")]}
    for k in controls:  # the control / ceiling arms: their F1 and their own delta against real only
        cols |= {f"{k}_mean": agg[(CONTROLS[k], "mean")], f"{k}_sd": agg[(CONTROLS[k], "std")],
                 f"{k}_delta": agg[(f"{k}_delta", "mean")], f"{k}_delta_sd": agg[(f"{k}_delta", "std")]}
    for key, arm in (("real", ARMS[0]), ("synth", ARMS[1]), *((k, CONTROLS[k]) for k in controls)):
        cols[f"{key}_auc"] = auc[arm].reindex(agg.index)
    out = pd.DataFrame(cols).reset_index()
    order = {str(a): i for i, a in enumerate(AUS)} | {"mean": len(AUS)}
    out = out.sort_values(["detector", "au"], key=lambda c: c.map(order) if c.name == "au" else c)
    out["verdict"] = np.select([out["delta"] >= band, out["delta"] <= -band], ["gain", "loss"], "unchanged")
    out.loc[out["delta"].isna(), "verdict"] = "−"
    out["seeds"] = scores["seed"].nunique()
    return out.reset_index(drop=True)


def _fmt(v, sd=None, sign=False) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "−"
    s = f"{v:+.1f}" if sign else f"{v:.1f}"
    return s if sd is None or np.isnan(sd) else f"{s} ± {sd:.1f}"


@dataclass(frozen=True)
class _ControlText:
    """How the page and the chart show one control arm."""
    head: str  # its table column and chart legend
    note: str  # its line under the table
    colour: str  # its bars
    against: Callable[[float, float], str]  # (its mean delta, the synthetic arm's) -> the sentence reading them


_CONTROL_TEXT = {
    "sources": _ControlText("real + sources again (control)",
                            "Control (the synthetic frames' sources again, own labels: the mixing alone)", "#b9b9b9",
                            lambda d, syn: f"the synthetic frames' content adds {syn - d:+.1f} beyond the mixing"),
    "counterfactual": _ControlText("real + counterfactual (ceiling)",
                                   "Ceiling (the cohort's true renderings of the same plan, targets as labels)",
                                   "#5b9a68",
                                   lambda d, syn: f"exact edits would add {d - syn:+.1f} over the synthetic frames"),
}


def budget_text(det: str, runs: dict) -> str:
    """What every arm of `det` was trained with (from the runs' saved info). A payoff holds for its budget only:
    JAA-Net's on the demo's set changes sign between its 10- and 18-epoch schedules (docs/trainset.md)."""
    infos = [info for name, info in runs.items() if name.startswith(f"{det}-")]
    configs = [info.get("config") for info in infos]
    if not infos or any(c is None for c in configs):
        return "Training budget: not recorded (score files written before it was)."
    cfg, steps = configs[0], {info.get("steps_per_epoch") for info in infos}
    if "epochs" in cfg:
        how = (f"{cfg['epochs']} epochs × {'/'.join(str(s) for s in sorted(steps, key=str))} steps of batch "
               f"{cfg['batch_size']}, lr {cfg['lr']} × {cfg['lr_gamma']} every {cfg['lr_step']} epochs")
    else:
        how = "one fit" + "".join(f", {k} {cfg[k]}" for k in ("C", "max_iter") if k in cfg)
    extra = sorted({info.get("extra_frames", 0) for info in infos} - {0})
    return (f"Training budget, every arm and seed: {how}; {infos[0].get('train_frames')} real training frames"
            + (f" (+ {' / '.join(map(str, extra))} extra frames in the mixed arms)" if extra else "") + ".")


def payoff_markdown(table: pd.DataFrame, runs: dict) -> str:
    lines = []
    for det, t in table.groupby("detector", sort=False):
        controls = [k for k in CONTROLS if f"{k}_mean" in t.columns and t[f"{k}_mean"].notna().any()]
        heads = [f"{_CONTROL_TEXT[k].head} | Δ" for k in controls]
        lines += [f"### {det}: held-out real frames, F1 % (mean ± sd over {int(t['seeds'].iloc[0])} seeds)", "",
                  "| AU | n | always present | real only | real + synthetic | Δ | |"
                  + "".join(f" {h} |" for h in heads), "|---|---|---|---|---|---|---|" + "---|---|" * len(heads)]
        for r in t.to_dict("records"):
            name = f"**{r['au']}**" if r["au"] == "mean" else f"AU{r['au']}"
            more = "".join(f" {_fmt(r[f'{k}_mean'], r[f'{k}_sd'])} | {_fmt(r[f'{k}_delta'], r[f'{k}_delta_sd'], sign=True)} |"
                           for k in controls)
            lines.append(f"| {name} | {r['n']} | {_fmt(r['always_present'])} | {_fmt(r['real_mean'], r['real_sd'])} | "
                         f"{_fmt(r['synth_mean'], r['synth_sd'])} | {_fmt(r['delta'], r['delta_sd'], sign=True)} | "
                         f"{r['verdict']} |" + more)
        per_au, m = t[t["au"] != "mean"], t[t["au"] == "mean"].iloc[0]
        mean = float(m["delta"])
        named = {v: ", ".join("AU" + a for a in per_au.loc[per_au["verdict"] == v, "au"]) or "none"
                 for v in ("gain", "loss")}
        lines += ["", f"Gained: {named['gain']}; lost: {named['loss']}."]
        if per_au["delta"].notna().any():
            worst = per_au.loc[per_au["delta"].idxmin()]
            met = mean >= 3 and worst.delta >= -3
            lines.append(f"Target (mean Δ ≥ +3, no AU below −3): {'met' if met else 'not met'} "
                         f"(mean Δ {mean:+.1f}, worst AU{worst.au} {worst.delta:+.1f})")
        arms = [("real only", "real"), ("real + synthetic", "synth"), *((_CONTROL_TEXT[k].head, k) for k in controls)]
        lines.append("Ranking, ROC AUC averaged over AUs and seeds (no threshold: an F1 Δ the AUC does not share "
                     "moved the decision threshold, not what the detector tells apart): "
                     + "; ".join(f"{name} {m[f'{key}_auc']:.3f}" + ("" if key == "real" else
                                 f" (Δ {m[f'{key}_auc'] - m['real_auc']:+.3f})") for name, key in arms) + ".")
        for k in controls:
            d, text = float(m[f"{k}_delta"]), _CONTROL_TEXT[k]
            lines.append(f"{text.note}: mean Δ {d:+.1f} against real only; {text.against(d, mean)}.")
        lines.append(budget_text(det, runs))
        lines.append("")
    return "\n".join(lines)


def payoff_chart(table: pd.DataFrame, path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dets = list(dict.fromkeys(table["detector"]))
    fig, axes = plt.subplots(len(dets), 1, figsize=(11, 3.4 * len(dets)), squeeze=False)
    for ax, det in zip(axes[:, 0], dets):
        t = table[table["detector"] == det]
        x = np.arange(len(t))
        bars = [("real", "real only", "#8c9db5"), ("synth", "real + synthetic", "#d9823b")]
        bars += [(k, c.head, c.colour) for k, c in _CONTROL_TEXT.items()
                 if f"{k}_mean" in t.columns and t[f"{k}_mean"].notna().any()]
        width = 0.8 / len(bars)
        for i, (key, label, colour) in enumerate(bars):
            ax.bar(x - 0.4 + width * (i + 0.5), t[f"{key}_mean"], width, yerr=t[f"{key}_sd"].fillna(0), label=label,
                   color=colour)
        ax.scatter(x, t["always_present"], marker="_", s=300, color="black", label="always present", zorder=3)
        tops = np.fmax.reduce(np.stack([t[f"{key}_mean"].to_numpy(float) for key, _, _ in bars]), axis=0)
        for xi, d, top in zip(x, t["delta"], tops):
            if not np.isnan(d):
                ax.text(xi, top + 3, f"{d:+.1f}", ha="center", fontsize=8, color="green" if d >= 0 else "red")
        ax.set_xticks(x, [a if a == "mean" else f"AU{a}" for a in t["au"]])
        ax.set_ylim(0, 125)
        ax.set_ylabel("F1 % (held-out real)")
        ax.set_title(f"{det}: real only vs real + synthetic (Δ of the synthetic arm above the bars)")
        ax.legend(fontsize=8, loc="upper center", ncol=len(bars) + 1, frameon=False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_payoff(scores_path, out, band: float = 1.0) -> Path:
    """payoff.{csv,json,md,png} from the score file alone; returns payoff.md."""
    out = Path(out)
    scores, runs = read_payoff_scores(scores_path)
    table = payoff_table(scores, runs, band)
    table.to_csv(out / "payoff.csv", index=False)
    (out / "payoff.json").write_text(json.dumps({"table": table.to_dict(orient="records"), "runs": runs},
                                                indent=2, default=str))
    payoff_chart(table, out / "payoff.png")
    md = out / "payoff.md"
    md.write_text(payoff_markdown(table, runs) + f"\nChart: payoff.png. Scores (recompute every number): {scores_path}\n")
    return md
