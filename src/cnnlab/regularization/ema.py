"""An exponential moving average of the weights (Polyak & Juditsky 1992; as in timm's ModelEma).

Floating-point parameters and buffers are averaged (batch-norm running statistics included, so
the averaged model evaluates consistently); integer buffers are copied. With `warmup_steps` the
decay ramps up from 0, so early averages are not dominated by the random initial weights.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.regularization import frozen_copy
from cnnlab.regularization.averaging import WeightAveraging


class WeightEma(WeightAveraging):
    name = "ema"
    validated_every_epoch = True  # every epoch's metrics carry ema_val_*

    def __init__(self, model: nn.Module, decay: float, warmup_steps: int = 0, every: int = 1):
        self.model = frozen_copy(model)
        self.decay = decay
        self.warmup_steps = warmup_steps
        self.every = every
        self.updates = 0

    def current_decay(self) -> float:
        if self.warmup_steps <= 0:
            return self.decay
        return self.decay * min(1.0, self.updates / self.warmup_steps)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold in the weights after optimizer step `step` (1-based) if it is an update step."""
        if step % self.every:
            return
        decay = self.current_decay()
        source = model.state_dict()
        for name, average in self.model.state_dict().items():
            value = source[name].detach()
            if average.dtype.is_floating_point:
                average.mul_(decay).add_(value, alpha=1.0 - decay)
            else:
                average.copy_(value)
        self.updates += 1

    def after_step(self, model: nn.Module, step: int) -> None:
        self.update(model, step)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = state["updates"]
