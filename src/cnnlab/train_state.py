"""Everything a checkpoint holds, in one place: the position in training, the RNG states and
every stateful component, saved by one function and restored by one function.

A component is anything with `state_dict()` and `load_state_dict(state)`; registering it is one
line in the training setup, and its state then travels in every checkpoint under its name. The
checkpoint's keys stay those of format 1 (`format`, `model`, `optimizer`, `schedule`, `scaler`,
`ema`, `swa`, `early_stopping`, `diagnostics`, `position`, `rng`, `config`), with None for a
component the run does not use, so older checkpoints resume. A run with train.lookahead adds
one key, `lookahead` (its slow weights, after `swa`); the others keep exactly format 1's keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import torch

from cnnlab.checkpoint import save_checkpoint
from cnnlab.errors import UserError
from cnnlab.seeding import rng_state, set_rng_state

CHECKPOINT_FORMAT = 1


class Stateful(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...


def zero_sums(device) -> dict:
    """The running sums of an epoch's training loss, correct predictions, images and seconds."""
    return {"loss": torch.zeros((), dtype=torch.float64, device=device),
            "correct": torch.zeros((), dtype=torch.float64, device=device),
            "count": torch.zeros((), dtype=torch.long, device=device),
            "seconds": torch.zeros((), dtype=torch.float64)}


@dataclass
class Position:
    """Where training is, and what it has accumulated: the part of a checkpoint that is not a
    component's own state."""

    epoch: int = 0  # the epoch in progress (0-based)
    micro: int = 0  # micro-batches of it already done
    step: int = 0  # optimizer steps done in the whole run
    history: list = field(default_factory=list)
    best: dict = field(default_factory=dict)
    elapsed: float = 0.0
    sums: dict | None = None
    order: torch.Tensor | None = None
    stopped_early: int | None = None
    pruned: bool = False
    resume_changes: list = field(default_factory=list)  # config edits a forced resume accepted

    def state_dict(self) -> dict:
        return {**self.__dict__, "sums": {k: v.detach().cpu() for k, v in self.sums.items()}}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        saved = Position(**state)  # fields an older checkpoint lacks keep their defaults
        for spec in fields(self):
            setattr(self, spec.name, getattr(saved, spec.name))
        # The sums accumulate on the training device; the wall-clock seconds stay on the CPU.
        self.sums = {k: v.to(device) if k != "seconds" else v for k, v in self.sums.items()}


class GlobalRng:
    """The process's global RNG states (Python, NumPy, torch) as a component."""

    def state_dict(self) -> dict:
        return rng_state()

    def load_state_dict(self, state: dict) -> None:
        set_rng_state(state)


class LoadsWith:
    """A component whose `load_state_dict` needs more than its state (the run folder, the
    device), bound to those arguments so that `TrainState.restore` treats it like any other."""

    def __init__(self, component, *arguments):
        self.component, self.arguments = component, arguments

    def state_dict(self) -> Any:
        return self.component.state_dict()

    def load_state_dict(self, state: Any) -> None:
        self.component.load_state_dict(state, *self.arguments)


class TrainState:
    """The registered components of one run and the config they were trained with."""

    def __init__(self, config: dict):
        self.config = config  # what a resume compares config.yaml with
        self.components: dict[str, Stateful | None] = {}

    def register(self, name: str, component: Stateful | None) -> None:
        """Checkpoint `component` under `name`; None keeps the key, with None, for a component
        this run does not use."""
        self.components[name] = component

    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT,
                **{name: component.state_dict() if component is not None else None
                   for name, component in self.components.items()},
                "config": self.config}

    def save(self, directory: Path) -> Path:
        return save_checkpoint(self.state_dict(), directory)

    def restore(self, checkpoint: dict, source: Path) -> None:
        """Load every registered component from `checkpoint`, read from `source`."""
        if checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"{source} was written by another cnnlab version (format "
                            f"{checkpoint.get('format')}); start a new run")
        for name, component in self.components.items():
            if component is not None:
                component.load_state_dict(checkpoint[name])
