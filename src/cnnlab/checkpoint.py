"""Checkpoints and exported weights, written so that a crash at any moment loses nothing.

A checkpoint is written to a temporary file, flushed to disk, and renamed over `last.pt` after the
old one is renamed to `previous.pt`; a kill between the two renames leaves `previous.pt`, which
`load_latest` falls back to. Checkpoints load with `weights_only=True`, so a checkpoint file can
hold tensors and plain data but never code. Final weights are exported as safetensors, with a
header written in one fixed order so that identical weights give byte-identical files.

Resuming is strict where `load_latest` is lenient: `load_for_resume` warns when it falls back from a
damaged `last.pt` and sets that file aside as evidence, and refuses (instead of starting over) when
no checkpoint can be read.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from cnnlab.atomic import fsync_directory, replace_atomically, temporary_for, write_file
from cnnlab.errors import UserError
from cnnlab.rundir import LAST_CHECKPOINT as LAST
from cnnlab.rundir import PREVIOUS_CHECKPOINT as PREVIOUS

DAMAGED_SUFFIX = ".damaged"
# What `fit` reads back from every checkpoint; one without them cannot be resumed.
REQUIRED_KEYS = ("format", "model", "optimizer", "schedule", "position", "rng")


class DamagedCheckpoint(Exception):
    """A checkpoint file that cannot be read or lacks what a resume needs."""


def save_checkpoint(state: dict, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    last = directory / LAST
    temporary = temporary_for(last)
    # Serialized in memory first: torch.save straight into a file turns a full disk into an
    # obscure "unexpected pos" RuntimeError, while a plain write raises OSError(ENOSPC).
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_file(temporary, buffer.getbuffer(), durable=True)
    # Not one atomic replace: the old last.pt is kept as previous.pt first.
    if last.exists():
        os.replace(last, directory / PREVIOUS)
    os.replace(temporary, last)
    fsync_directory(directory)
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


def read_checkpoint(path: Path) -> dict:
    """The state a checkpoint file holds; DamagedCheckpoint says why it cannot be resumed from."""
    try:
        with warnings.catch_warnings():
            # torch warns about the odd pickle protocol of a torn file before failing on it;
            # the failure below says it once.
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - arbitrary bytes fail in arbitrary ways
        # (struct.error, KeyError, UnpicklingError, ...): all of them mean "damaged".
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DamagedCheckpoint(f"unreadable: {reason[:120]}") from None
    if not isinstance(state, dict):
        raise DamagedCheckpoint(f"not a checkpoint: it holds a {type(state).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise DamagedCheckpoint(f"missing {', '.join(missing)}")
    return state


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint out of the rotation (last.pt -> last.pt.damaged[-N]), so the
    next save cannot replace the evidence."""
    target = path.with_name(path.name + DAMAGED_SUFFIX)
    number = 2
    while target.exists():
        target = path.with_name(f"{path.name}{DAMAGED_SUFFIX}-{number}")
        number += 1
    os.replace(path, target)
    return target


def load_for_resume(directory: Path, keep_evidence: bool = True) -> tuple[dict | None, Path | None]:
    """The checkpoint a resume continues from, and its path; (None, None) when none was ever
    written. Falling back from a damaged last.pt warns and sets it aside; when no checkpoint is
    readable, resuming would silently start over, so it raises UserError naming each file."""
    present = [directory / name for name in (LAST, PREVIOUS) if (directory / name).exists()]
    damaged: list[tuple[Path, str]] = []
    for path in present:
        try:
            state = read_checkpoint(path)
        except DamagedCheckpoint as problem:
            damaged.append((path, str(problem)))
            continue
        for bad, reason in damaged:
            kept = set_aside(bad) if keep_evidence else bad
            warnings.warn(f"{bad} is damaged ({reason}); resuming from {path.name}, one "
                          f"checkpoint earlier; the damaged file is kept as {kept.name}",
                          stacklevel=2)
        return state, path
    if not damaged:
        return None, None
    problems = "; ".join(f"{path} is damaged ({reason})" for path, reason in damaged)
    absent = "" if len(damaged) == 2 else f" and there is no {PREVIOUS} to fall back to"
    raise UserError(f"cannot resume: {problems}{absent}; restore a checkpoint from a backup, or "
                    f"start a new run with another --out (resuming would silently start over)")


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its JSON header in one fixed order (sorted keys, no
    spaces). safetensors writes metadata from a hash map whose order changes per process, so
    identical weights would otherwise give files with different hashes. Tensor offsets are
    relative to the end of the header, so only the header changes."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes with spaces
    return len(text).to_bytes(8, "little") + text + data[8 + length:]


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    # Written by Python's open(), so the file gets the same permissions as the run's others.
    data = canonical_safetensors(safetensors_bytes(cpu_state_dict(model), metadata=metadata))
    replace_atomically(path, data, durable=True)


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a safetensors file into `model`; a damaged file or weights of another model is a
    UserError naming the file."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{path} is not a readable safetensors file ({error}); it may be "
                        "truncated or damaged: re-export it, or evaluate the other weights "
                        "(--weights best or final)") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {_some(missing)}")
        if unexpected:
            details.append(f"unexpected {_some(unexpected)}")
        if wrong:
            k = wrong[0]
            details.append(f"{len(wrong)} with another shape (e.g. {k}: {tuple(state[k].shape)} "
                           f"in the file, {tuple(expected[k].shape)} in the model)")
        raise UserError(f"{path} does not hold weights of this run's model ({'; '.join(details)}"
                        "); it was written by another config: evaluate it with that run's folder")
    model.load_state_dict(state)


def _some(keys: list[str], shown: int = 3) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more
