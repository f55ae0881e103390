"""Checkpoints: every network (safetensors), every optimizer + grad scaler + RNG state (a `torch.save` of plain
tensors and dicts, loaded with `weights_only=True`), the step, and the config JSON.

Layout of a run directory:

    RUN/checkpoints/step-00001000/  models.safetensors  optim.pt  state.json
    RUN/checkpoints/latest          text: the name of the newest complete checkpoint directory

state.json records the model kind ("model": a key of `CONFIGS`, "lacgan" when absent: checkpoints written
before GANimation existed), so a checkpoint is read back with its own config class.

A checkpoint is written into a hidden temporary directory and renamed into place; `latest` is rewritten
(temp file + `os.replace`) only after that. A crash mid-write leaves the previous checkpoint and `latest` intact.

A checkpoint damaged afterwards (a truncated copy, a bad disk: its models file no longer matches the sha256 in
state.json, or a file does not parse) raises `CorruptCheckpointError`, one line naming the file and what to do.
Resuming a run (`resume`, `newest_good_checkpoint`) then falls back to the newest good checkpoint: the corrupt
newer ones are moved aside as `.corrupt-step-N` (kept for inspection, never deleted), `latest` is pointed at the
good one, and a warning names both. With no good checkpoint left, resuming stops with one line and moves nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lacgan.atomic import write_text
from lacgan.config import LacganConfig, SectionedConfig, config_hash, resume_key
from lacgan.ganimation.config import GanimationConfig

MODELS, OPTIM, STATE, LATEST = "models.safetensors", "optim.pt", "state.json", "latest"
CONFIGS: dict[str, type[SectionedConfig]] = {"lacgan": LacganConfig, "ganimation": GanimationConfig}  # model kinds
CORRUPT_PREFIX = ".corrupt-"  # corrupt checkpoints a resumed run moved aside: checkpoints/.corrupt-step-N
log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A missing, incomplete or incompatible checkpoint; the message names the path."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint whose files are damaged (unreadable, truncated, or not matching state.json's sha256): `file`,
    `problem` (without the path), and a message that adds what to do."""

    def __init__(self, file: Path, problem: str):
        super().__init__(f"{file}: {problem}; {_advice(file.parent)}")
        self.file, self.problem = file, problem

    def __reduce__(self):  # pickled back from worker processes (Dask) with its own arguments
        return type(self), (self.file, self.problem)


