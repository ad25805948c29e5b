"""The one place where the doctor builds a model: the config of a candidate, the propagation
report at init, and the LR range test. The trials train through the study's runner
(cnnlab.experiments.runner), like `ablate`.

Bringing your own model (a `model=` factory, `supplied`) is wired here: these functions are the
only ones that turn a config into a network; the trials pass it to the runner (see trials.serve).
"""

from __future__ import annotations

import time

from cnnlab.assemble import assemble
from cnnlab.config import Config, load_config
from cnnlab.data import DataBundle, load_data
from cnnlab.lr_finder import lr_find
from cnnlab.models.user_code import SuppliedModel
from cnnlab.propagation import inspect_assembly

# One batch is enough to see a signal vanish or explode at init; small keeps screening cheap.
SCREEN_BATCH = 64
# The range test's sweep: wide enough for SGD and Adam alike, short enough to be cheap.
SWEEP_START, SWEEP_END, SWEEP_STEPS = 1e-5, 10.0, 40
# A sweep that never got below a uniform guess's loss is run again this long (fastai's default
# length): on CIFAR-10 a ResNet-20 learned nothing in 40 steps of 128 images, and did in 100.
LONG_SWEEP_STEPS = 100


def candidate_config(base: dict, changes: dict[str, str], extra: tuple[str, ...] = ()) -> Config:
    """The user's config (as a dict, -o overrides applied) with `changes` (key -> value)."""
    return load_config(base, [f"{k}={v}" for k, v in changes.items()] + list(extra))


def shared_data(cfg: Config) -> DataBundle:
    """The data, loaded once for every candidate screened: they differ only in the model."""
    return load_data(cfg.data)


def at_init(cfg: Config, data: DataBundle | None = None,
            supplied: SuppliedModel | None = None) -> dict:
    """The propagation report (cnnlab inspect's) of `cfg` on one batch."""
    return inspect_assembly(assemble(cfg, data, supplied=supplied), SCREEN_BATCH)


def range_test(cfg: Config, supplied: SuppliedModel | None = None,
               steps: int = SWEEP_STEPS) -> dict:
    """The LR range test of `cfg` (cnnlab lr-find's), with its suggestions in config units and
    its wall time in `seconds` (the model and data it built included)."""
    started = time.monotonic()
    sweep = lr_find(cfg, start=SWEEP_START, end=SWEEP_END, steps=steps, model=supplied)
    return {**sweep, "seconds": time.monotonic() - started}
