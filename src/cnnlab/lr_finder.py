"""The learning-rate range test (Smith 2017) and the suggestions read off its curve.

The sweep raises the LR every optimizer step, exponentially (default) or linearly from `start` to
`end`, and records the loss; it stops when the smoothed loss passes `stop_factor` times its best
or turns non-finite. The model, optimizer, batch-norm statistics and RNG states are restored
afterwards, and the sweep draws batches from its own seeded stream, so training resumes exactly
where it was.

Suggestions are pure functions of (lrs, losses) with one signature; each returns an LR or None
when the curve does not support one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from cnnlab.components.optimizers import build_optimizer, set_lr
from cnnlab.components.param_roles import drop_frozen_gradients
from cnnlab.config import config_file_for
from cnnlab.lr_units import LrUnits
from cnnlab.seeding import derive_seed, rng_state, set_rng_state

SMOOTHING = 0.98  # EMA factor of the loss, as in fastai and Smith's notebooks


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Exponential moving average with bias correction (the first values are not pulled to 0)."""
    average, out = 0.0, []
    for step, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta**step))
    return out


def centered(losses: list[float], window: int = 5) -> np.ndarray:
    """A smoothing without lag for the suggestions: a running median (robust to the spikes of
    a sweep) then a running mean, both centred. The EMA that drives the stop rule trails the
    curve by tens of steps, which would move every suggestion to higher LRs."""
    values = np.asarray(losses, dtype=float)
    half = window // 2
    median = np.array([np.median(values[max(0, i - half):i + half + 1])
                       for i in range(len(values))])
    return np.array([median[max(0, i - half):i + half + 1].mean() for i in range(len(values))])


def _finite_prefix(lrs: list[float], losses: list[float]) -> tuple[np.ndarray, np.ndarray]:
    count = 0
    for loss in losses:
        if not math.isfinite(loss):
            break
        count += 1
    return np.asarray(lrs[:count], dtype=float), np.asarray(losses[:count], dtype=float)


def suggest_minimum(lrs: list[float], losses: list[float]) -> float | None:
    """A tenth of the LR where the loss is lowest: the bottom itself is already too hot."""
    lr, loss = _finite_prefix(lrs, losses)
    if len(loss) < 5:
        return None
    return float(lr[int(np.argmin(centered(loss)))] / 10.0)


def suggest_steep(lrs: list[float], losses: list[float]) -> float | None:
    """The LR where the loss falls fastest against log(LR), before the bottom."""
    lr, loss = _finite_prefix(lrs, losses)
    if len(loss) < 5:
        return None
    curve = centered(loss)
    bottom = int(np.argmin(curve))
    if bottom < 2:
        return None
    slope = np.gradient(curve[:bottom + 1], np.log(lr[:bottom + 1]))
    index = int(np.argmin(slope))
    return float(lr[index]) if slope[index] < 0 else None


VALLEY_FALL = 0.8


