"""Evaluation: loss, accuracy and top-5 accuracy over a split, and `cnnlab eval` on a run."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.runtime import Runtime
from cnnlab.tta import tta_logits

TOP5_MIN_CLASSES = 10


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             runtime: Runtime, num_classes: int, world=None, tta: str = "none"
             ) -> dict[str, float]:
    """Mean cross-entropy (no label smoothing), accuracy and, with 10+ classes, top-5 accuracy.
    With `tta` other than "none" the logits are averaged over views of each image (cnnlab.tta).
    In a distributed run each process sees its share of the batches and the sums are added."""
    was_training = model.training
    model.eval()
    device = runtime.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    top5 = torch.zeros((), dtype=torch.long, device=device)
    count = 0
    try:
        for x, y in batches:
            with runtime.autocast():
                logits = tta_logits(model, x, tta)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            correct += (logits.argmax(1) == y).sum()
            if num_classes >= TOP5_MIN_CLASSES:
                top5 += (logits.topk(5, dim=1).indices == y[:, None]).any(1).sum()
            count += y.shape[0]
    finally:
        model.train(was_training)
    if world is not None and world.distributed:
        totals = world.sum(torch.stack([loss_sum, correct.double(), top5.double(),
                                        torch.tensor(float(count), dtype=torch.float64,
                                                     device=device)]))
        loss_sum, correct, top5, count = totals[0], totals[1], totals[2], int(totals[3])
    count = max(count, 1)
    metrics = {"loss": float(loss_sum) / count, "acc": float(correct) / count}
    if num_classes >= TOP5_MIN_CLASSES:
        metrics["top5"] = float(top5) / count
    return metrics


# Where and how to run may change between training and evaluation (a GPU run evaluated on a
# laptop); what is evaluated may not.
# Keys eval may change besides data.*: where and how fast it runs, and test-time augmentation,
# which changes how the trained weights are read, never the weights.
RUNTIME_KEYS = ("train.device", "train.threads", "train.amp", "train.channels_last", "train.tta")


def evaluate_run(run_dir: str | Path, weights: str = "final", split: str = "val",
                 overrides: list[str] | tuple = (), model: object = None, *, data=None) -> dict:
    """Evaluate a finished (or interrupted) run's final or best weights on a split. A run
    trained on a network given in Python needs the same `model` (module or factory) again; a
    run trained on `data=` needs the same data again."""
    from cnnlab.assemble import assemble
    from cnnlab.data.python_data import data_again
    from cnnlab.checkpoint import load_weights
    from cnnlab.config import load_config
    from cnnlab.errors import UserError
    from cnnlab.model_arg import for_run
    from cnnlab.rundir import RunDir

    run = RunDir.open(Path(run_dir))
    keys = [override.split("=", 1)[0].strip() for override in overrides]
    for key, override in zip(keys, overrides):
        if not (key.startswith("data.") or key in RUNTIME_KEYS):
            raise UserError(f"eval takes only data.* and {', '.join(RUNTIME_KEYS)} overrides "
                            f"(the model must stay the one that was trained); received "
                            f"'{override}'")
    if "train.device" in keys and "train.amp" not in keys:
        # The trained precision may not exist on the new device (fp16 is GPU-only).
        overrides = [*overrides, "train.amp=auto"]
    cfg = load_config(run.config, overrides)
    path = run.final_weights if weights == "final" else run.best_weights
    if not path.exists():
        hint = ("the run has not finished; evaluate --weights best, or resume it first"
                if weights == "final" else "no epoch has been evaluated yet")
        raise UserError(f"{path} does not exist: {hint}")
    given = data_again(cfg, data, "cnnlab.evaluate_run")
    assembly = assemble(cfg, supplied=for_run(cfg, model, f"run {run.path}"), given=given)
    load_weights(assembly.model, path)
    metrics = evaluate(assembly.model, assembly.eval_batches(split), assembly.runtime,
                       assembly.data.num_classes, tta=cfg.train.tta)
    size = {"val": len(assembly.data.val), "test": len(assembly.data.test),
            "train": len(assembly.data.train)}[split]
    return {"run": str(run.path), "weights": weights, "split": split, "images": size,
            **{f"{split}_{k}": v for k, v in metrics.items()}}
