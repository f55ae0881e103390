"""Landmark bookkeeping for JAA-Net: the 68→49 mapping, left/right flips, and predefined AU attention maps.

JAA-Net's alignment branch predicts 49 points: iBUG-68 without the 17 jaw points (0..16) and without the two
inner-mouth corners (60, 64), which are hard to see and nearly coincide with the outer corners:

    49-index  0..9   brows        = 68-index 17..26
              10..18 nose         = 27..35
              19..30 eyes         = 36..47
              31..42 outer mouth  = 48..59
              43..45 inner upper  = 61, 62, 63
              46..48 inner lower  = 65, 66, 67

The AU attention maps use the centre rules of `lacgan.regions` (the EAC-Net/JAA-Net rules LAC-GAN also uses),
which need only brow, eye and outer-mouth points; so predicted 49 points are put back into a 68-point array
(`to_68`, jaw and inner corners NaN) and passed to `lacgan.regions.attention_maps`.
"""

from __future__ import annotations

import numpy as np

from lacgan.regions import attention_maps

KEEP_68: tuple[int, ...] = tuple(range(17, 60)) + (61, 62, 63, 65, 66, 67)  # 49-index -> 68-index
N_POINTS = len(KEEP_68)  # 49

# iBUG-68 mirror partner of each point (a face flipped left-right swaps these).
_PAIRS_68 = ([(i, 16 - i) for i in range(8)]  # jaw
             + [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22)]  # brows
             + [(31, 35), (32, 34)]  # nostrils
             + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
             + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips
             + [(60, 64), (61, 63), (65, 67)])  # inner lips


def _flip_perm_68() -> np.ndarray:
    perm = np.arange(68)
    for a, b in _PAIRS_68:
        perm[a], perm[b] = b, a
    return perm


FLIP_68 = _flip_perm_68()
_POS_49 = {j: i for i, j in enumerate(KEEP_68)}
FLIP_49 = np.array([_POS_49[FLIP_68[j]] for j in KEEP_68])  # the flip induced on the 49 points


def to_49(lm68: np.ndarray) -> np.ndarray:
    """(..., 68, 2) -> (..., 49, 2)."""
    return np.asarray(lm68)[..., list(KEEP_68), :]


def to_68(lm49: np.ndarray) -> np.ndarray:
    """(..., 49, 2) -> (..., 68, 2) with the 19 dropped points NaN (the AU centre rules never read them)."""
    lm49 = np.asarray(lm49, dtype=np.float32)
    out = np.full(lm49.shape[:-2] + (68, 2), np.nan, dtype=np.float32)
    out[..., list(KEEP_68), :] = lm49
    return out


def flip_landmarks(lm: np.ndarray, width: int) -> np.ndarray:
    """Mirror (..., 68|49, 2) pixel landmarks of a `width`-wide image: x -> width-1-x and left/right swapped."""
    lm = np.asarray(lm)
    perm = {68: FLIP_68, 49: FLIP_49}[lm.shape[-2]]
    out = lm[..., perm, :].copy()
    out[..., 0] = width - 1 - out[..., 0]
    return out


def interocular(lm49: np.ndarray) -> np.ndarray:
    """(..., 49, 2) -> (...,) distance between the eye centres (49-index 19..24 and 25..30)."""
    lm49 = np.asarray(lm49)
    return np.linalg.norm(lm49[..., 19:25, :].mean(-2) - lm49[..., 25:31, :].mean(-2), axis=-1)


def predefined_maps(lm49: np.ndarray, crop: int, map_size: int, rule_name: str = "wide") -> np.ndarray:
    """(B, 49, 2) points in pixels of a crop×crop input -> (B, 12, map_size, map_size) maps in [0, 1], AUS order,
    drawn by lacgan.regions' rule `rule_name` at the map's resolution (the trained `cpu` detectors use "wide")."""
    scale = map_size / crop
    return attention_maps(to_68(lm49) * scale + (scale - 1) / 2, map_size, rule_name)
