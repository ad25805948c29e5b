"""The effective learning rate has one owner, `cnnlab.lr_units`: its conversions (batch-size
scaling x gradient accumulation, and back to config units), a schedule built from plain values
rather than a config, and no other module doing the scaling arithmetic."""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path

import pytest

import cnnlab
from cnnlab.components.optimizers import base_momentum
from cnnlab.components.schedules import SwaPhase, build_schedule, optimizer_steps_per_epoch
from cnnlab.config import load_config
from cnnlab.configured_schedule import schedule_for_config
from cnnlab.lr_units import LrUnits

SOURCE = Path(cnnlab.__file__).parent


def config(scale: str, batch: int, accumulate: int, schedule: str = "constant", **train):
    return load_config({"data": {"batch_size": batch},
                        "train": {"accumulate": accumulate, **train},
                        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9,
                                  "scale_lr": scale, "base_batch_size": 64},
                        "schedule": schedule})


@pytest.mark.parametrize("batch", [32, 256])
@pytest.mark.parametrize("accumulate", [1, 4])
@pytest.mark.parametrize("scale", ["none", "linear", "sqrt"])
def test_optim_lr_scales_to_the_images_of_one_optimizer_step_and_back(scale, accumulate, batch):
    units = LrUnits.from_config(config(scale, batch, accumulate))
    images = batch * accumulate
    expected = {"none": 1.0, "linear": images / 64, "sqrt": math.sqrt(images / 64)}[scale]
    assert units.images_per_step == images
    assert units.config_lr == 0.05
    assert units.scale == pytest.approx(expected, rel=1e-15)
    assert units.optimizer_lr == pytest.approx(0.05 * expected, rel=1e-15)
    assert units.to_config_units(units.optimizer_lr) == pytest.approx(0.05, rel=1e-15)
    assert units.to_config_units(0.3) * units.scale == pytest.approx(0.3, rel=1e-15)


def test_build_schedule_takes_plain_values_and_no_config():
    parameters = inspect.signature(build_schedule).parameters
    assert not {"cfg", "config"} & set(parameters)
    # The config helper passes exactly these values: both traces agree bit for bit, with the
    # LR scaled and accumulated, momentum cycled and a weight-averaging phase.
    cfg = config("linear", 64, 2, "one_cycle", epochs=4, swa={"lr": 0.01, "anneal_epochs": 1})
    steps = optimizer_steps_per_epoch(10, 2)
    # 64 x 2 images per step against a base of 64: twice optim.lr; averaging from epoch 4 of 4.
    plain = build_schedule(cfg.schedule, base_lr=0.1, epochs=4, steps_per_epoch=steps,
                           base_momentum=0.9, swa=SwaPhase.from_epochs(4, 0.01, 1.0, steps))
    from_config = schedule_for_config(cfg, batches_per_epoch=10)
    assert base_momentum(cfg.optim) == 0.9
    assert plain.ctx == from_config.ctx and plain.swa == from_config.swa
    total = plain.ctx.total_steps
    assert total == 20
    assert [plain.lr(t) for t in range(total)] == [from_config.lr(t) for t in range(total)]
    assert [plain.momentum(t) for t in range(total)] == \
        [from_config.momentum(t) for t in range(total)]


# The scaling arithmetic, each form as it is written in lr_units.py: reading the base batch,
# choosing the rule, computing the factor, counting the images of one optimizer step.
SCALING = {
    "base batch read": r"\.base_batch_size\b",
    "scaling rule chosen": r"\bscale_lr\s*(==|\bin\b)",
    "scale factor computed": r"\blr_scale\s*\(",
    "images per step counted": (r"batch_size\s*\*\s*[\w.]*accumulate"
                                r"|accumulate\s*\*\s*[\w.]*batch_size"),
}


def test_no_module_but_lr_units_does_the_lr_scaling_arithmetic():
    owner = (SOURCE / "lr_units.py").read_text()
    # Each pattern finds the arithmetic where it lives, so an empty search elsewhere means
    # something rather than a pattern that matches nothing.
    assert all(re.search(pattern, owner) for pattern in SCALING.values())
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path.name == "lr_units.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            found += [f"{path.relative_to(SOURCE)}:{number}: {what}: {line.strip()}"
                      for what, pattern in SCALING.items() if re.search(pattern, line)]
    assert not found, "use cnnlab.lr_units.LrUnits instead:\n" + "\n".join(found)
