"""The step loop shared by optimizers written here: each parameter tensor with a gradient is
updated on its own, from its group's hyperparameters and its own state."""

from __future__ import annotations

import torch


class PerTensorOptimizer(torch.optim.Optimizer):
    def update(self, param: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self.update(param, param.grad, self.state[param], group)
        return loss
