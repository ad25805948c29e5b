"""Issue 17, models by name and from the user's file: torchvision and timm builders sized to
the data, the small-image stem, a model file imported by path with its hash recorded, and the
one-sentence refusals of bad models."""

from __future__ import annotations

import builtins
import copy
import sys

import pytest
import torch
import yaml
from torch import nn

import cnnlab
from cnnlab.config import load_config
from cnnlab.errors import ConfigError, UserError
from cnnlab.models import build_model
from cnnlab.rundir import RunDir

# 1-channel 16x16 synthetic images, 4 classes; 20 images, 4 held out for validation: 2 steps
# of 8.
BASE = {
    "name": "foreign",
    "data": {"dataset": "synthetic", "batch_size": 8, "val_split": 0.2, "train_subset": 20,
             "synthetic": {"num_classes": 4, "image_size": 16, "channels": 1,
                           "train_size": 32, "test_size": 8}},
    "optim": {"name": "sgd", "lr": 0.01},
    "train": {"epochs": 1, "threads": 1},
    "diagnostics": {"every": 0},
}

NETS = '''
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self, in_channels, num_classes, width=4):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


def build(in_channels, num_classes, width=4):
    return Net(in_channels, num_classes, width)


def broken(in_channels, num_classes):
    raise RuntimeError("no such layer size")


def not_a_module(in_channels, num_classes):
    return "a string"


def wrong_classes(in_channels, num_classes):
    return Net(in_channels, num_classes + 3)
'''


def config(**model) -> dict:
    return {**copy.deepcopy(BASE), "model": model}


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tv") / "run"
    cfg = load_config(config(arch="torchvision.resnet18", small_input=True))
    summary = cnnlab.train(cfg, out=out, progress=False)
    return out, summary


def test_torchvision_resnet18_small_input_on_one_channel_trains(resnet_run):
    out, summary = resnet_run
    assert summary["status"] == "completed" and summary["steps"] == 2
    model = cnnlab.load_model(out)
    # The small-image stem: 3x3 stride-1 first conv taking the data's one channel, no max-pool.
    assert model.conv1.in_channels == 1 and model.conv1.kernel_size == (3, 3)
    assert model.conv1.stride == (1, 1) and isinstance(model.maxpool, nn.Identity)
    assert model.fc.out_features == 4 and model.classes == [f"class{i}" for i in range(4)]
    assert yaml.safe_load(RunDir(out).config.read_text())["model"]["arch"] == \
        "torchvision.resnet18"


def test_evaluate_a_torchvision_run(resnet_run):
    out, summary = resnet_run
    result = cnnlab.evaluate_run(out)
    assert result["val_acc"] == pytest.approx(summary["final_val_acc"])


def test_predict_on_a_torchvision_run(resnet_run, tmp_path, capsys):
    from PIL import Image

    out, _ = resnet_run
    Image.fromarray((torch.rand(16, 16) * 255).byte().numpy()).save(tmp_path / "a.png")
    capsys.readouterr()
    result = cnnlab.predict(out, [tmp_path / "a.png"], top=2)
    # Rebuilding a trained network to load its weights is not news: no init note.
    assert "initialization" not in capsys.readouterr().err
    (prediction,) = result["predictions"]
    assert prediction["class"] in result["classes"] and len(prediction["top"]) == 2
    assert 0.0 < prediction["probability"] <= 1.0


def test_torchvision_keeps_its_own_init_unless_model_init_is_given():
    def conv1_weights(model_section):
        model, assignments = build_model(load_config(config(**model_section)).model, 1, 4,
                                         (16, 16), seed=0)
        return model.conv1.weight.detach().clone(), assignments

    torch.manual_seed(0)
    own, none_assigned = conv1_weights({"arch": "torchvision.resnet18"})
    assert none_assigned == []
    init, assigned = conv1_weights({"arch": "torchvision.resnet18",
                                    "init": {"name": "normal", "std": 0.5}})
    assert {a.layer for a in assigned} >= {"conv1", "fc"}
    assert abs(init.std().item() - 0.5) < 0.05 and own.std().item() < 0.2


def test_unknown_torchvision_name_suggests_close_matches():
    with pytest.raises(ConfigError, match=r"unknown torchvision model 'resnet181' \(did you "
                                          r"mean 'resnet18'"):
        load_config(config(arch="torchvision.resnet181"))


def test_small_input_refused_for_a_stem_it_does_not_know():
    spec = load_config(config(arch="torchvision.squeezenet1_0", small_input=True)).model
    with pytest.raises(UserError, match="small_input is supported for ResNet"):
        build_model(spec, 1, 4, (16, 16), seed=0)


def test_a_foreign_spec_refuses_keys_of_the_built_in_models():
    with pytest.raises(ConfigError, match="model.widths: unknown key"):
        load_config(config(arch="torchvision.resnet18", widths=[4]))


def test_timm_model_builds_sized_to_the_data():
    pytest.importorskip("timm", reason="timm is the optional extra cnnlab[timm]")
    spec = load_config(config(arch="timm.resnet18", small_input=True)).model
    model, _ = build_model(spec, 1, 4, (16, 16), seed=0)
    assert model.conv1.in_channels == 1 and model.conv1.stride == (1, 1)
    assert model.eval()(torch.zeros(2, 1, 16, 16)).shape == (2, 4)


