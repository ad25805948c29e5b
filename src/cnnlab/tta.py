"""Test-time augmentation: a network's logits averaged over views of each image.

One function serves evaluation, `cnnlab predict` and the exported graph, so the three give the
same logits for a run. The modes (`train.tta`):

- none: the image alone.
- flip: the image and its mirror image, 1/2 each.
- flip_translate (airbench's highest level): the flip average of the image, weight 1/2, and the
  flip averages of the image shifted by one pixel down-right and one pixel up-left (both axes
  at once, reflect padding filling the uncovered edge), 1/4 each. That is six views: the image
  and its mirror 1/4 each, the four shifted ones 1/8 each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TTA_MODES = ("none", "flip", "flip_translate")
SHIFT = 1  # pixels; airbench's translation at test time


def _flip_mean(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return (model(x).float() + model(x.flip(3)).float()) / 2


def diagonal_shifts(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch moved by SHIFT pixels down-right and up-left, the uncovered edge filled by
    reflecting the image (as the training crops' reflect mode does)."""
    h, w = x.shape[2], x.shape[3]
    padded = F.pad(x, (SHIFT,) * 4, mode="reflect")
    down_right = padded[:, :, :h, :w]
    up_left = padded[:, :, 2 * SHIFT:2 * SHIFT + h, 2 * SHIFT:2 * SHIFT + w]
    return down_right, up_left


def tta_logits(model: nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """float32 logits of `model` for the normalized batch `x`, averaged over the views of
    `mode` with the weights in this module's docstring."""
    if mode == "none":
        return model(x).float()
    if mode == "flip":
        return _flip_mean(model, x)
    if mode == "flip_translate":
        down_right, up_left = diagonal_shifts(x)
        return (_flip_mean(model, x) / 2 + _flip_mean(model, down_right) / 4
                + _flip_mean(model, up_left) / 4)
    raise ValueError(f"unknown test-time augmentation {mode!r}; accepted: {', '.join(TTA_MODES)}")
