"""Issue 17, `model=` in the Python API: train, resume, inspect, lr_find, ablate, load_model and
evaluate_run take your own nn.Module (deep-copied) or a factory (in_channels, num_classes)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import cnnlab
from cnnlab.config import load_config
from cnnlab.errors import UserError
from cnnlab.rundir import RunDir

BASE = {
    "name": "own",
    "data": {"dataset": "synthetic", "batch_size": 8, "val_split": 0.2, "train_subset": 20,
             "synthetic": {"num_classes": 4, "image_size": 8, "channels": 1,
                           "train_size": 32, "test_size": 8}},
    "optim": {"name": "sgd", "lr": 0.01},
    "train": {"epochs": 1, "threads": 1},
    "diagnostics": {"every": 0},
}


class TinyNet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.head = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.head(F.relu(self.conv1(x)).mean((2, 3)))


def tiny_factory(in_channels, num_classes):
    return TinyNet(in_channels, num_classes)


def cfg(**changes):
    return load_config({**copy.deepcopy(BASE), **changes})


def test_train_with_an_instance_leaves_it_untouched_and_records_its_name(tmp_path):
    net = TinyNet()
    before = copy.deepcopy(net.state_dict())
    summary = cnnlab.train(cfg(), out=tmp_path / "run", model=net, progress=False)
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    recorded = yaml.safe_load(RunDir(tmp_path / "run").config.read_text())["model"]
    assert recorded["arch"] == "python" and recorded["name"].endswith("test_model_param.TinyNet")
    # The trained weights come back through the same network.
    trained = cnnlab.load_model(tmp_path / "run", model=TinyNet)
    assert not torch.equal(trained.conv1.weight, net.conv1.weight)
    assert trained.classes == ["class0", "class1", "class2", "class3"]


def test_a_python_model_run_needs_the_model_again(tmp_path):
    out = tmp_path / "run"
    cnnlab.train(cfg(), out=out, model=tiny_factory, progress=False)
    with pytest.raises(UserError, match="pass the same network again as model="):
        cnnlab.load_model(out)
    result = cnnlab.evaluate_run(out, model=tiny_factory)
    assert 0.0 <= result["val_acc"] <= 1.0
    with pytest.raises(UserError, match="pass the same network again as model="):
        cnnlab.export(out, format="torchscript")
    record = cnnlab.export(out, format="torchscript", model=tiny_factory)
    assert record["check"]["passed"]
    run = RunDir(out)
    run.write_summary({**run.read_summary(), "status": "interrupted"})
    with pytest.raises(UserError, match="pass the same network again as model="):
        cnnlab.resume(out, progress=False)


def test_resume_with_a_factory_continues_the_run(tmp_path):
    out = tmp_path / "run"
    cnnlab.train(cfg(train={"epochs": 2, "threads": 1}), out=out, model=tiny_factory,
                 progress=False)
    run = RunDir(out)
    run.write_summary({**run.read_summary(), "status": "interrupted"})
    summary = cnnlab.resume(out, model=tiny_factory, progress=False)
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2


@pytest.mark.parametrize("model", [TinyNet(), tiny_factory], ids=["instance", "factory"])
def test_inspect_names_the_layers_of_your_network(model):
    report = cnnlab.inspect(cfg(), batch_size=16, model=model)
    names = [layer["name"] for layer in report["layers"]]
    assert "conv1" in names and "head" in names and report["init"] == "the model's own"


@pytest.mark.parametrize("model", [TinyNet(), tiny_factory], ids=["instance", "factory"])
def test_lr_find_with_your_network(model):
    before = copy.deepcopy(model.state_dict()) if isinstance(model, nn.Module) else None
    result = cnnlab.lr_find(cfg(), start=1e-4, end=1.0, steps=6, model=model)
    assert len(result["lrs"]) >= 2 and len(result["losses"]) == len(result["lrs"])
    if before is not None:
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_lr_find_repeats_and_ablate_refuse_an_instance(tmp_path):
    with pytest.raises(UserError, match="model= must be a factory"):
        cnnlab.lr_find(cfg(), steps=6, repeats=2, model=TinyNet())
    with pytest.raises(UserError, match="model= must be a factory"):
        cnnlab.ablate(copy.deepcopy(BASE), vary=["optim.lr=0.01,0.02"], seeds=2, model=TinyNet(),
                      storage_url=str(tmp_path / "s.journal"), runs_root=str(tmp_path))
    with pytest.raises(UserError, match="cannot receive a Python object"):
        cnnlab.ablate(copy.deepcopy(BASE), vary=["optim.lr=0.01,0.02"], seeds=2, workers=2,
                      model=tiny_factory, storage_url=str(tmp_path / "s.journal"),
                      runs_root=str(tmp_path))


def test_ablate_with_a_factory_over_two_seeds(tmp_path):
    study = cnnlab.ablate(copy.deepcopy(BASE), vary=["optim.lr=0.01,0.02"], seeds=2,
                          model=tiny_factory, storage_url=str(tmp_path / "s.journal"),
                          runs_root=str(tmp_path / "runs"))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 4
    assert {t.user_attrs["status"] for t in trials} == {"completed"}
    for trial in trials:
        model = yaml.safe_load(RunDir(trial.user_attrs["run_dir"]).config.read_text())["model"]
        assert model["arch"] == "python" and model["name"].endswith("tiny_factory")


def test_a_worker_cannot_join_a_python_model_study(tmp_path):
    from cnnlab.experiments.worker import check_model

    class Study:
        study_name = "s"
        user_attrs = {"config": {"model": {"arch": "python", "name": "m.f"}}}

    with pytest.raises(UserError, match="which a worker process cannot receive"):
        check_model(Study(), None)


def test_model_must_be_a_module_or_a_factory():
    with pytest.raises(UserError, match="model= takes an nn.Module or a factory"):
        cnnlab.train(cfg(), model=3)


def test_a_report_of_a_python_model_run_leaves_out_what_needs_the_network(tmp_path, capsys):
    from cnnlab.report.page import build_report

    cnnlab.train(cfg(), out=tmp_path / "run", model=tiny_factory, progress=False)
    out = build_report([str(tmp_path / "run")], tmp_path / "report.md")
    assert "cannot rebuild" in capsys.readouterr().err
    assert "Errors of the best run" not in out.read_text()


def test_eval_reads_the_same_weights_with_another_test_time_augmentation(tmp_path):
    """`train.tta` changes how eval reads the trained weights, never the weights, so eval takes
    it as an override (bench/recipe_ablation.py measures TTA this way)."""
    out = tmp_path / "run"
    cnnlab.train(cfg(), out=out, model=tiny_factory, progress=False)
    plain = cnnlab.evaluate_run(out, model=tiny_factory)
    again = cnnlab.evaluate_run(out, model=tiny_factory, overrides=["train.tta=none"])
    flipped = cnnlab.evaluate_run(out, model=tiny_factory, overrides=["train.tta=flip"])
    assert again["val_loss"] == plain["val_loss"]
    assert flipped["val_loss"] != plain["val_loss"]
    with pytest.raises(UserError, match="eval takes only"):
        cnnlab.evaluate_run(out, model=tiny_factory, overrides=["optim.lr=0.1"])
