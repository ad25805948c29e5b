"""Metric names and what they mean: the one place that knows them.

A metric is named by its split and its quantity (`val_acc`: validation accuracy). Three places
hold it, each with its own form of the name:

    metrics.jsonl (one line per epoch)   val_acc, train_loss, ema_val_acc, images_per_s, ...
    summary.json and a trial's attrs     final_val_acc (the last epoch's), best_val_acc,
                                         test_acc (the test split, evaluated once at the end),
                                         final_swa_val_acc (SWA's average), images_per_s, ...
    --metric / settings                  either form: a bare name stands for its final_ form

`ema_` and `swa_` name the same metric measured on a weight average instead of the trained
weights. Pure string logic: importing this module imports nothing else of cnnlab, so analysis
(compare, report) can use it without training code.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

# What compare, report, ablate and search measure when not told.
DEFAULT_METRIC = "val_acc"

# The per-epoch metrics that settings (early stopping, plateau) can watch. ema_* exist only when
# train.ema is set; val_top5 only with 10 or more classes.
MetricName = Literal["val_loss", "val_acc", "val_top5", "train_loss", "train_acc",
                     "ema_val_loss", "ema_val_acc", "ema_val_top5"]
WATCHABLE: tuple[str, ...] = get_args(MetricName)

# Per-epoch metrics whose last value the summary keeps as final_<name> (ema_val_top5 is not kept).
FINAL_FROM_LAST_EPOCH = ("val_acc", "val_loss", "val_top5", "train_loss", "train_acc",
                         "ema_val_acc", "ema_val_loss")

# Summary keys a study copies into each trial's attributes, so that `compare` and `report` can
# read a study without its run folders.
RECORDED_IN_TRIALS = ("final_val_acc", "final_val_loss", "best_val_acc", "test_acc", "test_loss",
                      "final_train_loss", "final_ema_val_acc", "final_swa_val_acc",
                      "epochs_completed", "seconds")

# A run whose final loss is not finite diverged, whatever its accuracy says (an accuracy is
# still a number when every prediction is the same class): it counts as diverged for every
# metric, so that the counts do not depend on which metric is compared.
LOSS_KEYS = ("final_val_loss", "final_train_loss")

# The summary's prefixes that say where a metric's value was read from.
SUMMARY_PREFIXES = ("test_", "best_", "final_")
AVERAGES = ("ema", "swa")

# A metric whose name contains one of these is maximised (accuracy, throughput); every other
# one (a loss, seconds) is minimised.
MAXIMIZE_HINTS = ("acc", "top5", "images_per_s")

QUANTITY_WORDS = {"acc": "accuracy (fraction)", "top5": "top-5 accuracy (fraction)",
                  "loss": "loss (cross-entropy)"}
SPLIT_WORDS = {"val": "validation", "test": "test", "train": "training",
               "ema_val": "EMA validation"}
PREFIX_WORDS = (("best_", "best "), ("final_", "final "))


# -------------------------------------------------------------------------------------------
# Direction and range


def direction(metric: str) -> Literal["maximize", "minimize"]:
    """Optuna's word for the metric's direction: accuracies and throughput are maximised,
    losses and times minimised."""
    return "maximize" if any(hint in metric for hint in MAXIMIZE_HINTS) else "minimize"


def higher_is_better(metric: str) -> bool:
    return direction(metric) == "maximize"


def direction_words(metric: str) -> str:
    """'higher is better' or 'lower is better', as compare and report print it."""
    return "higher is better" if higher_is_better(metric) else "lower is better"


def metric_bounds(metric: str) -> tuple[float, float]:
    """The values a metric can take: accuracies are fractions, losses are non-negative."""
    if metric.endswith(("_acc", "_top5")):
        return (0.0, 1.0)
    if metric.endswith("_loss"):
        return (0.0, math.inf)
    return (-math.inf, math.inf)


# -------------------------------------------------------------------------------------------
# Where a metric is read from


def summary_key(metric: str) -> str:
    """The summary (or trial attribute) key of `metric`: val_acc -> final_val_acc; a name that
    already says where it comes from (test_acc, best_val_acc, final_val_loss) is its own key."""
    return metric if metric.startswith(SUMMARY_PREFIXES) else f"final_{metric}"


def summary_value(summary: dict, metric: str) -> float | None:
    """The run's value of `metric`: the summary key of that name (test_acc, best_val_acc,
    images_per_s) or else final_<metric>; None when missing or not finite."""
    value = summary.get(metric, summary.get(f"final_{metric}"))
    return float(value) if value is not None and math.isfinite(float(value)) else None


def final_keys(last_epoch: dict) -> dict:
    """The summary's final_* entries, taken from the last metrics.jsonl line."""
    return {f"final_{key}": last_epoch[key] for key in FINAL_FROM_LAST_EPOCH
            if key in last_epoch}


def summary_metrics(summary: dict) -> set[str]:
    """The metric names `--metric` accepts for one run: final_X as X, test_* and best_*."""
    names = set()
    for key in summary:
        if key.startswith("final_"):
            names.add(key.removeprefix("final_"))
        elif key.startswith(("test_", "best_")) and key != "best_epoch":
            names.add(key)
    return names


def per_epoch_metric(metric: str) -> str:
    """The metrics.jsonl key whose curve leads to `metric`: best_val_acc and final_val_acc come
    from val_acc; the test split is evaluated once at the end, so its curve is validation's."""
    name = metric.removeprefix("best_").removeprefix("final_")
    return "val_" + name.removeprefix("test_") if name.startswith("test_") else name


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def loss_diverged(summary: dict) -> bool:
    """True when a finished run's summary (or trial attributes) holds a non-finite final loss."""
    return any(key in summary and not _finite(summary[key]) for key in LOSS_KEYS)


# -------------------------------------------------------------------------------------------
# Weight averages


def averaged_by(metric: str) -> str | None:
    """'ema' or 'swa' when `metric` is measured on that weight average (ema_val_acc,
    final_swa_val_acc), else None."""
    name = metric.removeprefix("best_").removeprefix("final_")
    return next((average for average in AVERAGES if name.startswith(f"{average}_")), None)


def base_metric(metric: str) -> str:
    """The metric without its weight average: ema_val_acc -> val_acc,
    final_swa_val_loss -> final_val_loss."""
    average = averaged_by(metric)
    return metric.replace(f"{average}_", "", 1) if average else metric


# -------------------------------------------------------------------------------------------
# Display


def metric_label(metric: str) -> str:
    """'val_acc' -> 'validation accuracy (fraction)': axis labels with their unit; a name it
    does not know is shown as it is."""
    name = metric
    prefix = ""
    for start, words in PREFIX_WORDS:
        if name.startswith(start):
            name, prefix = name[len(start):], words
    split, _, quantity = name.rpartition("_")
    if quantity in QUANTITY_WORDS and split in SPLIT_WORDS:
        return f"{prefix}{SPLIT_WORDS[split]} {QUANTITY_WORDS[quantity]}"
    return metric
