"""The four classic claims about initialization and activations (README, "Evidence"), asserted.

Each trains the example configs the README's table comes from, so a regression in init, the
activations or the loop shows up here."""

import math

import pytest

import cnnlab
from cnnlab.propagation import inspect
from tests.conftest import ROOT

PLAIN = ROOT / "examples" / "deep_plain.yaml"
CHANCE = 0.1  # ten classes in both data sets
LN10 = math.log(10)


def run(tmp_path, config, overrides=()):
    cfg = cnnlab.load_config(config, list(overrides))
    report = inspect(cfg)
    summary = cnnlab.train(cfg, out=tmp_path / "run", progress=False)
    return report, summary


def test_1_zero_init_keeps_units_identical_and_the_net_at_chance(tmp_path):
    report, summary = run(tmp_path, ROOT / "examples" / "zero_init.yaml")
    assert report["verdict"] == "symmetric"
    assert summary["final_val_acc"] < CHANCE + 0.1


def test_2_small_normal_init_vanishes_and_stalls_while_kaiming_is_healthy_and_trains(tmp_path):
    small, small_run = run(tmp_path / "small", PLAIN, ["model.init={name: normal, std: 0.01}"])
    assert small["verdict"] == "vanishing"
    assert small["forward_ratio"] < 1e-6
    assert small_run["final_train_loss"] == pytest.approx(LN10, abs=0.05)

    he, he_run = run(tmp_path / "he", PLAIN)
    assert he["verdict"] == "healthy"
    # Every conv layer's output std lies within a factor of 2 of every other's, while the small
    # init loses a factor of 1e6 or more.
    stds = [layer["std"] for layer in he["layers"] if layer["kind"] == "conv"]
    assert max(stds) / min(stds) < 2
    assert he_run["final_val_acc"] > 0.5


def test_3_sigmoid_backward_signal_vanishes_where_relu_does_not(tmp_path):
    sigmoid, sigmoid_run = run(tmp_path / "sigmoid", PLAIN, ["model.activation=sigmoid"])
    relu = inspect(cnnlab.load_config(PLAIN))
    assert sigmoid["verdict"] == "vanishing"
    assert sigmoid["backward_ratio"] < 1e-6 < 0.1 < relu["backward_ratio"]
    assert sigmoid_run["final_val_acc"] < CHANCE + 0.1


def test_4_he_2015_figure_3_xavier_stalls_and_he_converges_at_depth_30(tmp_path):
    xavier, xavier_run = run(tmp_path / "xavier", PLAIN,
                             ["model.depth=30", "model.init=xavier_normal"])
    assert xavier["verdict"] == "vanishing"
    assert xavier_run["final_train_loss"] == pytest.approx(LN10, abs=0.05)
    he, he_run = run(tmp_path / "he", PLAIN, ["model.depth=30"])
    assert he["verdict"] == "healthy"
    assert he_run["final_train_loss"] < 0.7 * LN10
    assert he_run["final_val_acc"] > 0.5
