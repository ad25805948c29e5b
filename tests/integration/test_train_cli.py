"""The CLI as a user runs it: train, eval, list, and the files a run leaves behind."""

import json
import math

import pytest
import yaml
from safetensors.torch import load_file

from tests.conftest import ROOT, cli, write_config

METRIC_KEYS = {"epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
               "images_per_s", "seconds"}


def test_quickstart_reaches_90_percent_and_leaves_a_complete_run_folder(tmp_path):
    out = tmp_path / "qs"
    result = cli("train", str(ROOT / "examples" / "quickstart.yaml"), "--out", str(out),
                 check=True)
    assert f"run folder: {out}" in result.stdout
    assert "best val_acc" in result.stdout and "final val_acc" in result.stdout
    assert "epoch 10/10" in result.stderr  # progress goes to stderr

    for name in ("config.yaml", "metrics.jsonl", "summary.json", "environment.json",
                 "model.safetensors", "checkpoints/last.pt", "checkpoints/best.safetensors"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["final_val_acc"] >= 0.90
    assert summary["best_val_acc"] >= summary["final_val_acc"]

    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == list(range(1, 11))
    for line in lines:
        assert METRIC_KEYS <= set(line)
        assert "val_top5" in line  # digits has 10 classes
    steps = [line["step"] for line in lines]
    assert steps == sorted(steps) and steps[-1] == summary["steps"]

    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["data"]["normalize"]["mean"][0] == pytest.approx(0.3, abs=0.1)
    assert resolved["train"]["threads"] >= 1 and resolved["train"]["device"] == "cpu"
    env = json.loads((out / "environment.json").read_text())
    for key in ("cnnlab", "torch", "python", "device", "threads", "git_commit"):
        assert key in env
    weights = load_file(str(out / "model.safetensors"))
    assert "classifier.weight" in weights


def test_python_api_returns_the_summary(tmp_path, tiny):
    import cnnlab

    cfg = cnnlab.load_config(tiny, ["train.epochs=1"])
    summary = cnnlab.train(cfg, out=tmp_path / "api", progress=False)
    assert summary["status"] == "completed" and summary["epochs_completed"] == 1
    assert "final_val_top5" not in summary  # 4 classes: top-5 would be meaningless
    assert math.isfinite(summary["final_train_loss"])


def test_train_test_false_skips_the_test_evaluation_which_eval_can_still_do(tmp_path, tiny):
    import cnnlab

    tested = cnnlab.train(cnnlab.load_config(tiny, ["train.epochs=1"]), out=tmp_path / "tested",
                          progress=False)
    untested = cnnlab.train(cnnlab.load_config(tiny, ["train.epochs=1", "train.test=false"]),
                            out=tmp_path / "untested", progress=False)
    assert "test_acc" in tested and "test_acc" not in untested
    assert untested["final_val_acc"] == tested["final_val_acc"]
    test = json.loads(cli("eval", str(tmp_path / "untested"), "--split", "test", "--json",
                          check=True).stdout)
    assert test["test_acc"] == pytest.approx(tested["test_acc"])


def test_eval_reports_final_and_best_weights_on_a_split(tmp_path, tiny):
    out = tmp_path / "run"
    cli("train", str(write_config(tmp_path / "c.yaml", tiny)), "--out", str(out), "--quiet",
        check=True)
    summary = json.loads((out / "summary.json").read_text())
    final = json.loads(cli("eval", str(out), "--json", check=True).stdout)
    assert final["val_acc"] == pytest.approx(summary["final_val_acc"])
    test = json.loads(cli("eval", str(out), "--split", "test", "--json", check=True).stdout)
    assert test["test_acc"] == pytest.approx(summary["test_acc"])
    best = cli("eval", str(out), "--weights", "best", check=True)
    assert "best weights on" in best.stdout and "val_acc" in best.stdout
    bad = cli("eval", str(out), "-o", "optim.lr=1")
    assert bad.returncode == 2 and "only data.* and train.device" in bad.stderr
    # Runtime keys may change: a run trained elsewhere evaluates here.
    moved = json.loads(cli("eval", str(out), "-o", "train.threads=2", "-o", "train.device=cpu",
                           "--json", check=True).stdout)
    assert moved["val_acc"] == pytest.approx(summary["final_val_acc"])


def test_eval_of_the_best_weights_measures_the_best_epoch_not_the_last(tmp_path, tiny):
    # A constant LR this high peaks at epoch 2 and falls back: best and final differ.
    tiny["optim"]["lr"] = 0.3
    tiny["schedule"] = "constant"
    tiny["train"]["epochs"] = 4
    out = tmp_path / "run"
    cli("train", str(write_config(tmp_path / "c.yaml", tiny)), "--out", str(out), "--quiet",
        check=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_epoch"] < 4 and summary["best_val_acc"] > summary["final_val_acc"]
    best = json.loads(cli("eval", str(out), "--weights", "best", "--json", check=True).stdout)
    assert best["val_acc"] == pytest.approx(summary["best_val_acc"])


def test_list_shows_every_registry_entry_with_a_description():
    from cnnlab.catalogue import catalogue

    result = cli("list", "--json", check=True)
    listed = json.loads(result.stdout)
    for kind, registry in catalogue().items():
        assert [e["name"] for e in listed[kind]] == registry.names()
        assert all(e["description"] for e in listed[kind])
    models = cli("list", "models", check=True).stdout.splitlines()
    # One line per built-in model, then the one that names the foreign forms of model.arch.
    assert len(models) == len(catalogue()["models"]) + 1
    assert any(line.startswith("fastnet ") for line in models)
    assert models[-1].startswith("model.arch also takes torchvision.NAME")


def test_out_folder_that_already_holds_a_run_is_refused(tmp_path, tiny):
    config = write_config(tmp_path / "c.yaml", tiny | {"train": {"epochs": 1, "threads": 1}})
    cli("train", str(config), "--out", str(tmp_path / "r"), "--quiet", check=True)
    again = cli("train", str(config), "--out", str(tmp_path / "r"))
    assert again.returncode == 2 and "already holds a run" in again.stderr


def test_default_run_folder_is_under_runs_with_name_and_timestamp(tmp_path, tiny):
    config = write_config(tmp_path / "c.yaml", tiny | {"train": {"epochs": 1, "threads": 1}})
    cli("train", str(config), "--quiet", cwd=tmp_path, check=True)
    (run,) = list((tmp_path / "runs").iterdir())
    assert run.name.startswith("tiny-") and (run / "model.safetensors").exists()


def test_compiled_training_matches_eager_and_saves_plain_weight_names(tmp_path, tiny):
    import cnnlab
    import torch

    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    histories = {}
    for compiled in (False, True):
        # Batches of 8 make 64 steps: enough for diagnostics to leave most steps unsampled
        # (a sampled step runs eagerly; a run under 20 steps is sampled at every step).
        cfg = cnnlab.load_config(tiny, ["train.epochs=2", f"train.compile={compiled}",
                                        "data.batch_size=8", "diagnostics.every=3"])
        out = tmp_path / f"compile-{compiled}"
        cnnlab.train(cfg, out=out, progress=False)
        histories[compiled] = [json.loads(line) for line in
                               (out / "metrics.jsonl").read_text().splitlines()]
        weights = load_file(str(out / "model.safetensors"))
        assert all(not name.startswith("_orig_mod") for name in weights)
    assert counters["stats"]["unique_graphs"] >= 1  # the compiled run really compiled
    torch._dynamo.reset()
    for eager, compiled in zip(histories[False], histories[True]):
        # Fused kernels round differently, so the two runs agree closely, not bit for bit.
        assert compiled["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-3, abs=1e-4)
        assert compiled["val_acc"] == pytest.approx(eager["val_acc"], abs=0.05)
