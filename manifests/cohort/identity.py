"""Per-subject identity of the embedded cohort: face shape, proportions, colouring, hair and background."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Skin tones (RGB, 0..1) from light to dark; a subject's tone interpolates between neighbours.
SKIN_TONES = np.array(
    [[0.96, 0.80, 0.69], [0.92, 0.74, 0.60], [0.85, 0.64, 0.50], [0.76, 0.56, 0.42],
     [0.62, 0.44, 0.32], [0.47, 0.32, 0.23], [0.36, 0.24, 0.17]]
)  # fmt: skip
HAIR_COLOURS = np.array(
    [[0.08, 0.06, 0.05], [0.20, 0.13, 0.08], [0.35, 0.22, 0.12], [0.55, 0.38, 0.20],
     [0.75, 0.60, 0.35], [0.45, 0.18, 0.08], [0.55, 0.55, 0.55]]
)  # fmt: skip
IRIS_COLOURS = np.array(
    [[0.25, 0.15, 0.08], [0.35, 0.22, 0.10], [0.30, 0.42, 0.55], [0.32, 0.45, 0.30], [0.15, 0.10, 0.06]]
)  # fmt: skip
HAIR_STYLES = ("short", "long", "bob", "buzz", "bun")


@dataclass(frozen=True)
class Identity:
    """Everything that stays fixed for one person. Lengths are in face units (half face width = 1)."""

    female: bool
    face_width: float  # horizontal scale of the face outline
    face_length: float  # vertical scale of the lower face (eyes to chin)
    jaw_width: float  # width of the lower jaw relative to the cheekbones
    chin_width: float  # width of the chin
    eye_spacing: float  # multiplier on the distance between the eyes
    eye_tilt: float  # how much higher the outer eye corners sit than the inner ones (face units)
    eye_size: float  # multiplier on eye width and height
    eye_open: float  # multiplier on the eye aperture
    brow_height: float  # offset of the brows above the eyes (face units)
    brow_thickness: float  # brow thickness (face units)
    brow_arch: float  # extra height of the brow's peak
    nose_length: float  # multiplier on nose length
    nose_width: float  # multiplier on nostril width
    mouth_width: float  # multiplier on mouth width
    upper_lip: float  # upper lip thickness multiplier
    lower_lip: float  # lower lip thickness multiplier
    mouth_y: float  # offset of the mouth from its mean height
    skin: tuple[float, float, float]  # base skin colour, RGB 0..1
    lip: tuple[float, float, float]  # lip colour
    blush: float  # cheek redness
    hair: tuple[float, float, float]  # hair and brow colour
    hair_style: str  # one of HAIR_STYLES
    hairline: float  # height of the hairline above the brows (face units)
    hair_part: float  # where the parting is, -1 (image left) .. 1 (image right)
    iris: tuple[float, float, float]  # iris colour
    background: tuple[float, float, float]  # backdrop colour (top)
    background2: tuple[float, float, float]  # backdrop colour (bottom)
    shirt: tuple[float, float, float]  # clothing colour
    wrinkle_depth: float  # how deep expression wrinkles show (age-like)
    stubble: float  # beard shadow strength (0 for none)


def _mix(table: np.ndarray, t: float) -> tuple[float, float, float]:
    i = min(int(t), len(table) - 2)
    f = t - i
    return tuple(float(v) for v in (1 - f) * table[i] + f * table[i + 1])


def sample_identity(rng: np.random.Generator, female: bool) -> Identity:
    """Draw one person. `female` follows the subject id (F/M) and shifts shape statistics."""
    u = rng.uniform
    skin = np.array(_mix(SKIN_TONES, u(0, len(SKIN_TONES) - 1.001)))
    skin = np.clip(skin * u(0.95, 1.05, 3), 0, 1)
    hair = np.array(_mix(HAIR_COLOURS, u(0, len(HAIR_COLOURS) - 1.001)))
    lip = np.clip(skin * np.array([0.95, 0.62, 0.62]) + np.array([0.06, 0.0, 0.02]) * (1 if female else 0.4), 0, 1)
    bg_hue = rng.choice([[0.55, 0.60, 0.68], [0.62, 0.62, 0.60], [0.45, 0.52, 0.50], [0.70, 0.66, 0.58],
                         [0.35, 0.38, 0.45], [0.58, 0.55, 0.62]])  # fmt: skip
    bg = np.clip(np.array(bg_hue) * u(0.8, 1.15), 0, 1)
    styles = ("long", "bob", "bun", "short") if female else ("short", "buzz", "short", "bob")
    return Identity(
        female=female,
        face_width=u(0.88, 1.04) if female else u(0.95, 1.1),
        face_length=u(0.92, 1.05) if female else u(1.0, 1.12),
        jaw_width=u(0.82, 0.95) if female else u(0.92, 1.05),
        chin_width=u(0.8, 1.0) if female else u(0.95, 1.2),
        eye_spacing=u(0.92, 1.08),
        eye_tilt=u(-0.015, 0.03),
        eye_size=u(0.92, 1.12) if female else u(0.85, 1.04),
        eye_open=u(0.8, 1.2),
        brow_height=u(0.20, 0.26) if female else u(0.16, 0.22),
        brow_thickness=u(0.045, 0.06) if female else u(0.06, 0.085),
        brow_arch=u(0.03, 0.07) if female else u(0.0, 0.04),
        nose_length=u(0.88, 1.12),
        nose_width=u(0.85, 1.08) if female else u(0.95, 1.2),
        mouth_width=u(0.86, 1.1),
        upper_lip=u(0.9, 1.2) if female else u(0.75, 1.0),
        lower_lip=u(0.95, 1.25) if female else u(0.8, 1.1),
        mouth_y=u(-0.03, 0.03),
        skin=tuple(float(v) for v in skin),
        lip=tuple(float(v) for v in lip),
        blush=u(0.2, 0.5) if female else u(0.05, 0.3),
        hair=tuple(float(v) for v in hair),
        hair_style=str(rng.choice(styles)),
        hairline=u(0.55, 0.7),
        hair_part=float(rng.choice([-1, 1]) * u(0.3, 0.9)),
        iris=_mix(IRIS_COLOURS, u(0, len(IRIS_COLOURS) - 1.001)),
        background=tuple(float(v) for v in bg),
        background2=tuple(float(v) for v in np.clip(bg * u(0.6, 0.85), 0, 1)),
        shirt=tuple(float(v) for v in u(0.1, 0.8, 3)),
        wrinkle_depth=u(0.7, 1.0),
        stubble=0.0 if female else float(u(0, 1) < 0.4) * u(0.15, 0.35),
    )


def subject_identity(seed: int, subject_index: int) -> Identity:
    """The identity of subject number `subject_index` (0-based; even = F, odd = M) of a cohort seeded `seed`."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, subject_index]))
    return sample_identity(rng, female=subject_index % 2 == 0)
