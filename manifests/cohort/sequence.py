"""One task sequence of the cohort, planned deterministically from (seed, subject, task): frame numbers, AU
labels and intensities, head poses, lighting, gaze and sensor noise; and the rendering of its frames.

Random streams are separate per purpose, so labels do not change when rendering changes:
SeedSequence([seed, 0, s]) identity, [seed, 1, s, t] labels, [seed, 2, s] subject expressivity,
[seed, 3, s, t] poses/lighting/noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import labels as lab
from .config import CohortConfig
from .geometry import Pose, sample_pose
from .identity import Identity, subject_identity
from .render import Light, render_face


@dataclass(frozen=True)
class SequencePlan:
    subject_index: int  # 0-based; even = F, odd = M
    task_index: int  # 0-based; 0 = T1
    frames: np.ndarray  # (n,) int frame numbers of all written images (uncoded lead-in/out included)
    coded: np.ndarray  # (n,) bool: frame is in the AU_OCC file
    intensity: np.ndarray  # (n, 12) float32 AU intensities that are rendered
    labels: np.ndarray  # (n_coded, 12) int8 BP4D codes 0/1/9 of the coded frames


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(key)))


def plan_sequence(config: CohortConfig, subject_index: int, task_index: int) -> SequencePlan:
    """Frame numbers and labels of one sequence (cheap: no rendering)."""
    rng = _rng(config.seed, 1, subject_index, task_index)
    effect = lab.subject_effects(_rng(config.seed, 2, subject_index))
    pre, post = (int(v) for v in rng.integers(0, 3, size=2))  # a couple of uncoded frames around the segment
    n = pre + config.frames + post
    start = int(rng.integers(100, max(101, min(3000, 9999 - n))))  # coding starts mid-sequence, as in BP4D
    frames = start + np.arange(n)
    coded = np.zeros(n, bool)
    coded[pre : pre + config.frames] = True
    intensity, present = lab.simulate_sequence(rng, effect, task_index, n, tau=lab.episode_width(config.frames))
    unknown = lab.unknown_mask(rng, config.frames)
    codes = lab.coded_labels(present[coded], unknown)
    return SequencePlan(subject_index, task_index, frames, coded, intensity, codes)


def _tracks(rng: np.random.Generator, n: int, dims: int, tau: float) -> np.ndarray:
    return lab._smooth_noise(rng, n, dims, tau)


@dataclass(frozen=True)
class FrameScene:
    """Everything of one frame except its AUs: pose, light, gaze and the sensor-noise draw. Rendering a scene
    with the frame's own intensities reproduces the cohort's JPEG bytes; with other intensities it draws the
    counterfactual "this frame, with these AUs" (pipelines/counterfactual.py)."""

    pose: Pose
    light: Light
    gaze: tuple[float, float]
    noise_seed: int  # OpenCV RNG seed of the frame's sensor noise
    noise_sd: float  # sensor noise standard deviation (grey levels), one per sequence


def sequence_scenes(config: CohortConfig, plan: SequencePlan) -> list[FrameScene]:
    """The scene of every frame of the plan, drawn from the sequence's own stream [seed, 3, s, t]."""
    rng = _rng(config.seed, 3, plan.subject_index, plan.task_index)
    n = len(plan.frames)
    base = sample_pose(rng, amount=1.0)
    motion = _tracks(rng, n, 6, tau=4.0) * 0.6  # smooth head movement within the task
    jitter = rng.standard_normal((n, 6)) * 0.15  # and small frame-to-frame shake
    light = Light(
        angle=float(-np.pi / 2 + rng.uniform(-1.3, 1.3)),
        strength=float(rng.uniform(0.08, 0.3)),
        ambient=float(rng.uniform(0.85, 1.08)),
        tint=tuple(float(v) for v in 1 + rng.uniform(-0.05, 0.05, 3)),
    )
    flicker = 1 + 0.02 * _tracks(rng, n, 1, tau=3.0)[:, 0]
    gaze = _tracks(rng, n, 2, tau=3.0) * 0.5
    noise_sd = float(rng.uniform(1.5, 4.0))
    scenes = []
    for i in range(n):  # the noise seeds are the stream's next n draws, in frame order
        d = motion[i] + jitter[i]
        pose = Pose(
            roll=base.roll + 0.05 * d[0],
            yaw=base.yaw + 0.06 * d[1],
            pitch=base.pitch + 0.04 * d[2],
            scale=base.scale * float(np.exp(0.03 * d[3])),
            cx=base.cx + 0.015 * d[4],
            cy=base.cy + 0.015 * d[5],
        )
        lit = Light(light.angle, light.strength, light.ambient * float(flicker[i]), light.tint)
        scenes.append(FrameScene(pose, lit, tuple(gaze[i]), int(rng.integers(2**31)), noise_sd))
    return scenes


def render_pixels(ident: Identity, intensity: np.ndarray, scene: FrameScene, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 image with sensor noise, before JPEG; landmarks (68, 2)) of one frame."""
    img, lm = render_face(ident, intensity, scene.pose, size, scene.light, gaze=scene.gaze)
    cv2.setRNGSeed(scene.noise_seed)  # OpenCV's generator is 3x faster than numpy's here
    noise = np.empty(img.shape, np.float32)
    cv2.randn(noise, 0.0, scene.noise_sd)
    return np.clip(img.astype(np.float32) + noise + 0.5, 0, 255).astype(np.uint8), lm


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return buf.tobytes()


def render_frame(config: CohortConfig, ident: Identity, intensity: np.ndarray, scene: FrameScene
                 ) -> tuple[bytes, np.ndarray]:
    """(JPEG bytes as the cohort writes them, landmarks (68, 2) float32) of one frame."""
    img, lm = render_pixels(ident, intensity, scene, config.size)
    return encode_jpeg(img, config.jpeg_quality), lm


def render_sequence(config: CohortConfig, plan: SequencePlan, ident: Identity | None = None):
    """Yield (frame number, JPEG bytes, landmarks (68, 2) float32) for every frame of the plan."""
    ident = ident or subject_identity(config.seed, plan.subject_index)
    for i, scene in enumerate(sequence_scenes(config, plan)):
        jpeg, lm = render_frame(config, ident, plan.intensity[i], scene)
        yield int(plan.frames[i]), jpeg, lm
