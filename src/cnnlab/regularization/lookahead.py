"""Lookahead: slow weights that pull the trained weights back every few optimizer steps.

Every `every` optimizer steps, slow <- decay_t * slow + (1 - decay_t) * fast, and the result is
copied back into the model (fast <- slow). Zhang et al. 2019's Lookahead (slow += alpha *
(fast - slow) every k steps) is this rule with decay = 1 - alpha and no ramp. airbench94 uses it
with every 5 and decay_t = 0.95^5 * (step / total_steps)^3: the pull is nearly off early in
training and strongest at its end (the `cubic` ramp). When training ends, the model is set to the
slow weights, as airbench does with its last update.

Unlike train.ema, which averages in a separate copy kept for evaluation, this changes the weights
being trained. Floating-point parameters and buffers take part (batch-norm running statistics
included, so the statistics match the weights); integer buffers are left to training.
"""

from __future__ import annotations

import torch
from torch import nn

RAMPS = ("none", "cubic")


def lookahead_decay(decay: float, ramp: str, step: int, total_steps: int) -> float:
    """The decay used at optimizer step `step` (1-based) of `total_steps`."""
    if ramp == "none":
        return decay
    progress = min(step / max(total_steps, 1), 1.0)
    return decay * progress ** 3


class Lookahead:
    def __init__(self, model: nn.Module, every: int, decay: float, ramp: str, total_steps: int):
        self.every = every
        self.decay = decay
        self.ramp = ramp
        self.total_steps = total_steps
        self.slow = {name: value.detach().clone()
                     for name, value in model.state_dict().items()
                     if value.dtype.is_floating_point}

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int) -> None:
        """After optimizer step `step` (1-based): sync on every `every`-th step, and once more,
        copying the slow weights in, at the run's last step."""
        if step % self.every == 0:
            decay = lookahead_decay(self.decay, self.ramp, step, self.total_steps)
            fast = model.state_dict()
            for name, slow in self.slow.items():
                slow.lerp_(fast[name].detach(), 1.0 - decay)
        if step % self.every == 0 or step == self.total_steps:
            self.copy_slow_into(model)

    @torch.no_grad()
    def copy_slow_into(self, model: nn.Module) -> None:
        """fast <- slow; at the end of training this makes the slow weights the final ones
        (idempotent, so a run resumed after its last step ends with the same weights)."""
        fast = model.state_dict()
        for name, slow in self.slow.items():
            fast[name].copy_(slow)

    def state_dict(self) -> dict:
        return {"slow": self.slow}

    def load_state_dict(self, state: dict) -> None:
        for name, slow in self.slow.items():
            slow.copy_(state["slow"][name])