@dataclass
class Checkpoint:
    path: Path
    step: int
    config: SectionedConfig  # LacganConfig or GanimationConfig (CONFIGS[model])
    models: dict[str, dict[str, torch.Tensor]]  # network name -> state_dict
    optim: dict | None  # optimizer states, "scaler", "rng"; None when only the models were read
    model: str = "lacgan"  # model kind, a key of CONFIGS
    models_sha256: str | None = None  # sha256 of models.safetensors, computed when it was read

    @property
    def sha256(self) -> str:
        return self.models_sha256 or file_sha256(self.path / MODELS)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(run_dir, step: int, config: SectionedConfig, modules: dict[str, torch.nn.Module],
                    optim: dict, keep: int = 3) -> Path:
    """Write checkpoint `step` atomically, point `latest` at it, and keep only the newest `keep`."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    tmp, final = root / f".tmp-{name}", root / name
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tensors = {f"{net}.{k}": v.detach().cpu().contiguous() for net, m in modules.items()
               for k, v in m.state_dict().items()}
    save_file(tensors, str(tmp / MODELS))
    torch.save(optim, tmp / OPTIM)
    state = {"step": step, "model": config.MODEL, "config": config.to_dict(), "config_hash": config_hash(config),
             "models_sha256": file_sha256(tmp / MODELS)}
    (tmp / STATE).write_text(json.dumps(state, indent=1, sort_keys=True))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_latest(root, name)
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep or None]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write_latest(root: Path, name: str) -> None:
    write_text(root / LATEST, name + "\n")


def find_checkpoint(path) -> Path | None:
    """A checkpoint directory from a run directory (its latest), a checkpoints/ folder or the directory itself;
    None when a run directory has none yet."""
    path = Path(path)
    if (path / STATE).exists():
        return path
    for root in (path / "checkpoints", path):
        latest = root / LATEST
        if latest.exists():
            target = root / latest.read_text().strip()
            if not (target / STATE).exists():
                raise CheckpointError(f"{latest}: points at {target.name}, which is missing or incomplete")
            return target
    return None


def _state(path) -> tuple[Path, dict, str]:
    ck = find_checkpoint(path)
    if ck is None:
        raise CheckpointError(f"{path}: no checkpoint here (expected checkpoints/latest or {STATE})")
    try:
        state = json.loads((ck / STATE).read_text())
    except (OSError, ValueError) as e:
        raise CorruptCheckpointError(ck / STATE, f"unreadable ({e})") from e
    kind = state.get("model", "lacgan")
    if kind not in CONFIGS:
        raise CheckpointError(f"{ck}: unknown model kind {kind!r} (known: {sorted(CONFIGS)})")
    return ck, state, kind


def model_kind(path) -> str:
    """The model kind ("lacgan", "ganimation") of a run or checkpoint directory, read from its state.json."""
    return _state(path)[2]


def region_rule(path) -> str | None:
    """The AU region rule (lacgan.regions.RULES) a run or checkpoint directory's generator composites with;
    None for a model without regions (GANimation)."""
    ck, state, kind = _state(path)
    net = (state.get("config") or {}).get("net") or {}
    return net.get("regions", "reference") if kind == "lacgan" else None


def load_checkpoint(path, with_optim: bool = True, map_location="cpu", model: str | None = None) -> Checkpoint:
    """Read a checkpoint (run dir, checkpoints dir or checkpoint dir); tensors only, no pickled code.
    `model` (a key of CONFIGS) refuses a checkpoint of another model kind with a clear error."""
    ck, state, kind = _state(path)
    if model is not None and kind != model:
        raise CheckpointError(f"{ck}: holds a {kind} model, not {model} (load it with "
                              f"lacgan.editors.load_editor, which picks the editor by the checkpoint's kind)")
    try:
        config = CONFIGS[kind].from_dict(state["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptCheckpointError(ck / STATE, f"unreadable config ({e})") from e
    digest = _read_models_digest(ck, state)
    try:
        flat = load_file(str(ck / MODELS), device=str(map_location))
    except (OSError, SafetensorError) as e:
        raise CorruptCheckpointError(ck / MODELS, f"corrupt or truncated ({e})") from e
    models: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in flat.items():
        net, _, rest = k.partition(".")
        models.setdefault(net, {})[rest] = v
    optim = None
    if with_optim:
        try:
            optim = torch.load(ck / OPTIM, map_location=map_location, weights_only=True)
        except Exception as e:  # EOFError, UnpicklingError, RuntimeError (bad zip): torch names no common base
            raise CorruptCheckpointError(ck / OPTIM, f"corrupt or truncated ({type(e).__name__}: {e})") from e
    return Checkpoint(ck, int(state["step"]), config, models, optim, kind, digest)


def _read_models_digest(ck: Path, state: dict) -> str:
    """models.safetensors' sha256, checked against the one state.json recorded (when it recorded one)."""
    try:
        digest = file_sha256(ck / MODELS)
    except OSError as e:
        raise CorruptCheckpointError(ck / MODELS, f"unreadable ({e.strerror or e})") from e
    if state.get("models_sha256") not in (None, digest):
        raise CorruptCheckpointError(ck / MODELS, "corrupt (its sha256 is not the one state.json recorded when "
                                                  "it was written)")
    return digest


def _advice(ck: Path) -> str:
    """What to do about a corrupt checkpoint `ck`: the run's other checkpoints, and resuming."""
    others = sorted((p.name for p in ck.parent.glob("step-*") if p.is_dir() and p != ck), reverse=True)
    if not others:
        return f"the run has no other checkpoint: delete {ck} and train again (`lacgan train`)"
    return (f"use an older checkpoint of the run ({', '.join(others)} in {ck.parent}), or re-run `lacgan train` on "
            f"the run directory: it resumes from the newest good checkpoint")