def suggest_valley(lrs: list[float], losses: list[float]) -> float | None:
    """The first LR where the loss has covered 80% of its fall from the starting level (the
    median of the first tenth of the sweep) to its lowest point: deep in the descent, short of
    the bottom where training turns unstable. The 80% was set on the digits and CIFAR-10 curves
    of the README's evidence table."""
    lr, loss = _finite_prefix(lrs, losses)
    if len(loss) < 5:
        return None
    curve = centered(loss)
    bottom = int(np.argmin(curve))
    start = float(np.median(curve[:max(3, len(curve) // 10)]))
    fall = start - float(curve[bottom])
    if bottom < 2 or fall <= 0.02 * abs(start):
        return None  # no real descent: the sweep never found a better loss
    target = start - VALLEY_FALL * fall
    return float(lr[int(np.argmax(curve[:bottom + 1] <= target))])


SUGGESTIONS: dict[str, Callable[[list[float], list[float]], float | None]] = {
    "valley": suggest_valley,
    "steep": suggest_steep,
    "minimum": suggest_minimum,
}


def sweep_lrs(start: float, end: float, steps: int, mode: str) -> list[float]:
    if mode == "linear":
        return [start + (end - start) * i / max(steps - 1, 1) for i in range(steps)]
    return [start * (end / start) ** (i / max(steps - 1, 1)) for i in range(steps)]


def range_test(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    lrs: list[float],
    autocast: Callable = torch.autocast,
    stop_factor: float = 4.0,
    val_batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    label_smoothing: float = 0.0,
) -> dict:
    """Run the sweep on `model` with `optimizer`, then put both back exactly as they were.

    With `val_batches` the curve is the loss on those batches after each step (Smith's
    validation mode); otherwise it is the training loss of each step.
    """
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_rng = rng_state()
    was_training = model.training
    losses: list[float] = []
    best = math.inf
    stopped = "completed"
    try:
        model.train()
        for lr, (x, y) in zip(lrs, batches):
            set_lr(optimizer, lr)
            with autocast():
                loss = F.cross_entropy(model(x).float(), y, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            drop_frozen_gradients(optimizer, epoch=0)  # the sweep stands for the run's start
            optimizer.step()
            value = loss.item() if val_batches is None else _val_loss(model, val_batches,
                                                                       autocast)
            losses.append(value)
            if not math.isfinite(value):
                stopped = "non-finite loss"
                break
            smoothed = smooth(losses)[-1] if val_batches is None else value
            best = min(best, smoothed)
            if smoothed > stop_factor * best:
                stopped = f"loss passed {stop_factor:g}x its best"
                break
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        optimizer.zero_grad(set_to_none=True)
        set_rng_state(saved_rng)
        model.train(was_training)
    used = lrs[:len(losses)]
    return {"lrs": used, "losses": losses, "smoothed": smooth(losses), "stopped": stopped,
            "suggestions": {name: fn(used, losses) for name, fn in SUGGESTIONS.items()}}


@torch.no_grad()
def _val_loss(model, val_batches, autocast) -> float:
    model.eval()
    total, count = 0.0, 0
    for x, y in val_batches:
        with autocast():
            total += float(F.cross_entropy(model(x).float(), y, reduction="sum"))
        count += y.shape[0]
    model.train()
    return total / max(count, 1)


def lr_find(cfg, start: float = 1e-7, end: float = 10.0, steps: int = 100, mode: str = "exp",
            stop_factor: float = 4.0, repeats: int = 1, validation: bool = False,
            model: object = None, *, data=None) -> dict:
    """`cnnlab lr-find`: the range test on the configured model and data, `repeats` times with
    different seeds; each suggestion is reported per repeat, with its median and IQR. `model`:
    your own network (an nn.Module, deep-copied and left untouched, or a factory; several
    repeats need a factory). `data`: data given in Python instead of the config's (see
    cnnlab.data.python_data)."""
    from cnnlab.assemble import assemble
    from cnnlab.data.python_data import use_data
    from cnnlab.model_arg import require_factory, with_model

    cfg, given = use_data(cfg, data)
    cfg, supplied = with_model(cfg, model)
    if repeats > 1:
        require_factory(supplied, f"lr_find with repeats={repeats}")

    units = LrUnits.from_config(cfg)
    lrs = sweep_lrs(start, end, steps, mode)
    runs = []
    step_seconds = 0.0
    for repeat in range(repeats):
        seed = cfg.seed if repeat == 0 else derive_seed(cfg.seed, "lr-find-repeat", repeat)
        assembly = assemble(cfg.model_copy(update={"seed": seed}), supplied=supplied,
                            given=given)
        optimizer = build_optimizer(assembly.cfg.optim, assembly.model, units.images_per_step)
        batches = _endless(assembly, seed)
        val = list(assembly.eval_batches("val"))[:4] if validation else None
        started = time.monotonic()
        runs.append(range_test(assembly.model, optimizer, batches, lrs,
                               assembly.runtime.autocast, stop_factor, val,
                               cfg.train.label_smoothing))
        step_seconds += (time.monotonic() - started) / max(1, len(runs[-1]["lrs"]))
    result = dict(runs[0])
    # What a caller needs to plan training runs on the same data (the doctor sizes its LR
    # confirmation runs from these): the mean time of one of the sweep's training steps (not
    # counting the model and data it built), and the sizes of an epoch and of the validation set.
    result.update({"step_seconds": step_seconds / repeats,
                   "steps_per_epoch": assembly.train_batches().steps_per_epoch,
                   "val_images": len(assembly.data.val)})
    # A net that guesses uniformly over K classes has a cross-entropy of ln K. A sweep whose
    # loss never goes below it has learned nothing (on CIFAR-10 a short sweep of a ResNet-20 with
    # batch norm falls from an overconfident start at 3.2 to a uniform guess at 2.35 when the LR
    # grows large, and its "valley" then sits at 2.4): its suggestions are not LRs that train.
    result["chance_loss"] = math.log(assembly.data.num_classes)
    # Judged on the lag-free smoothing the suggestions use: the EMA trails a falling curve.
    result["below_chance"] = bool(len(result["losses"]) > 0 and float(
        np.min(centered(result["losses"]))) < result["chance_loss"])
    # The sweep sets the optimizer's LR itself; `optim_lr` is each suggestion in config units
    # (what `optim.lr` must say for the optimizer to use it, after optim.scale_lr).
    result.update({"mode": mode, "start": start, "end": end, "steps": steps,
                   "curve": "validation loss" if validation else "training loss",
                   "optim_lr": {name: None if lr is None else units.to_config_units(lr)
                                for name, lr in result["suggestions"].items()}})
    if repeats > 1:
        result["repeats"] = _spread(runs)
    return result


def _endless(assembly, seed: int):
    """Training batches from the sweep's own order, epoch after epoch."""
    batches = assembly.train_batches()
    batches.seed = derive_seed(seed, "lr-find")
    epoch = 0
    while True:
        yield from batches.epoch(epoch)
        epoch += 1


def _spread(runs: list[dict]) -> dict:
    spread = {}
    for name in SUGGESTIONS:
        values = [r["suggestions"][name] for r in runs if r["suggestions"][name] is not None]
        if not values:
            spread[name] = {"values": [], "median": None, "iqr": None}
            continue
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        spread[name] = {"values": values, "median": float(median),
                        "iqr": [float(q1), float(q3)]}
    return {"count": len(runs), "suggestions": spread}


def write_applied_config(source, overrides, cfg, lr: float, out) -> float:
    """`lr-find --apply`: write the user's config file (with their -o overrides) to `out` with
    only `optim.lr` changed, set so that the optimizer uses the absolute LR `lr`; returns that
    `optim.lr`. For one_cycle, optim.lr is the peak, so the same key sets it. Relative paths
    keep meaning the same files when `out` is in another folder than `source`."""
    raw = config_file_for(source, overrides, out)
    value = LrUnits.from_config(cfg).to_config_units(lr)
    optim = raw.get("optim")
    if not isinstance(optim, dict):
        # `optim: adam` (or no section): the name gains an lr key.
        raw["optim"] = optim = {} if optim is None else {"name": optim}
    optim["lr"] = value
    Path(out).write_text(yaml.safe_dump(raw, sort_keys=False, default_flow_style=False, width=100))
    return value
