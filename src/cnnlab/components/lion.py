"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2).

The update is the sign of an interpolation between the momentum and the gradient (β1), so every
coordinate moves by exactly the LR; the momentum itself is tracked with a slower β2. Weight decay
is decoupled, as in AdamW. Because sign updates have a larger norm than Adam's, the paper uses
an LR 3-10x smaller and a weight decay 3-10x larger than AdamW's.
"""

from __future__ import annotations

import torch

from cnnlab.components.per_tensor import PerTensorOptimizer


class Lion(PerTensorOptimizer):
    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    def update(self, param: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
        beta1, beta2 = group["betas"]
        if not state:
            state["exp_avg"] = torch.zeros_like(param)
        exp_avg = state["exp_avg"]
        direction = exp_avg.lerp(grad, 1.0 - beta1).sign_()
        if group["weight_decay"]:
            param.mul_(1.0 - group["lr"] * group["weight_decay"])
        param.add_(direction, alpha=-group["lr"])
        exp_avg.lerp_(grad, 1.0 - beta2)
