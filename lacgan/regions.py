"""AU regions of interest from 68 landmarks, by the EAC-Net / JAA-Net centre rules (paper Sec. 3.1, Eq. 1).

Two rules, chosen by name everywhere a map is drawn (`RULES`; the GAN's `NetConfig.regions`, JAA-Net's
`JaaNetConfig.regions`; both are in the configs saved beside every checkpoint and score file):

`reference` — PyTorch-JAANet's `network.py` `generate_map`, re-derived (its 49-point indices in iBUG-68 terms).
Scale = |x39 − x42|, the horizontal distance of the inner eye corners; offsets run along image y (crops are
aligned with the eyes level, as the reference's are):

    AU1        ½ scale above the inner brow ends (21, 22)
    AU2        ⅓ scale above brow points 18, 25
    AU4        ⅓ scale below the brow centres (19, 24)
    AU6        1 scale below the lower eyelids (41, 46)
    AU7        the upper eyelids (38, 43)
    AU10       the inner upper lip (61, 63)
    AU12/14/15 the lip corners (48, 54)
    AU17       ½ scale below the lower lip (56, 58)
    AU23/24    the lip centre (upper 51, lower 57)

Around each centre the reference fills a square of half-side round((M−1)/2·0.14) cells of its M-cell map with
1 − L1·0.56/(0.14·M) (L1 = Manhattan distance in cells), the two centres combined by max. In pixels of an S-px
crop that is a box of half-side 0.07·S holding 1 − 4·L1/S (≥ 0.44 at the corners, 0 outside the box); we draw
it at pixel resolution, unrounded.

`wide` — this project's earlier rule, kept as a named deviation: centres perpendicular to the eye line,
AU2 at the outer brow ends (17, 26), AU6 below the lower-lid means (40,41 / 46,47), AU7 at the eye centres,
AU10 at the upper-lip peaks (50, 52); a diamond of radius 0.14·S falling linearly from 1 to 0 (about twice
the reference's extent). docs/lacgan.md has what each rule measured.

Values lie in [0, 1]; a pixel is inside AU i's region when its map is > 0. AUs whose centres coincide share a
region: `REGION_GROUPS` lists the 9 distinct regions of the 12 AUs (one LAC-GAN region generator each).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from manifests.aus import AUS


@dataclass(frozen=True)
class RegionRule:
    name: str
    shape: str  # "box": square, 1 − 4·L1/S inside; "diamond": 1 − L1/radius, radius = extent·S
    extent: float  # box half-side or diamond radius, as a fraction of the crop side


RULES: dict[str, RegionRule] = {
    "reference": RegionRule("reference", "box", 0.07),  # PyTorch-JAANet: half of spatial_ratio 0.14
    "wide": RegionRule("wide", "diamond", 0.14),
}
DEFAULT_RULE = "reference"

# AUs with the same centres (the reference copies AU12's map to AU14/15 and AU23's to AU24): 9 regions.
REGION_GROUPS: tuple[tuple[int, ...], ...] = ((1,), (2,), (4,), (6,), (7,), (10,), (12, 14, 15), (17,), (23, 24))
AU_REGION: tuple[int, ...] = tuple(next(g for g, aus in enumerate(REGION_GROUPS) if a in aus) for a in AUS)

_up = lambda e: np.stack([e[..., 1], -e[..., 0]], axis=-1)  # noqa: E731  rotate the eye direction to "up" (y down)


def rule(name: str) -> RegionRule:
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown region rule {name!r}; choose one of {sorted(RULES)}") from None


def _mean(lm: np.ndarray, idx) -> np.ndarray:
    return lm[..., list(idx), :].mean(axis=-2)


def au_centres(landmarks: np.ndarray, rule_name: str = DEFAULT_RULE) -> np.ndarray:
    """(..., 68, 2) landmarks (x, y) -> (..., 12, 2, 2) centres: [AU, which centre, xy], in AUS order."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape[-2:] != (68, 2):
        raise ValueError(f"landmarks must have shape (..., 68, 2), got {lm.shape}")
    rule(rule_name)

    def pair(a, b):
        return np.stack([a, b], axis=-2)

    pt = lambda i: lm[..., i, :]  # noqa: E731
    if rule_name == "reference":  # image "up", horizontal inner-eye-corner distance
        u = np.array([0.0, -1.0]) * np.abs(lm[..., 42, 0] - lm[..., 39, 0])[..., None, None]
        brow2, lid6, lid7, lip10 = pair(pt(18), pt(25)), pair(pt(41), pt(46)), pair(pt(38), pt(43)), \
            pair(pt(61), pt(63))
    else:  # "up" perpendicular to the eye line, Euclidean inner-eye-corner distance
        eye_r, eye_l = _mean(lm, range(36, 42)), _mean(lm, range(42, 48))
        e = eye_l - eye_r
        e = e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-6)
        u = _up(e)[..., None, :] * np.linalg.norm(lm[..., 42, :] - lm[..., 39, :], axis=-1)[..., None, None]
        brow2, lid6, lid7, lip10 = pair(pt(17), pt(26)), pair(_mean(lm, (40, 41)), _mean(lm, (46, 47))), \
            pair(eye_r, eye_l), pair(pt(50), pt(52))
    corners, lip_centre = pair(pt(48), pt(54)), pair(pt(51), pt(57))
    rules = {1: pair(pt(21), pt(22)) + u / 2, 2: brow2 + u / 3, 4: pair(pt(19), pt(24)) - u / 3, 6: lid6 - u,
             7: lid7, 10: lip10, 12: corners, 14: corners, 15: corners, 17: pair(pt(56), pt(58)) - u / 2,
             23: lip_centre, 24: lip_centre}
    return np.stack([rules[a] for a in AUS], axis=-3).astype(np.float32)


