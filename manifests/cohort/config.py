"""Configuration and naming of the embedded cohort (BP4D layout)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# BP4D's eight tasks and the emotion each elicits (Zhang et al. 2014).
TASK_EMOTIONS: tuple[str, ...] = (
    "happiness/amusement",  # T1 talk with the experimenter, listen to a joke
    "sadness",  # T2 watch a documentary about a real emergency
    "surprise/startle",  # T3 sudden burst of a siren
    "embarrassment",  # T4 improvise a silly song
    "fear/nervousness",  # T5 anticipate a physical threat
    "physical pain",  # T6 cold pressor: hand in ice water
    "anger/upset",  # T7 insulted by the experimenter
    "disgust",  # T8 smell an unpleasant odour
)
MAX_TASKS = len(TASK_EMOTIONS)

# AU columns of BP4D's AU_OCC files beyond the frame column "0": more than the 12 the project uses.
OCC_COLUMNS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 27, 28)
# Of the extra columns, these are "not coded" (9) throughout, as for AUs BP4D coded in only some tasks.
UNCODED_EXTRA: tuple[int, ...] = (11, 13, 16, 18, 19, 22, 28)


@dataclass(frozen=True)
class CohortConfig:
    subjects: int = 12  # number of subjects, alternating F001, M001, F002, M002, ...
    tasks: int = 8  # tasks per subject, T1..Tn (n <= 8, BP4D's eight)
    frames: int = 40  # AU-coded frames per task (a consecutive segment, as in BP4D)
    size: int = 256  # image side in pixels (square)
    seed: int = 0  # everything (identities, labels, poses, noise) derives from it
    workers: int = 2  # processes rendering sequences in parallel; 1 renders in-process
    jpeg_quality: int = 90  # JPEG quality of the frames (BP4D ships JPEGs)

    def __post_init__(self) -> None:
        checks = {
            "subjects": self.subjects >= 1,
            "tasks": 1 <= self.tasks <= MAX_TASKS,
            "frames": 1 <= self.frames <= 5000,
            "size": 48 <= self.size <= 2048,
            "workers": self.workers >= 1,
            "jpeg_quality": 1 <= self.jpeg_quality <= 100,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"CohortConfig: invalid {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")

    def to_dict(self) -> dict:
        return asdict(self)


def subject_names(n: int) -> list[str]:
    """F001, M001, F002, M002, ... (n names)."""
    return [f"{'FM'[i % 2]}{i // 2 + 1:03d}" for i in range(n)]


def task_names(n: int) -> list[str]:
    return [f"T{i + 1}" for i in range(n)]
