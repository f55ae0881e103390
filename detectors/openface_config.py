"""The OpenFace detector's typed settings (no heavy imports: the CLI and the flows read them at start-up).

`grouping` says how frames are put to OpenFace; real and synthetic frames must be scored with the same one,
and it is recorded in every score file (see detectors/openface.py and docs/detectors.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, get_args

Grouping = Literal["sequence", "static", "frame"]
GROUPINGS: tuple[str, ...] = get_args(Grouping)
TEMPORAL_CONTEXT = {  # what OpenFace does across frames under each grouping (recorded in every score file)
    "sequence": "per-person calibration over the sequence, 7-frame majority vote on AUxx_c",
    "static": "7-frame majority vote on AUxx_c",
    "frame": "none: every frame decided alone",
}


class OpenFaceSettingsError(ValueError):
    """An OpenFace setting that cannot work (unknown grouping, non-positive timeout, options without a binary)."""


@dataclass(frozen=True)
class OpenFaceConfig:
    binary: str | None = None  # FeatureExtraction (or the folder of OpenFace's executables); else env, PATH
    image_binary: str | None = None  # FaceLandmarkImg (grouping "frame"); else env, next to `binary`, PATH
    grouping: Grouping = "sequence"  # "sequence" | "static" (-au_static) | "frame" (FaceLandmarkImg)
    model: str | None = None  # -mloc, e.g. "model/main_clnf_general.txt" for installs without CE-CLM experts
    timeout: float = 900.0  # seconds per OpenFace call (one sequence, or one batch of frames) before it is killed
    retries: int = 1  # extra attempts after a non-zero exit or a timeout
    batch: int = 256  # grouping "frame": frames per FaceLandmarkImg call (start-up is paid once per call)
    workdir: str | None = None  # where frames and CSVs go; a temporary folder (deleted after) when None

    def __post_init__(self):
        if self.grouping not in GROUPINGS:
            raise OpenFaceSettingsError(f"openface: grouping must be one of {list(GROUPINGS)}, got {self.grouping!r}")
        if self.batch < 1 or self.timeout <= 0 or self.retries < 0:
            raise OpenFaceSettingsError(f"openface: batch >= 1, timeout > 0 and retries >= 0 needed, got batch={self.batch}, "
                             f"timeout={self.timeout}, retries={self.retries}")


def settings_for(binary: str | None = None, model: str | None = None, grouping: str | None = None,
                 timeout: float | None = None) -> dict:
    """`load_detector("openface", **settings)` keywords from CLI/flow options; None means the config's default.
    Validated here, so a bad grouping or timeout fails before any step runs."""
    given = {"binary": binary, "model": model, "grouping": grouping, "timeout": timeout}
    return asdict(OpenFaceConfig(**{k: v for k, v in given.items() if v is not None}))


def optional_settings(binary: str | None, model: str | None = None, grouping: str | None = None,
                      timeout: float | None = None) -> dict | None:
    """Settings when OpenFace is to be scored (`binary` given), None when it is not. OpenFace options without a
    binary are an error rather than silently ignored."""
    if binary is None:
        default = OpenFaceConfig()
        extra = [k for k, v in (("model", model), ("grouping", grouping), ("timeout", timeout))
                 if v is not None and v != getattr(default, k)]
        if extra:
            raise OpenFaceSettingsError(f"OpenFace options {extra} given without the OpenFace binary: add --openface-bin "
                             "(flow parameter openface_bin) = FeatureExtraction or the folder of OpenFace's "
                             "executables")
        return None
    return settings_for(binary, model, grouping, timeout)