def map_values(dx: np.ndarray, dy: np.ndarray, size: int, rule_name: str = DEFAULT_RULE) -> np.ndarray:
    """A map's value at offsets (dx, dy) px from one centre (arrays broadcast), by the rule's shape."""
    r = rule(rule_name)
    adx, ady = np.abs(dx), np.abs(dy)
    if r.shape == "box":
        half = np.float32(r.extent * size)
        v = 1.0 - np.float32(4.0 / size) * (adx + ady)
        return np.where((adx <= half) & (ady <= half), v, 0.0).astype(np.float32)
    return np.clip(1.0 - (adx + ady) / np.float32(r.extent * size), 0.0, 1.0).astype(np.float32)


def attention_maps(landmarks: np.ndarray, size: int, rule_name: str = DEFAULT_RULE) -> np.ndarray:
    """(..., 68, 2) landmarks in pixels of an S×S crop -> (..., 12, S, S) float32 maps A_i in [0, 1]."""
    c = au_centres(landmarks, rule_name)  # (..., 12, 2, 2)
    coords = np.arange(size, dtype=np.float32)
    dx = coords[None, :] - c[..., 0][..., None]  # (..., 12, 2, S) along x
    dy = coords[None, :] - c[..., 1][..., None]  # (..., 12, 2, S) along y
    maps = None
    for k in range(2):  # one (..., 12, S, S) buffer per centre, combined by max
        m = map_values(dx[..., k, None, :], dy[..., k, :, None], size, rule_name)
        maps = m if maps is None else np.maximum(maps, m, out=maps)
    return maps


def overlapping_aus(landmarks: np.ndarray, size: int, rule_name: str, groups) -> tuple[tuple[int, ...], ...]:
    """Per group of AUs (e.g. REGION_GROUPS), the AUs whose maps overlap the group's maps on the mean of these
    faces (n, 68, 2): the AUs that can change a pixel the group's generator draws. In AUS order."""
    covered = attention_maps(np.asarray(landmarks, np.float32).mean(0), size, rule_name) > 0  # (12, S, S)
    out = []
    for grp in groups:
        own = covered[[AUS.index(a) for a in grp]].any(0)  # (S, S): where the group's generator draws
        out.append(tuple(a for j, a in enumerate(AUS) if (covered[j] & own).any()))
    return tuple(out)


def region_boxes(landmarks: np.ndarray, size: int, rule_name: str = DEFAULT_RULE) -> np.ndarray:
    """(..., 68, 2) -> (..., 12, 4) int boxes (x0, y0, x1, y1), half-open, clipped to the crop, that hold
    every pixel where the AU's map is > 0. Cropping a region to its box loses nothing of it."""
    extent = rule(rule_name).extent * size
    c = au_centres(landmarks, rule_name)
    lo = np.floor(c.min(axis=-2) - extent).astype(np.int64)
    hi = np.ceil(c.max(axis=-2) + extent).astype(np.int64) + 1
    lo, hi = np.clip(lo, 0, size), np.clip(hi, 0, size)
    return np.concatenate([lo, hi], axis=-1)
