"""The embedded cohort: a synthetic, BP4D-layout AU dataset the project writes itself (faces, AU_OCC labels,
exact 68-point landmarks), so every pipeline runs on a fresh machine with nothing downloaded.

    from manifests.cohort import CohortConfig, write_cohort, load_landmarks, is_cohort, render_face
"""

from .config import CohortConfig, subject_names, task_names
from .geometry import Pose
from .identity import Identity, subject_identity
from .render import Light, render_face
from .writer import CohortError, is_cohort, load_landmarks, write_cohort

__all__ = [
    "CohortConfig",
    "CohortError",
    "Identity",
    "Light",
    "Pose",
    "is_cohort",
    "load_landmarks",
    "render_face",
    "subject_identity",
    "subject_names",
    "task_names",
    "write_cohort",
]
