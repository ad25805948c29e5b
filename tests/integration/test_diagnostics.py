"""Diagnostics during training: alarms on constructed failures, silence on a healthy run, the
files they leave and `cnnlab diagnose`."""

import json

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.diagnostics import VANISHING_SAMPLES, Diagnostics, diagnose
from cnnlab.rundir import DIAGNOSTICS
from cnnlab.errors import NonFiniteLossError
from tests.conftest import ROOT, cli

QUICKSTART = ROOT / "examples" / "quickstart.yaml"


def train(tmp_path, overrides, name="run"):
    cfg = cnnlab.load_config(QUICKSTART, overrides + ["diagnostics.every=4"])
    try:
        cnnlab.train(cfg, out=tmp_path / name, progress=False)
    except NonFiniteLossError:
        pass  # a diverged run keeps its diagnostics
    return diagnose(tmp_path / name)


def kinds(report):
    return {alarm["kind"] for alarm in report["alarms"]}


def test_a_deep_plain_sigmoid_net_raises_vanishing(tmp_path):
    report = train(tmp_path, ["model={arch: plain, depth: 20, width: 16, norm: none, "
                              "activation: sigmoid}", "train.epochs=2"])
    vanishing = [a for a in report["alarms"] if a["kind"] == "vanishing"]
    assert vanishing and vanishing[0]["layer"] == "body.0.conv"
    # Only after several samples in a row: at the third sample, not the first.
    assert vanishing[0]["step"] == report["steps"][VANISHING_SAMPLES - 1] > 0


def test_a_learning_rate_100x_too_high_raises_exploding_or_non_finite(tmp_path):
    report = train(tmp_path, ["optim.lr=5.0", "train.epochs=3"])
    assert kinds(report) & {"exploding", "non_finite"}
    # Layers whose range grew many times over still plot (their early histograms are narrow).
    plots = tmp_path / "plots"
    cli("diagnose", str(tmp_path / "run"), "--plot", str(plots), check=True)
    assert (plots / "histograms.png").read_bytes()[:4] == b"\x89PNG"


def test_a_large_negative_bias_before_relu_raises_dead(tmp_path):
    report = train(tmp_path, ["model.norm=none", "train.epochs=1",
                              "model.init={default: kaiming_normal, bias: {name: constant, "
                              "value: -10}}"])
    dead = {a["layer"] for a in report["alarms"] if a["kind"] == "dead"}
    assert "body.0.0.act" in dead


def test_a_healthy_resnet_run_stays_silent(tmp_path):
    report = train(tmp_path, ["model.arch=resnet20", "train.epochs=3"])
    assert report["alarms"] == []
    assert report["samples"] >= 10


def test_diagnose_cli_json_plots_and_compact_storage(tmp_path):
    out = tmp_path / "run"
    cli("train", str(QUICKSTART), "-o", "diagnostics.every=10", "-o", "train.epochs=2",
        "--out", str(out), "--quiet", check=True)
    result = json.loads(cli("diagnose", str(out), "--json", "--plot", str(tmp_path / "plots"),
                            check=True).stdout)
    assert set(result) >= {"layers", "alarms", "overhead"}
    kinds_seen = {layer["kind"] for layer in result["layers"]}
    assert kinds_seen == {"conv", "norm", "activation", "linear"}
    assert result["overhead"]["fraction"] is not None
    for name in ("activation_std", "grad_norm", "update_ratio", "histograms"):
        assert (tmp_path / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["diagnostics"]["overhead"]["fraction"] == pytest.approx(
        result["overhead"]["fraction"])
    with np.load(out / DIAGNOSTICS) as data:
        samples, layers = data["std"].shape
        # 40 steps: every 10 would give 4 samples, under the minimum of 20, so the interval
        # narrows to 2: steps 0, 1, 2 and then 4, 6, ..., 38.
        assert result["steps"] == [0, 1, 2] + list(range(4, 40, 2))
        assert samples == result["samples"] == 21
        assert data["hist"].shape == (samples, layers, 64)
    text = cli("diagnose", str(out), check=True).stdout
    assert "alarms: none" in text and "diagnostics cost" in text
    missing = cli("diagnose", str(tmp_path))
    assert missing.returncode == 2 and "has no diagnostics" in missing.stderr


def test_hooks_are_removed_even_when_the_step_fails():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    diagnostics = Diagnostics(model, every=1)
    with pytest.raises(RuntimeError):
        with diagnostics.capture():
            model(torch.randn(1, 1, 3, 3))
            raise RuntimeError("boom")
    assert all(not m._forward_hooks for m in model.modules())


def test_layer_statistics_read_the_first_images_but_the_finite_check_reads_all():
    from cnnlab.diagnostics import SAMPLE_IMAGES

    conv = torch.nn.Conv2d(1, 1, 1, bias=False)
    torch.nn.init.ones_(conv.weight)
    diagnostics = Diagnostics(torch.nn.Sequential(conv), every=1)
    images = torch.ones(SAMPLE_IMAGES + 8, 1, 4, 4)
    images[SAMPLE_IMAGES:] = 100.0  # outside the statistics' images: the mean stays 1
    images[-1, 0, 0, 0] = float("nan")  # the last image only: the finite check must see it
    with diagnostics.capture():
        conv(images)
    (stats,) = diagnostics._pending["outputs"]
    assert float(stats["mean"]) == pytest.approx(1.0) and float(stats["peak"]) == 1.0
    assert not bool(stats["finite"])


def test_memory_stays_bounded_by_thinning_old_samples(tmp_path):
    cfg = cnnlab.load_config(QUICKSTART, ["diagnostics={every: 1, max_samples: 10}",
                                          "train.epochs=2"])
    cnnlab.train(cfg, out=tmp_path / "run", progress=False)
    report = diagnose(tmp_path / "run")
    assert report["samples"] <= 10 and report["every"] > 1
    assert report["steps"] == sorted(report["steps"])


def test_a_ten_step_run_is_sampled_at_every_step_and_a_learning_rate_spike_raises_an_alarm(
        tmp_path, tiny):
    # 320 training images in batches of 32: 10 steps. At step 5 the LR jumps 300x (0.05 to 15):
    # the loss leaps like a diverging run's. The default interval of 50 used to sample step 0
    # only, and the run ended with no alarm and empty plots.
    tiny["data"]["synthetic"]["train_size"] = 400
    tiny["train"]["epochs"] = 1
    tiny["schedule"] = {"name": "multistep", "unit": "step", "milestones": [5], "gamma": 300.0}
    tiny["diagnostics"] = {}  # the defaults
    try:
        cnnlab.train(cnnlab.load_config(tiny), out=tmp_path / "run", progress=False)
    except NonFiniteLossError:
        pytest.fail("the spike should leave the loss finite, so that only sampling can see it")
    report = diagnose(tmp_path / "run")
    assert report["steps"] == list(range(10))
    assert {"exploding"} <= kinds(report)
    assert min(a["step"] for a in report["alarms"] if a["kind"] == "exploding") >= 5
