"""AU label simulation: BP4D-like base rates per task, co-occurrences, and smooth episodes over time.

Model (a Gaussian copula in time). For AU a in task t, a latent score u_a(frame) ~ N(0, 1) is built from
  - a per-subject expressivity offset (some people smile more),
  - shared *factors* (smile, brow raise, brow/lid tension, chin/lip press, sadness) with AU loadings, so that
    AUs of one factor co-occur (AU6+AU12, AU1+AU2, AU4+AU7, AU17+AU24, AU10+AU12, ...),
  - an AU-specific remainder,
each part a per-sequence constant plus a temporally smooth Gaussian process, so AUs switch on and off in
episodes rather than frame by frame. The AU is present when u_a exceeds the threshold Phi^-1(1 - r[t, a]), where
r[t, a] is the task's base rate: the marginal rate is exactly r in expectation. Intensity grows with how far
u_a is above its threshold, so an episode has an onset, an apex and an offset.
"""

from __future__ import annotations

from functools import lru_cache
from statistics import NormalDist

import numpy as np

from manifests.aus import AUS, N_AUS

# BP4D base rates of the 12 AUs over all coded frames (as reported by JAA-Net / DRML-era papers).
TARGET_RATES: dict[int, float] = {
    1: 0.21, 2: 0.17, 4: 0.20, 6: 0.46, 7: 0.55, 10: 0.59,
    12: 0.56, 14: 0.47, 15: 0.17, 17: 0.34, 23: 0.17, 24: 0.15,
}  # fmt: skip

# How strongly each task's emotion calls on each AU (0 = never typical, 1 = characteristic), from FACS/EMFACS
# prototypes and BP4D's per-task reports; rows T1..T8, columns in AUS order (1 2 4 6 7 10 12 14 15 17 23 24).
TASK_AFFINITY = np.array(
    [
        # 1    2    4    6    7   10   12   14   15   17   23   24
        [0.2, 0.2, 0.0, 1.0, 0.6, 0.7, 1.0, 0.5, 0.0, 0.2, 0.1, 0.1],  # T1 happiness / amusement
        [0.8, 0.2, 0.7, 0.2, 0.4, 0.4, 0.2, 0.5, 0.9, 0.8, 0.3, 0.5],  # T2 sadness
        [1.0, 1.0, 0.2, 0.4, 0.4, 0.5, 0.5, 0.4, 0.2, 0.3, 0.2, 0.2],  # T3 surprise / startle
        [0.2, 0.2, 0.1, 0.8, 0.6, 0.6, 0.9, 0.8, 0.3, 0.5, 0.3, 0.6],  # T4 embarrassment
        [0.7, 0.6, 0.6, 0.4, 0.7, 0.6, 0.4, 0.5, 0.3, 0.4, 0.5, 0.4],  # T5 fear / nervousness
        [0.2, 0.1, 0.9, 0.9, 1.0, 0.9, 0.5, 0.5, 0.3, 0.5, 0.5, 0.5],  # T6 physical pain
        [0.1, 0.1, 0.8, 0.5, 0.9, 0.6, 0.4, 0.5, 0.4, 0.8, 0.9, 0.8],  # T7 anger / upset
        [0.2, 0.1, 0.7, 0.7, 0.8, 1.0, 0.4, 0.5, 0.5, 0.6, 0.3, 0.4],  # T8 disgust
    ]
)
AFFINITY_GAIN = 4.0  # logit spread between a task's least and most typical AU

# Factor loadings (AU -> loading); rows of L are AUs. Squared loadings of an AU sum to < 1.
FACTORS: dict[str, dict[int, float]] = {
    "smile": {6: 0.80, 12: 0.85, 10: 0.60, 7: 0.30, 14: 0.45},
    "brow_raise": {1: 0.90, 2: 0.90},
    "tension": {4: 0.70, 7: 0.70, 10: 0.30, 23: 0.35, 6: 0.25},
    "chin_press": {17: 0.75, 24: 0.70, 23: 0.50, 15: 0.40, 14: 0.35},
    "sad": {1: 0.30, 4: 0.30, 15: 0.65, 17: 0.30},
}
VAR_SUBJECT = 0.15  # share of latent variance that is a per-subject offset
VAR_SEQUENCE = 0.35  # share that is constant over a task (moods persist), the rest varies in time
INTENSITY_FLOOR = 0.35  # intensity at onset (FACS level A-B); grows to 1 at 1.2 latent SDs above threshold
INTENSITY_SPAN = 1.2


@lru_cache(maxsize=1)
def loadings() -> np.ndarray:
    """(12, K) factor loadings in AUS order."""
    L = np.zeros((N_AUS, len(FACTORS)))
    for k, f in enumerate(FACTORS.values()):
        for au, w in f.items():
            L[AUS.index(au), k] = w
    if (L**2).sum(1).max() >= 1:
        raise ValueError("factor loadings of an AU must have squared sum < 1")
    return L


@lru_cache(maxsize=1)
def task_base_rates() -> np.ndarray:
    """(8, 12) per-task base rates r[t, a] whose mean over the 8 tasks equals TARGET_RATES (bisection per AU)."""
    aff = TASK_AFFINITY - TASK_AFFINITY.mean(0, keepdims=True)
    out = np.zeros_like(TASK_AFFINITY)
    for a, au in enumerate(AUS):
        lo, hi = -10.0, 10.0
        for _ in range(60):
            mid = (lo + hi) / 2
            r = 1 / (1 + np.exp(-(mid + AFFINITY_GAIN * aff[:, a])))
            lo, hi = (mid, hi) if r.mean() < TARGET_RATES[au] else (lo, mid)
        out[:, a] = r
    return out


