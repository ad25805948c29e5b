"""Muon for conv filters, SGD for every other parameter, as one optimizer.

Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks") runs SGD
momentum and then replaces each weight matrix's update by an approximation of its nearest
semi-orthogonal matrix: for an update U S V^T, roughly U V^T. Every direction of the layer then
moves by about the same amount, however unequal the gradient's singular values were. The
orthogonalisation is a quintic Newton-Schulz iteration, five steps by default.

Which tensors: Muon is for hidden weight matrices; a conv filter (out, in, kh, kw) is treated as
the matrix out x (in*kh*kw). The authors give classifier heads, embeddings, biases and norm gains
to a conventional optimizer, so here every parameter that is not 4-D (linear layers, including the
classifier, and all vectors) takes plain SGD with momentum, exactly torch.optim.SGD's update.
The choice is made per tensor by its shape, so any grouping of parameters (LR multipliers, decay
groups) works unchanged. The first conv is a Muon tensor too (the authors suggest sparing it; in
airbench it is frozen instead).

One optimizer rather than two keeps the schedule, the LR finder, checkpoints and resume as they
are for every other optimizer: the schedule sets each group's `lr`, Muon uses it as is and SGD
uses `lr * sgd_lr_mult`, so both parts follow the same schedule. Cyclic momentum moves Muon's
`momentum`; `sgd_momentum` stays fixed.
"""

from __future__ import annotations

import torch

from cnnlab.components.per_tensor import PerTensorOptimizer

# The quintic's coefficients (a, b, c), chosen by the authors to make the slope at zero as steep
# as possible while staying stable: five steps bring every singular value into about 0.7..1.2
# instead of converging to exactly 1, which they found trains as well as exact U V^T.
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
# Keeps an all-zero update (no gradient yet) from dividing by zero.
NORM_EPS = 1e-7


def uses_muon(param: torch.Tensor) -> bool:
    """Conv filters take Muon; every other tensor takes SGD."""
    return param.ndim == 4


def orthogonalize(matrix: torch.Tensor, steps: int) -> torch.Tensor:
    """Approximately U V^T for `matrix` = U S V^T, by `steps` quintic Newton-Schulz steps."""
    tall = matrix.size(0) > matrix.size(1)
    # Iterating on the wide orientation makes X X^T the smaller Gram matrix.
    x = matrix.T if tall else matrix
    # Dividing by the Frobenius norm brings every singular value to at most 1, where the
    # iteration converges.
    x = x / (x.norm() + NORM_EPS)
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.T if tall else x


class Muon(PerTensorOptimizer):
    """Group keys: `lr`, `momentum`, `nesterov`, `ns_steps`, `weight_decay` for the conv filters;
    `sgd_lr_mult`, `sgd_momentum`, `sgd_nesterov` for the rest (whose weight decay is
    `weight_decay` too, added to the gradient as torch.optim.SGD does)."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, weight_decay: float = 0.0, sgd_lr_mult: float = 1.0,
                 sgd_momentum: float = 0.9, sgd_nesterov: bool = True):
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov,
                                  "ns_steps": ns_steps, "weight_decay": weight_decay,
                                  "sgd_lr_mult": sgd_lr_mult, "sgd_momentum": sgd_momentum,
                                  "sgd_nesterov": sgd_nesterov})

    def update(self, param: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
        if uses_muon(param):
            self._muon(param, grad, state, group)
        else:
            self._sgd(param, grad, state, group)

    def _muon(self, param: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
        momentum = group["momentum"]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(param)
        buffer = state["momentum_buffer"]
        buffer.mul_(momentum).add_(grad)
        direction = grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
        # At least float32: the iteration squares the matrix twice per step.
        dtype = torch.promote_types(param.dtype, torch.float32)
        matrix = direction.reshape(len(direction), -1).to(dtype)
        rows, cols = matrix.shape
        # sqrt(rows / cols) for tall matrices keeps the update's RMS per entry the same as a
        # wide one's (the authors' scale); most conv filters are wide and get 1.
        scale = max(1.0, rows / cols) ** 0.5
        update = orthogonalize(matrix, group["ns_steps"]).mul_(scale)
        # Decoupled weight decay, as the authors' implementation applies it.
        if group["weight_decay"]:
            param.mul_(1.0 - group["lr"] * group["weight_decay"])
        param.add_(update.reshape(param.shape).to(param.dtype), alpha=-group["lr"])

    def _sgd(self, param: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
        """torch.optim.SGD with no dampening: coupled weight decay, then heavy-ball or Nesterov."""
        momentum = group["sgd_momentum"]
        if group["weight_decay"]:
            grad = grad.add(param, alpha=group["weight_decay"])
        direction = grad
        if momentum:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.clone()
            else:
                state["momentum_buffer"].mul_(momentum).add_(grad)
            buffer = state["momentum_buffer"]
            direction = grad.add(buffer, alpha=momentum) if group["sgd_nesterov"] else buffer
        param.add_(direction, alpha=-group["lr"] * group["sgd_lr_mult"])
