"""Stochastic weight averaging (Izmailov et al. 2018): the equal-weight mean of the weights at
the end of each epoch from `start_epoch` on, trained meanwhile at a constant (or annealed) LR.

The average of weights is not the average of the networks' batch-norm statistics, so the
running statistics are recomputed once at the end with a pass over the training images (the
averaged weights see data they were never evaluated on otherwise). The running mean follows
torch.optim.swa_utils.AveragedModel's, p_avg + (p - p_avg) / (n + 1), which the tests check it
against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from cnnlab.regularization import frozen_copy
from cnnlab.regularization.averaging import WeightAveraging


class WeightAverage(WeightAveraging):
    name = "swa"

    def __init__(self, model: nn.Module, start_epoch: int):
        self.model = frozen_copy(model)
        self.parameter_names = {name for name, _ in self.model.named_parameters()}
        self.start_epoch = start_epoch
        self.averaged = 0  # epochs folded in so far

    def collects(self, epoch: int) -> bool:
        """Whether the weights at the end of `epoch` (1-based) enter the average."""
        return epoch >= self.start_epoch

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        source = model.state_dict()
        for name, average in self.model.state_dict().items():
            value = source[name].detach()
            if name in self.parameter_names and self.averaged > 0:
                average.lerp_(value, 1.0 / (self.averaged + 1))
            else:
                average.copy_(value)  # buffers: replaced by recompute_batch_norm at the end
        self.averaged += 1

    def after_epoch(self, model: nn.Module, epoch: int) -> None:
        if self.collects(epoch):
            self.update(model)

    @property
    def holds_average(self) -> bool:
        return self.averaged > 0

    def finish(self, train_batches: Callable[[], Iterable], validate: Callable[[nn.Module], dict],
               say: Callable[[str], None]) -> dict:
        """Batch-norm statistics for the averaged weights, then their validation metrics.
        `train_batches()` must give every process all the training images, so that the
        statistics agree across processes."""
        if not self.averaged:
            say(f"no weight average: training ended before epoch {self.start_epoch}, where "
                "train.swa starts averaging")
            return {"swa_epochs": 0}
        self.recompute_batch_norm(train_batches())
        val = validate(self.model)
        say(f"weight average of {self.averaged} epochs (from epoch {self.start_epoch}): "
            f"val_acc {val['acc']:.4f}, val_loss {val['loss']:.4f}")
        return {"swa_epochs": self.averaged, **{f"final_swa_val_{k}": v for k, v in val.items()}}

    def recompute_batch_norm(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Running statistics of every batch-norm layer over `batches`, as a cumulative mean."""
        update_bn(batches, self.model)
        self.model.eval()

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "averaged": self.averaged}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.averaged = state["averaged"]