def subject_effects(rng: np.random.Generator) -> np.ndarray:
    """(12,) per-subject latent offsets (unit variance; scaled inside simulate_sequence)."""
    return rng.standard_normal(N_AUS)


def _smooth_noise(rng: np.random.Generator, n: int, dims: int, tau: float) -> np.ndarray:
    """(n, dims) unit-variance Gaussian processes with a Gaussian autocorrelation of width ~tau frames."""
    half = int(np.ceil(3 * tau))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / tau) ** 2)
    k /= np.sqrt((k**2).sum())  # unit output variance
    white = rng.standard_normal((n + 2 * half, dims))
    return np.stack([np.convolve(white[:, d], k, mode="valid") for d in range(dims)], axis=1)


def episode_width(n_frames: int) -> float:
    """Temporal correlation width in frames: a sequence holds several episodes whatever its length."""
    return float(np.clip(n_frames / 10, 2.0, 25.0))


def simulate_sequence(
    rng: np.random.Generator, subject_effect: np.ndarray, task: int, n_frames: int, tau: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Latent AU activity of one task sequence.

    Returns (intensity (n, 12) float32 in [0, 1], 0 where absent; present (n, 12) bool).
    `task` is 0-based (0 = T1).
    """
    tau = episode_width(n_frames) if tau is None else tau
    L = loadings()
    uniq = np.sqrt(1 - (L**2).sum(1))
    K = L.shape[1]
    within = np.sqrt(1 - VAR_SEQUENCE)
    f = np.sqrt(VAR_SEQUENCE) * rng.standard_normal(K) + within * _smooth_noise(rng, n_frames, K, tau)
    e = np.sqrt(VAR_SEQUENCE) * rng.standard_normal(N_AUS) + within * _smooth_noise(rng, n_frames, N_AUS, tau)
    u = f @ L.T + e * uniq  # (n, 12), unit variance
    u = np.sqrt(VAR_SUBJECT) * subject_effect + np.sqrt(1 - VAR_SUBJECT) * u
    inv = NormalDist().inv_cdf
    theta = np.array([inv(1 - r) for r in task_base_rates()[task]])
    present = u > theta
    inten = INTENSITY_FLOOR + (1 - INTENSITY_FLOOR) * np.clip((u - theta) / INTENSITY_SPAN, 0, 1)
    return np.where(present, inten, 0.0).astype(np.float32), present


def unknown_mask(rng: np.random.Generator, n_frames: int) -> np.ndarray:
    """(n, 12) bool: frames/AUs the coders left as 9 (not codable: occlusion, head turned, talking)."""
    mask = np.zeros((n_frames, N_AUS), bool)
    if rng.random() < 0.3:  # a short run where a few AUs could not be coded
        length = int(rng.integers(1, max(2, n_frames // 8) + 1))
        start = int(rng.integers(0, max(1, n_frames - length + 1)))
        aus = rng.choice(N_AUS, size=int(rng.integers(1, 5)), replace=False)
        mask[start : start + length, aus] = True
    if rng.random() < 0.05:  # rarely, every AU of a frame or two
        start = int(rng.integers(0, n_frames))
        mask[start : start + int(rng.integers(1, 3))] = True
    return mask


def coded_labels(present: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """(n, 12) int8 in BP4D codes: 1 present, 0 absent, 9 unknown."""
    return np.where(unknown, 9, present.astype(np.int8)).astype(np.int8)


def label_statistics(labels: np.ndarray, tasks: np.ndarray, task_names: list[str]) -> dict:
    """Base rates overall and per task, and co-occurrence examples, from BP4D-coded labels (n, 12)."""

    def rates(x: np.ndarray) -> dict[str, float]:
        known = x != 9
        n = known.sum(0)
        p = np.where(n > 0, ((x == 1) & known).sum(0) / np.maximum(n, 1), np.nan)
        return {f"AU{au}": (None if np.isnan(v) else round(float(v), 4)) for au, v in zip(AUS, p)}

    pairs = [(6, 12), (12, 6), (4, 7), (17, 24), (24, 17), (1, 2), (2, 1), (10, 12), (6, 7), (15, 17)]
    cooc = {}
    for a, b in pairs:
        ia, ib = AUS.index(a), AUS.index(b)
        both_known = (labels[:, ia] != 9) & (labels[:, ib] != 9)
        has_a = both_known & (labels[:, ia] == 1)
        p_b = float((labels[has_a, ib] == 1).mean()) if has_a.any() else None
        base = float((labels[both_known, ib] == 1).mean()) if both_known.any() else None
        cooc[f"P(AU{b}|AU{a})"] = {"conditional": _r(p_b), "base": _r(base)}
    return {
        "frames": int(len(labels)),
        "unknown_fraction": round(float((labels == 9).mean()), 4) if len(labels) else None,
        "base_rates": rates(labels),
        "target_rates": {f"AU{au}": r for au, r in TARGET_RATES.items()},
        "base_rates_per_task": {name: rates(labels[tasks == t]) for t, name in enumerate(task_names)},
        "cooccurrence": cooc,
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
