"""LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning", Algorithm 2).

Adam's bias-corrected direction plus decoupled weight decay, rescaled per parameter tensor by the
trust ratio ||x|| / ||r + λx||, so every layer moves by the same fraction of its own norm
whatever its gradient scale (the property that lets large batches keep a high LR). The paper's
scaling function φ is the identity here. A tensor whose norm or update norm is zero (a fresh
zero-initialized bias, a silent layer) uses a ratio of 1, as reference implementations do,
rather than never moving.
"""

from __future__ import annotations

import torch

from cnnlab.components.per_tensor import PerTensorOptimizer


class Lamb(PerTensorOptimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0, bias_correction: bool = True):
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "bias_correction": bias_correction}
        super().__init__(params, defaults)

    def update(self, param: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float64)
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        state["step"] += 1
        t = int(state["step"])
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        if group["bias_correction"]:
            m_hat = exp_avg / (1.0 - beta1 ** t)
            v_hat = exp_avg_sq / (1.0 - beta2 ** t)
        else:
            m_hat, v_hat = exp_avg, exp_avg_sq
        direction = m_hat / (v_hat.sqrt() + group["eps"])
        if group["weight_decay"]:
            direction.add_(param, alpha=group["weight_decay"])
        weight_norm = torch.linalg.vector_norm(param)
        direction_norm = torch.linalg.vector_norm(direction)
        trust = torch.where((weight_norm > 0) & (direction_norm > 0),
                            weight_norm / direction_norm, torch.ones_like(weight_norm))
        param.add_(direction * trust, alpha=-group["lr"])
