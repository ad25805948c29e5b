"""The schedule a config describes, for the callers that hold a whole config (training,
`cnnlab schedule`, the report's schedule plot): what `build_schedule` needs, read from it once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.components.optimizers import base_momentum
from cnnlab.components.schedules import (Schedule, SwaPhase, build_schedule,
                                         optimizer_steps_per_epoch)
from cnnlab.lr_units import LrUnits

if TYPE_CHECKING:  # config imports the components this module imports
    from cnnlab.config import Config


def schedule_for_config(cfg: Config, batches_per_epoch: int) -> Schedule:
    """The schedule of `cfg` when an epoch has `batches_per_epoch` batches (before
    `train.accumulate` joins them into optimizer steps)."""
    steps = optimizer_steps_per_epoch(batches_per_epoch, cfg.train.accumulate)
    swa = cfg.train.swa
    phase = (SwaPhase.from_epochs(swa.first_epoch(cfg.train.epochs), swa.lr, swa.anneal_epochs,
                                  steps) if swa else None)
    return build_schedule(cfg.schedule, base_lr=LrUnits.from_config(cfg).optimizer_lr,
                          epochs=cfg.train.epochs, steps_per_epoch=steps,
                          base_momentum=base_momentum(cfg.optim), swa=phase)