def check_compatible(ck: Checkpoint, config: SectionedConfig) -> None:
    """A clear error when `config` cannot resume `ck` (another model, network, loss, optimiser or data setting)."""
    if ck.model != config.MODEL:
        raise CheckpointError(f"{ck.path}: checkpoint holds a {ck.model} model, this run trains {config.MODEL} "
                              f"(use a new --out directory)")
    a, b = resume_key(ck.config), resume_key(config)
    if a != b:
        diffs = [f"{sec}.{k}: checkpoint {a[sec][k]!r} vs now {b[sec].get(k)!r}" for sec in a if isinstance(a[sec], dict)
                 for k in a[sec] if a[sec][k] != b[sec].get(k)]
        diffs += [f"{sec}: checkpoint {a[sec]!r} vs now {b[sec]!r}" for sec in a
                  if not isinstance(a[sec], dict) and a[sec] != b[sec]]
        raise CheckpointError(f"{ck.path}: checkpoint was made with another config: " + "; ".join(diffs)
                              + " (use a new --out directory, or the checkpoint's own preset and options)")


def load_modules(ck: Checkpoint, modules: dict[str, torch.nn.Module]) -> None:
    for name, m in modules.items():
        if name not in ck.models:
            raise CheckpointError(f"{ck.path}: holds no weights for network {name!r}")
        try:
            m.load_state_dict(ck.models[name])
        except RuntimeError as e:
            raise CheckpointError(f"{ck.path}: weights of {name!r} do not fit the network ({e})") from e


def resume(run_dir, config: SectionedConfig, modules: dict[str, torch.nn.Module],
           optims: dict[str, torch.optim.Optimizer], map_location="cpu") -> Checkpoint | None:
    """Restore a run directory's latest checkpoint into `modules` and `optims` (after `check_compatible`) and set
    torch's RNG state from it; None when the run has no checkpoint yet. Other entries of the optimizer file
    (LAC-GAN's "scaler") are left to the caller, in `Checkpoint.optim`."""
    ck = newest_good_checkpoint(run_dir, map_location=map_location)
    if ck is None:
        return None
    check_compatible(ck, config)
    load_modules(ck, modules)
    for k, opt in optims.items():
        opt.load_state_dict(ck.optim[k])
    torch.set_rng_state(ck.optim["rng"].cpu())
    return ck


def newest_good_checkpoint(run_dir, map_location="cpu") -> Checkpoint | None:
    """The newest checkpoint of a run directory that loads whole (with its optimizer file); None when the run has
    none yet. Corrupt newer ones are moved aside (`CORRUPT_PREFIX`) and `latest` re-pointed, with a warning
    naming them and the one used; CheckpointError, moving nothing, when no checkpoint is good."""
    root = Path(run_dir) / "checkpoints"
    candidates = sorted((p for p in root.glob("step-*") if p.is_dir()), reverse=True) if root.is_dir() else []
    if not candidates:
        if (root / LATEST).exists():
            log.warning("%s names %s, which is gone, and no checkpoint is left: training from step 0",
                        root / LATEST, (root / LATEST).read_text().strip())
        return None
    bad: list[tuple[Path, CorruptCheckpointError]] = []
    for path in candidates:
        try:
            ck = load_checkpoint(path, map_location=map_location)
            break
        except CorruptCheckpointError as e:
            bad.append((path, e))
    else:
        raise CheckpointError(f"{root}: no good checkpoint to resume from, all {len(bad)} corrupt ("
                              + "; ".join(f"{e.file.relative_to(root)}: {e.problem}" for _, e in bad)
                              + f"); delete {root} to train this run from step 0, or use a new --out")
    for path, e in bad:
        aside, k = root / f"{CORRUPT_PREFIX}{path.name}", 1
        while aside.exists():  # one moved aside before: keep both
            aside, k = root / f"{CORRUPT_PREFIX}{path.name}.{k}", k + 1
        os.replace(path, aside)
        log.warning("checkpoint %s is corrupt (%s: %s); moved aside to %s; resuming from %s, the newest good "
                    "checkpoint", path, e.file.name, e.problem, aside.name, ck.path)
    latest = root / LATEST
    if bad or not latest.exists() or latest.read_text().strip() != ck.path.name:
        _write_latest(root, ck.path.name)
    return ck