def test_missing_timm_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm" or name.startswith("timm."):
            raise ImportError("No module named 'timm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "timm", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(ConfigError, match=r"pip install 'cnnlab\[timm\]'"):
        load_config(config(arch="timm.resnet18"))


def write_nets(folder) -> None:
    (folder / "nets").mkdir(parents=True, exist_ok=True)
    (folder / "nets" / "my_nets.py").write_text(NETS)


def test_model_file_path_is_relative_to_the_config_file(tmp_path, monkeypatch):
    write_nets(tmp_path / "project")
    path = tmp_path / "project" / "cfg.yaml"
    path.write_text(yaml.safe_dump(config(arch="file", path="nets/my_nets.py",
                                          kwargs={"width": 3})))
    monkeypatch.chdir(tmp_path)  # the config's folder, not this one, is what counts
    spec = load_config(path).model
    assert spec.path == str(tmp_path / "project" / "nets" / "my_nets.py")
    model, _ = build_model(spec, 1, 4, (16, 16), seed=0)
    assert model.conv.out_channels == 3


def test_model_file_hash_recorded_and_resume_refused_after_a_change(tmp_path, capsys):
    write_nets(tmp_path)
    nets = tmp_path / "nets" / "my_nets.py"
    out = tmp_path / "run"
    cnnlab.train(load_config(config(arch="file", path=str(nets))), out=out, progress=False)
    assert f"importing {nets}" in capsys.readouterr().err
    run = RunDir(out)
    recorded = run.read_model_source()
    import hashlib

    before = hashlib.sha256(nets.read_bytes()).hexdigest()
    assert recorded == {"path": str(nets), "sha256": before}
    run.write_summary({**run.read_summary(), "status": "interrupted"})
    nets.write_text(NETS + "\n# edited\n")
    after = hashlib.sha256(nets.read_bytes()).hexdigest()
    with pytest.raises(UserError) as refused:
        cnnlab.resume(out, progress=False)
    assert before in str(refused.value) and after in str(refused.value)


def test_a_worker_refuses_a_study_whose_model_file_changed(tmp_path):
    from cnnlab.experiments.worker import check_model
    from cnnlab.models.user_code import source_record

    write_nets(tmp_path)
    nets = tmp_path / "nets" / "my_nets.py"

    class Study:
        study_name = "s"
        user_attrs = {"model_source": source_record(nets), "config": {"model": {"arch": "file"}}}

    check_model(Study(), None)  # unchanged: accepted
    nets.write_text(NETS + "\n# edited\n")
    with pytest.raises(UserError, match="study s was made with model file .* but the file now"):
        check_model(Study(), None)


@pytest.mark.parametrize("section, message", [
    ({"path": "missing.py"}, "missing.py does not exist"),
    ({"factory": "nope"}, "has no function or class 'nope' .* it defines: Net, broken, build"),
    ({"factory": "broken"}, "broken in .* raised RuntimeError: no such layer size"),
    ({"factory": "not_a_module"}, "returned a str, not an nn.Module"),
    ({"factory": "wrong_classes"}, r"returns shape \(2, 7\) .* the data has 4 classes"),
])
def test_bad_model_files_fail_in_one_sentence(tmp_path, section, message):
    write_nets(tmp_path)
    model = {"arch": "file", "path": str(tmp_path / "nets" / "my_nets.py"), **section}
    if "path" in section:
        model["path"] = str(tmp_path / section["path"])
    with pytest.raises(UserError, match=message) as error:
        build_model(load_config(config(**model)).model, 1, 4, (16, 16), seed=0)
    assert "\n" not in str(error.value)


def test_the_seed_decides_a_foreign_models_own_init():
    spec = load_config(config(arch="torchvision.resnet18")).model

    def weights(seed):
        torch.manual_seed(1234 + seed * 7)  # whatever the global generator holds before
        model, _ = build_model(spec, 1, 4, (16, 16), seed=seed)
        return model.conv1.weight.detach().clone()

    assert torch.equal(weights(0), weights(0))
    assert not torch.equal(weights(0), weights(1))


def test_an_ablation_of_a_model_file_pins_its_hash(tmp_path):
    from cnnlab.models.user_code import file_sha256

    write_nets(tmp_path)
    nets = tmp_path / "nets" / "my_nets.py"
    base = {**config(arch="file", path=str(nets)), "data": {**BASE["data"], "train_subset": 8,
                                                            "val_split": 0.5}}
    study = cnnlab.ablate(base, vary=["model.kwargs.width=2,3"], seeds=1,
                          storage_url=str(tmp_path / "s.journal"), runs_root=str(tmp_path))
    assert study.user_attrs["model_source"] == {"path": str(nets), "sha256": file_sha256(nets)}
    assert {t.user_attrs["status"] for t in study.get_trials(deepcopy=False)} == {"completed"}
    nets.write_text(NETS + "\n# edited\n")
    with pytest.raises(UserError, match="now has sha256"):  # the same study, run again
        cnnlab.ablate(base, vary=["model.kwargs.width=2,3"], seeds=1,
                      storage_url=str(tmp_path / "s.journal"), runs_root=str(tmp_path))


def test_switching_arch_by_override_keeps_only_the_keys_the_new_one_takes():
    from cnnlab.config import to_dict

    # A run's config.yaml writes a foreign model's unset choices as null.
    written = to_dict(load_config(config(arch="torchvision.resnet18", small_input=True)))
    back = load_config(written, ["model.arch=simple_cnn"]).model
    assert back.arch == "simple_cnn" and back.activation.name == "relu"
    there = load_config(config(arch="simple_cnn", widths=[4]),
                        ["model.arch=torchvision.resnet18"])
    assert there.model.arch == "torchvision.resnet18" and there.model.init is None
