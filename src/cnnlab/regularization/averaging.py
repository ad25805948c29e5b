"""The weight-averaging protocol that EMA and SWA share, and the one place that decides which
weights a run ends with.

An average follows training through two hooks (after each optimizer step, after each epoch),
holds its own averaged `model`, may need a last pass at the end (`finish`), and checkpoints its
state. The training loop talks to every average alike, so a new kind of averaging is one class
here, not a name test in the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from torch import nn

from cnnlab.metric_names import averaged_by

RAW = "raw"  # the label of the trained weights themselves


class WeightAveraging:
    """Base of EMA and SWA. Subclasses set `name` and `model` and override the hooks they use."""

    name: str
    model: nn.Module
    # Whether every epoch's metrics include this average's validation metrics (name_val_*).
    validated_every_epoch: bool = False

    def after_step(self, model: nn.Module, step: int) -> None:
        """After optimizer step `step` (1-based)."""

    def after_epoch(self, model: nn.Module, epoch: int) -> None:
        """After epoch `epoch` (1-based) has been evaluated."""

    @property
    def holds_average(self) -> bool:
        """Whether `model` holds an average yet, and so is the run's final weights."""
        return True

    def finish(self, train_batches: Callable[[], Iterable], validate: Callable[[nn.Module], dict],
               say: Callable[[str], None]) -> dict:
        """Last work once training ends; returns what it adds to the summary."""
        return {}

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class ChosenWeights:
    module: nn.Module
    label: str  # "raw", or the average's name: the summary's `weights` and the file's `average`


def final_weights(model: nn.Module, averages: Sequence[WeightAveraging]) -> ChosenWeights:
    """The average when there is one that holds an average (the last such wins), else `model`."""
    chosen = ChosenWeights(model, RAW)
    for average in averages:
        if average.holds_average:
            chosen = ChosenWeights(average.model, average.name)
    return chosen


def watched_weights(metric: str, model: nn.Module, averages: Sequence[WeightAveraging]
                    ) -> ChosenWeights:
    """The weights that `metric` measures: an average's for its prefixed metrics (ema_val_acc),
    the trained ones otherwise. Early stopping keeps and restores these."""
    name = averaged_by(metric)
    for average in averages:
        if average.name == name:
            return ChosenWeights(average.model, average.name)
    return ChosenWeights(model, RAW)
