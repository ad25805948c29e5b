"""Issue 17, `train.tensorboard: true`: the curves of metrics.jsonl and the diagnostics' per-layer
statistics and histograms as TensorBoard events, read back with TensorBoard's own reader; a
missing package refused before training; a resumed run continues its events without writing any
step twice."""

from __future__ import annotations

import copy
import sys

import pytest
import yaml

import cnnlab
from cnnlab.diagnostics import diagnose
from cnnlab.config_changes import FORCEABLE
from cnnlab.errors import UserError
from cnnlab.rundir import RunDir
from tests.conftest import TINY
from tests.reliability.runs import StopAfter

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="needs the tensorboard package (pip install 'cnnlab[tensorboard]')")

EPOCH_TAGS = {"train/loss", "train/acc", "val/loss", "val/acc", "epoch/lr", "epoch/images_per_s"}


def _config(**train) -> cnnlab.Config:
    config = copy.deepcopy(TINY)
    config["train"].update({"tensorboard": True, **train})
    config["diagnostics"] = {"every": 4}
    return cnnlab.Config.model_validate(config)


def _events(run) -> event_accumulator.EventAccumulator:
    reader = event_accumulator.EventAccumulator(
        str(RunDir.open(run).tensorboard_dir), size_guidance={"scalars": 0, "histograms": 0})
    reader.Reload()
    return reader


def _steps(reader, tag: str) -> list[int]:
    return [event.step for event in reader.Scalars(tag)]


def test_curves_and_per_layer_statistics_are_written_from_the_records(tmp_path):
    run = tmp_path / "run"
    cnnlab.train(_config(), out=run, progress=False)
    reader = _events(run)
    tags = reader.Tags()
    assert EPOCH_TAGS <= set(tags["scalars"])

    metrics = RunDir.open(run).read_metrics()
    for key, tag in (("val_acc", "val/acc"), ("train_loss", "train/loss"), ("lr", "epoch/lr")):
        events = reader.Scalars(tag)
        assert [e.step for e in events] == [m["step"] for m in metrics]
        assert [e.value for e in events] == pytest.approx([m[key] for m in metrics], rel=1e-6)

    diagnostics = diagnose(run)
    first_act = next(layer["name"] for layer in diagnostics["layers"]
                     if layer["kind"] == "activation")
    first_conv = next(layer["name"] for layer in diagnostics["layers"]
                      if layer["kind"] == "conv")
    for tag in (f"layers/std/{first_act}", f"layers/dead/{first_act}",
                f"layers/saturated/{first_act}", f"layers/grad_norm/{first_conv}",
                f"layers/update_ratio/{first_conv}", "diagnostics/global_grad_norm"):
        assert _steps(reader, tag) == [s + 1 for s in diagnostics["steps"]], tag
    stds = [e.value for e in reader.Scalars(f"layers/std/{first_conv}")]
    assert stds[0] == pytest.approx(diagnostics["layers"][0]["std_first"], rel=1e-6)
    assert f"histograms/{first_act}" in tags["histograms"]
    histogram = reader.Histograms(f"histograms/{first_act}")[0].histogram_value
    assert histogram.num > 0 and histogram.min < 0 < histogram.max


def test_a_missing_tensorboard_package_is_one_sentence_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(UserError, match=r"cnnlab\[tensorboard\]") as caught:
        cnnlab.train(_config(), out=tmp_path / "run", progress=False)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def _interrupted(out, tensorboard: bool = True):
    """Four epochs, killed while ending the third: its metrics line and events are written, its
    checkpoint is not, so the resume repeats epoch 3."""
    def observe(record: dict) -> bool:
        if record["epoch"] == 3:
            raise StopAfter
        return False

    with pytest.raises(StopAfter):
        cnnlab.train(_config(epochs=4, tensorboard=tensorboard), out=out, progress=False,
                     on_epoch=observe)


def test_a_resumed_run_continues_its_events_without_repeating_a_step(tmp_path):
    run = tmp_path / "run"
    _interrupted(run)
    before = _events(run)
    assert len(_steps(before, "val/acc")) == 3  # epoch 3's line, written before the "kill"
    cnnlab.resume(run, progress=False)

    reader = _events(run)
    metrics = RunDir.open(run).read_metrics()
    assert _steps(reader, "val/acc") == [m["step"] for m in metrics] == [8, 16, 24, 32]
    assert [e.value for e in reader.Scalars("val/loss")] == pytest.approx(
        [m["val_loss"] for m in metrics], rel=1e-6)
    samples = _steps(reader, "diagnostics/lr")
    assert samples == sorted(set(samples))
    assert samples == [s + 1 for s in diagnose(run)["steps"]]


def test_tensorboard_can_be_turned_on_when_resuming_with_force(tmp_path):
    assert "train.tensorboard" in FORCEABLE
    run = tmp_path / "run"
    _interrupted(run, tensorboard=False)
    config = RunDir.open(run).config
    edited = yaml.safe_load(config.read_text())
    edited["train"]["tensorboard"] = True
    config.write_text(yaml.safe_dump(edited, sort_keys=False))
    with pytest.raises(UserError, match="--force"):
        cnnlab.resume(run, progress=False)
    with pytest.warns(UserWarning, match="train.tensorboard False -> True"):
        summary = cnnlab.resume(run, progress=False, force=True)
    assert summary["status"] == "completed"
    assert _steps(_events(run), "val/acc") == [24, 32]  # the epochs trained with it on
