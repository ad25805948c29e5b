"""Early stopping on a validation metric, with the state a resumed run needs."""

from __future__ import annotations

import math


class EarlyStopping:
    def __init__(self, metric: str, mode: str, patience: int, min_delta: float):
        self.metric, self.mode = metric, mode
        self.patience, self.min_delta = patience, min_delta
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.waited = 0

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def observe(self, epoch: int, metrics: dict) -> tuple[bool, bool]:
        """(improved, stop) after `epoch` with its metrics."""
        value = metrics.get(self.metric)
        if value is not None and math.isfinite(value) and self.improved(value):
            self.best, self.best_epoch, self.waited = value, epoch, 0
            return True, False
        self.waited += 1
        return False, self.waited >= self.patience  # Keras semantics: epochs without improvement

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "waited": self.waited}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.waited = state["best"], state["best_epoch"], state["waited"]
