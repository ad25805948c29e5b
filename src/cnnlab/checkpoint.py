"""Checkpoints and exported weights, written so that a crash at any moment loses nothing.

A checkpoint is written to a temporary file, flushed to disk, and renamed over `last.pt` after the
old one is renamed to `previous.pt`; a kill between the two renames leaves `previous.pt`, which
`load_latest` falls back to. Checkpoints load with `weights_only=True`, so a checkpoint file can
hold tensors and plain data but never code. Final weights are exported as safetensors.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

LAST = "last.pt"
PREVIOUS = "previous.pt"


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(state: dict, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f"{LAST}.tmp"
    with open(temporary, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    last = directory / LAST
    if last.exists():
        os.replace(last, directory / PREVIOUS)
    os.replace(temporary, last)
    _fsync_directory(directory)
    return last


def load_latest(directory: Path) -> tuple[dict | None, Path | None]:
    """The newest readable checkpoint in `directory` and its path, or (None, None)."""
    for name in (LAST, PREVIOUS):
        path = directory / name
        if not path.exists():
            continue
        try:
            return torch.load(path, map_location="cpu", weights_only=True), path
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError):
            continue  # a torn or corrupt file: fall back to the one before
    return None, None


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    save_file(cpu_state_dict(model), str(temporary), metadata=metadata)
    os.replace(temporary, path)


def load_weights(model: nn.Module, path: Path) -> None:
    state = load_file(str(path))
    model.load_state_dict(state)
