"""Regularization and training conveniences in real (tiny) runs."""

import json

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

import cnnlab
from cnnlab.errors import UserError
from tests.conftest import same_tensors as same


def weights(path):
    return load_file(str(path))


def average_in_metadata(path):
    """Which weights a safetensors file says it holds: none, ema or swa."""
    with safe_open(str(path), "pt") as handle:
        return handle.metadata()["average"]


def run(tmp_path, tiny, name, overrides=()):
    cfg = cnnlab.load_config(tiny, list(overrides))
    summary = cnnlab.train(cfg, out=tmp_path / name, progress=False)
    return summary, tmp_path / name


def test_mixing_with_alpha_zero_is_bit_identical_to_no_mixing(tmp_path, tiny):
    _, plain = run(tmp_path, tiny, "plain")
    _, zero = run(tmp_path, tiny, "zero", ["train.mixup=0", "train.cutmix=0",
                                           "train.mix_prob=0.5", "train.mix_switch_prob=0.2"])
    assert same(weights(plain / "model.safetensors"), weights(zero / "model.safetensors"))
    _, mixed = run(tmp_path, tiny, "mixed", ["train.mixup=0.2", "train.cutmix=1.0"])
    assert not same(weights(plain / "model.safetensors"), weights(mixed / "model.safetensors"))


def test_ema_with_decay_zero_equals_the_raw_model_and_is_reported(tmp_path, tiny):
    summary, out = run(tmp_path, tiny, "ema0", ["train.ema={decay: 0.0}"])
    assert same(weights(out / "model.safetensors"), weights(out / "model_raw.safetensors"))
    assert summary["weights"] == "ema"
    assert summary["final_ema_val_acc"] == pytest.approx(summary["final_val_acc"])
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("ema_val_acc" in m for m in metrics)
    assert average_in_metadata(out / "model.safetensors") == "ema"


def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best_weights(tmp_path, tiny):
    # Training loss falls every epoch, so "max" never improves after epoch 1: with patience 2,
    # the run stops after epoch 3 and restores the weights of epoch 1.
    tiny["schedule"] = "constant"
    tiny["train"]["epochs"] = 6
    summary, out = run(tmp_path, tiny, "stop", [
        "train.early_stopping={metric: train_loss, mode: max, patience: 2}"])
    assert summary["stopped_early"] == 3 and summary["epochs_completed"] == 3
    assert summary["restored_epoch"] == 1
    tiny["train"]["epochs"] = 1
    _, one = run(tmp_path, tiny, "one")
    assert same(weights(out / "model.safetensors"), weights(one / "model.safetensors"))


def test_bf16_autocast_trains_on_cpu_and_drop_path_needs_a_residual_model(tmp_path, tiny):
    summary, _ = run(tmp_path, tiny, "bf16", ["train.amp=bf16", "train.epochs=1"])
    assert summary["status"] == "completed"
    summary, _ = run(tmp_path, tiny, "droppath", ["model={arch: resnet20, width: 4, drop_path: "
                                                  "0.2, dropout2d: 0.1}", "train.epochs=1"])
    assert summary["status"] == "completed"
    with pytest.raises(UserError, match="model.drop_path drops residual branches"):
        run(tmp_path, tiny, "bad", ["model.drop_path=0.1"])


def test_weight_averaging_of_the_last_epoch_keeps_its_weights_and_renews_batch_norm(tmp_path,
                                                                                  tiny):
    tiny["model"]["norm"] = "batch"
    tiny["train"]["epochs"] = 3
    summary, out = run(tmp_path, tiny, "swa", ["train.swa={start_epoch: 3, lr: 0.01}"])
    averaged, raw = weights(out / "model.safetensors"), weights(out / "model_raw.safetensors")
    assert averaged.keys() == raw.keys()
    statistics = {k for k in raw if k.endswith(("running_mean", "running_var"))}
    assert statistics, "the model should have batch norm"
    # One epoch averaged: its weights exactly; the batch-norm statistics were recomputed over
    # the training images with the averaged weights instead of the run's moving average.
    assert all(torch.equal(averaged[k], raw[k]) for k in raw.keys() - statistics
               if not k.endswith("num_batches_tracked"))
    assert not all(torch.equal(averaged[k], raw[k]) for k in statistics)
    assert summary["weights"] == "swa" and summary["swa_epochs"] == 1
    assert 0.0 <= summary["final_swa_val_acc"] <= 1.0
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["lr"] for m in metrics][2] == pytest.approx(0.01)
    assert average_in_metadata(out / "model.safetensors") == "swa"


def test_weight_averaging_that_never_starts_leaves_the_raw_model_final(tmp_path, tiny):
    tiny["schedule"] = "constant"
    tiny["train"]["epochs"] = 6
    summary, out = run(tmp_path, tiny, "late", [
        "train.swa={start_epoch: 5}",
        "train.early_stopping={metric: train_loss, mode: max, patience: 1, restore_best: false}"])
    assert summary["stopped_early"] == 2 and summary["swa_epochs"] == 0
    assert summary["weights"] == "raw"
    assert same(weights(out / "model.safetensors"), weights(out / "model_raw.safetensors"))


def test_gradient_clipping_caps_every_step_at_the_configured_norm(tmp_path, tiny, monkeypatch):
    from cnnlab.assemble import assemble

    calls = []
    original = torch.nn.utils.clip_grad_norm_

    def recording(parameters, max_norm, *args, **kwargs):
        total = original(parameters, max_norm, *args, **kwargs)
        calls.append((max_norm, float(total)))
        return total

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    initial = {k: v.clone() for k, v in assemble(cnnlab.load_config(tiny)).model.state_dict()
               .items()}
    summary, clipped = run(tmp_path, tiny, "clipped", ["train.grad_clip=1e-6"])
    assert len(calls) == summary["steps"] and {c[0] for c in calls} == {1e-6}
    assert all(norm > 1e-6 for _, norm in calls)  # the norm before clipping is returned
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", original)
    _, free = run(tmp_path, tiny, "free")

    def moved(folder):
        final = weights(folder / "model.safetensors")
        return sum(float((final[k] - initial[k]).norm()) for k in final if k.endswith("weight"))

    # SGD steps of norm at most lr * 1e-6 (plus momentum) barely move the weights.
    assert moved(clipped) < 1e-3 * moved(free)


def test_label_smoothing_applies_to_the_ordinary_training_loss(tmp_path, tiny):
    plain, _ = run(tmp_path, tiny, "plain")
    smoothed, _ = run(tmp_path, tiny, "smoothed", ["train.label_smoothing=0.3"])
    # Smoothed targets put 0.3 of the mass on the other classes: the loss cannot go as low.
    assert smoothed["final_train_loss"] > plain["final_train_loss"] + 0.05


def test_narrow_convolutions_train_in_nchw_when_the_layout_is_auto(tmp_path, tiny):
    """A ResNet-20 of width 4 in channels_last crashed the process (heap corruption in torch's
    CPU kernels on an AVX2 CPU); `channels_last: auto` now keeps such nets in NCHW, and the
    run's config records it."""
    summary, out = run(tmp_path, tiny, "narrow", ["model={arch: resnet20, width: 4}",
                                                  "train.epochs=1"])
    assert summary["status"] == "completed"
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["channels_last"] is False
    _, wide = run(tmp_path, tiny, "wide", ["model={arch: resnet20, width: 8}", "train.epochs=1"])
    assert yaml.safe_load((wide / "config.yaml").read_text())["train"]["channels_last"] is True
