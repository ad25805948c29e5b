"""The doctor's time: the budget as the user wrote it, the clock against it, and the plan of runs
printed before the trials start ("12 runs x 40 s = 8 min")."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from cnnlab.errors import UserError

UNITS = {"s": 1, "m": 60, "h": 3600}
BUDGET_FORM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
# Share of the budget the range tests and the LR confirmation may take; the trials get the rest.
LR_SHARE = 0.35
# A training epoch costs more than its steps in the range test (evaluation, the epoch's ends).
EPOCH_OVERHEAD = 1.3


def parse_budget(text: str | float) -> float:
    """Seconds from "15m", "90s", "1h" or a bare number of seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = BUDGET_FORM.match(str(text))
        if match is None:
            raise UserError(f"--budget {text!r} is not a duration; give a number with s, m or h "
                            "(e.g. --budget 15m, --budget 90s)")
        seconds = float(match.group(1)) * UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"--budget {text!r} must be a positive duration, e.g. --budget 15m")
    return seconds


def duration(seconds: float) -> str:
    """'40 s', '8 min', '1 h 5 min': how the plan and the progress lines say a time."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def budget_text(seconds: float) -> str:
    """A --budget that holds `seconds`: whole minutes from a minute up, else seconds."""
    return f"{max(1, round(seconds / 60 + 0.5))}m" if seconds >= 60 else f"{int(seconds) + 1}s"


class Clock:
    """Seconds since the doctor started, and what is left of the budget."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.started = time.monotonic()

    def used(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.budget - self.used()


@dataclass
class TrialPlan:
    """How many paired trials, how long each, and whether they fit what is left."""
    configs: int  # the original plus the candidates
    seeds: int
    epochs: int
    epoch_seconds: float
    overhead_seconds: float  # building the model and data of one run
    reused: int = 0  # first-seed runs the LR phase already trained (same config and length)

    @property
    def runs(self) -> int:
        return self.configs * self.seeds

    @property
    def run_seconds(self) -> float:
        return self.overhead_seconds + self.epochs * self.epoch_seconds

    @property
    def seconds(self) -> float:
        return (self.runs - self.reused) * self.run_seconds

    def line(self) -> str:
        reused = f"; {self.reused} reused from the LR phase" if self.reused else ""
        return (f"plan: {self.runs} runs ({self.configs} configs x {self.seeds} seeds, "
                f"{self.epochs} epoch{'s' if self.epochs != 1 else ''} each{reused}) x "
                f"{duration(self.run_seconds)} = {duration(self.seconds)}")


def fit_trials(configs: int, seeds: int, epochs: int, epoch_seconds: float,
               overhead_seconds: float, seconds_left: float,
               reusable: dict[int, int] | None = None) -> TrialPlan | None:
    """The longest trials (at most the config's `epochs`) that fit `seconds_left` for every
    config and seed; None when not even one epoch each fits. Successive halving stops the
    losing candidates early, so the plan is the most the trials can take. `reusable`: trial
    length -> how many runs of that length the LR phase already trained, which cost nothing."""
    for count in range(epochs, 0, -1):
        plan = TrialPlan(configs, seeds, count, epoch_seconds, overhead_seconds,
                         (reusable or {}).get(count, 0))
        if plan.seconds <= seconds_left:
            return plan
    return None


def confirm_epochs(runs: int, epochs: int, sweep: dict, overhead_seconds: float,
                   seconds: float) -> tuple[int, float]:
    """How long each of `runs` LR confirmation runs may be, and the seconds one is expected to
    take: the config's full length (`epochs`) when that fits `seconds`, else the longest that
    does, at least 1. Length matters because a
    short run favours low LRs: on ResNet-20/digits the one-epoch runs ranked 0.054 first (val_acc
    0.59, against 0.34 at 0.54), and ten epochs ranked 0.54 best over 3 seeds (README, "cnnlab
    doctor"). An epoch's time is estimated from the range test's steps (`sweep`: lr_find's result),
    and `overhead_seconds` is what a run spends outside its epochs (building the model and data)."""
    epoch = EPOCH_OVERHEAD * sweep.get("step_seconds", 0.0) * sweep.get("steps_per_epoch", 1)
    for count in range(epochs, 0, -1):
        if runs * (overhead_seconds + count * epoch) <= seconds:
            return count, overhead_seconds + count * epoch
    return 1, overhead_seconds + epoch
