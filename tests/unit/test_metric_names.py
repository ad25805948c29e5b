"""cnnlab.metric_names: what each metric name means, and that analysis needs no training code."""

import math
import subprocess
import sys

import pytest

from cnnlab.config import load_config
from cnnlab.errors import ConfigError
from cnnlab.metric_names import WATCHABLE, averaged_by, base_metric, direction, \
    direction_words, final_keys, higher_is_better, loss_diverged, metric_bounds, metric_label, \
    per_epoch_metric, summary_key, summary_metrics, summary_value


@pytest.mark.parametrize("metric, expected", [
    ("val_acc", "maximize"), ("test_top5", "maximize"), ("best_val_acc", "maximize"),
    ("ema_val_acc", "maximize"), ("final_swa_val_acc", "maximize"),
    ("val_loss", "minimize"), ("final_train_loss", "minimize"), ("test_loss", "minimize")])
def test_accuracies_are_maximised_and_losses_minimised(metric, expected):
    assert direction(metric) == expected
    assert higher_is_better(metric) is (expected == "maximize")
    assert direction_words(metric) == ("higher is better" if expected == "maximize"
                                       else "lower is better")


@pytest.mark.parametrize("metric", ["images_per_s", "final_images_per_s"])
def test_throughput_is_maximised(metric):
    # A faster run is the better one: `compare --metric images_per_s` once called it worse.
    assert direction(metric) == "maximize"
    assert direction_words(metric) == "higher is better"


@pytest.mark.parametrize("metric, key", [
    ("val_acc", "final_val_acc"), ("ema_val_loss", "final_ema_val_loss"),
    ("final_val_acc", "final_val_acc"), ("best_val_acc", "best_val_acc"),
    ("test_acc", "test_acc")])
def test_a_bare_name_is_read_from_its_final_form(metric, key):
    assert summary_key(metric) == key


def test_summary_value_reads_the_key_itself_first_then_its_final_form():
    summary = {"final_val_acc": 0.9, "images_per_s": 1200, "test_loss": float("nan")}
    assert summary_value(summary, "val_acc") == 0.9
    assert summary_value(summary, "final_val_acc") == 0.9
    assert summary_value(summary, "images_per_s") == 1200.0
    assert summary_value(summary, "test_loss") is None  # not finite
    assert summary_value(summary, "val_top5") is None  # missing


def test_summary_metrics_lists_what_metric_accepts():
    summary = {"final_val_acc": 0.9, "final_ema_val_loss": 0.3, "best_val_acc": 0.91,
               "best_epoch": 3, "test_acc": 0.88, "seconds": 4.0}
    assert summary_metrics(summary) == {"val_acc", "ema_val_loss", "best_val_acc", "test_acc"}


def test_final_keys_come_from_the_last_epoch():
    last = {"epoch": 3, "val_acc": 0.9, "train_loss": 0.2, "ema_val_top5": 0.99, "lr": 0.1}
    assert final_keys(last) == {"final_val_acc": 0.9, "final_train_loss": 0.2}


@pytest.mark.parametrize("summary, diverged", [
    ({"final_val_loss": 0.3, "final_train_loss": 0.2}, False),
    ({"final_val_loss": float("nan"), "final_val_acc": 0.1}, True),
    ({"final_train_loss": float("inf")}, True),
    ({"final_val_loss": None}, True),
    ({"final_val_acc": 0.5}, False)])
def test_a_non_finite_final_loss_means_diverged(summary, diverged):
    assert loss_diverged(summary) is diverged


@pytest.mark.parametrize("metric, average, base", [
    ("ema_val_acc", "ema", "val_acc"), ("final_ema_val_loss", "ema", "final_val_loss"),
    ("final_swa_val_acc", "swa", "final_val_acc"), ("best_val_acc", None, "best_val_acc"),
    ("val_loss", None, "val_loss")])
def test_averaged_forms_name_their_average_and_their_base(metric, average, base):
    assert averaged_by(metric) == average
    assert base_metric(metric) == base


def test_watchable_metrics_are_per_epoch_names_with_a_direction():
    assert "val_loss" in WATCHABLE and "ema_val_acc" in WATCHABLE
    assert all(per_epoch_metric(m) == m for m in WATCHABLE)
    assert all(metric_label(m) != m for m in WATCHABLE)


def test_bounds_and_labels():
    assert metric_bounds("test_top5") == (0.0, 1.0)
    assert metric_bounds("final_train_loss") == (0.0, math.inf)
    assert metric_label("ema_val_loss") == "EMA validation loss (cross-entropy)"
    assert metric_label("seconds") == "seconds"
    assert per_epoch_metric("test_top5") == "val_top5"


@pytest.mark.parametrize("overrides, key", [
    (["train.early_stopping={metric: ema_val_loss}"], "train.early_stopping.metric"),
    (["schedule={name: plateau, metric: ema_val_acc, mode: max}"], "schedule.metric")])
def test_watching_the_ema_without_ema_is_a_config_error(overrides, key):
    with pytest.raises(ConfigError, match=f"{key} ema_val_.* watches the weight average, but "
                                          "train.ema is off"):
        load_config({}, overrides)
    load_config({}, overrides + ["train.ema={decay: 0.9}"])


def test_analysis_imports_no_training_code():
    code = ("import sys, cnnlab.experiments.compare, cnnlab.report.sources, "
            "cnnlab.report.figures, cnnlab.report.page\n"
            "heavy = [m for m in ('torch', 'optuna', 'cnnlab.train', 'cnnlab.assemble', "
            "'cnnlab.models', 'cnnlab.components', 'cnnlab.data', 'cnnlab.config') "
            "if m in sys.modules]\n"
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""
