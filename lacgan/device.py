"""Device selection: CUDA when present (or asked for), CPU otherwise. No code path assumes the CPU."""

from __future__ import annotations

import torch


def pick_device(requested: str | None = None) -> torch.device:
    """`requested` is "auto"/None (CUDA if available), "cpu", "cuda" or "cuda:N"; asking for CUDA without one fails."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} was asked for, but torch sees no CUDA device")
    return dev
