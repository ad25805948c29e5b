"""The cheap computations a report may run on a finished run: no training, one test pass.

A run folder's config.yaml records where it ran (device, threads, precision). The report may be
built elsewhere (a laptop reading a GPU run), so those settings are re-decided here, and
inference is done in fp32: the confusion matrix should show the model, not a precision choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.assemble import Assembly, assemble
from cnnlab.config import load_config
from cnnlab.rundir import RunDir

# Settings of the machine that trained the run, re-decided for the machine reading it.
RUNTIME_OVERRIDES = ["train.device=auto", "train.amp='off'", "train.compile=false",
                     "train.threads=null"]


def assemble_run(run_dir: Path) -> Assembly:
    """The run's model (freshly initialised, as at step 0) and data, built on this machine."""
    return assemble(load_config(RunDir.at(run_dir).config, RUNTIME_OVERRIDES))


def weights_of(run_dir: Path) -> Path | None:
    """The final weights, or the best epoch's when the run did not finish."""
    run = RunDir.at(run_dir)
    for candidate in (run.final_weights, run.best_weights):
        if candidate.exists():
            return candidate
    return None


@dataclass
class SplitErrors:
    confusion: np.ndarray  # [true, predicted] counts
    classes: list[str]
    accuracy: float
    images: np.ndarray  # uint8, N x C x H x W: the highest-loss test images, worst first
    true: list[int]
    predicted: list[int]
    losses: list[float]
    total: int


def _to_uint8(assembly: Assembly, x: torch.Tensor) -> torch.Tensor:
    """Undo the normalizer ((x/255 - mean) / std) for images that are not held in memory."""
    normalizer = assembly.normalizer
    pixels = (x - normalizer.shift.to(x.device)) / normalizer.scale.to(x.device)
    return pixels.round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def split_errors(assembly: Assembly, count: int = 16) -> SplitErrors:
    """One pass over the test split: the confusion matrix and the `count` highest-loss images.

    The model must already hold the trained weights. Batches come in file order, so an image's
    position in the pass is its index in the test set, which gives its raw pixels back.
    """
    model = assembly.model
    model.eval()
    classes = list(assembly.data.classes)
    test = assembly.data.test
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    all_losses, all_true, all_predicted = [], [], []
    # Streamed sets have no pixel tensor to index later: keep the worst images seen so far.
    kept_losses = torch.empty(0)
    kept_images = None
    for x, y in assembly.eval_batches("test"):
        with assembly.runtime.autocast():
            logits = model(x)
        losses = F.cross_entropy(logits.float(), y, reduction="none").cpu()
        predicted = logits.argmax(1).cpu()
        true = y.cpu()
        np.add.at(confusion, (true.numpy(), predicted.numpy()), 1)
        all_losses.append(losses)
        all_true.append(true)
        all_predicted.append(predicted)
        if not test.in_memory:
            candidates = torch.cat([kept_losses, losses])
            pixels = _to_uint8(assembly, x).cpu().contiguous()
            pool = pixels if kept_images is None else torch.cat([kept_images, pixels])
            top = candidates.topk(min(count, len(candidates))).indices
            kept_losses, kept_images = candidates[top], pool[top]
    losses = torch.cat(all_losses) if all_losses else torch.empty(0)
    true = torch.cat(all_true) if all_true else torch.empty(0, dtype=torch.long)
    predicted = torch.cat(all_predicted) if all_predicted else torch.empty(0, dtype=torch.long)
    worst = losses.topk(min(count, len(losses))).indices
    if test.in_memory:
        images = test.images[worst].cpu().contiguous().numpy()
    else:
        images = kept_images.numpy() if kept_images is not None else np.zeros((0, 1, 1, 1),
                                                                             np.uint8)
    total = int(len(losses))
    return SplitErrors(
        confusion=confusion, classes=classes,
        accuracy=float((predicted == true).sum()) / max(total, 1),
        images=images, true=true[worst].tolist(), predicted=predicted[worst].tolist(),
        losses=losses[worst].tolist(), total=total)
