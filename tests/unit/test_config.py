from pathlib import Path

import pytest
import yaml

from cnnlab.config import apply_override, dump_yaml, load_config, to_dict
from cnnlab.errors import ConfigError, UserError

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_defaults_validate_and_match_the_design_contract():
    cfg = load_config({})
    assert cfg.data.dataset == "digits"
    assert cfg.model.arch == "simple_cnn"
    assert cfg.model.activation.name == "relu"
    assert cfg.model.norm.name == "batch"
    assert cfg.model.init.default.name == "kaiming_normal"
    assert cfg.optim.name == "sgd"
    assert cfg.schedule.name == "cosine"
    assert cfg.diagnostics.every == 50


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_shipped_example_config_validates(path):
    # Examples that need data beside the project still validate: validation never reads data.
    load_config(path)


def test_overrides_parse_values_as_yaml():
    cfg = load_config({}, ["optim.lr=3e-3", "model.activation={name: leaky_relu, negative_slope: 0.2}",
                           "model.init={name: normal, std: 0.01}", "train.epochs=7",
                           "data.augment.flip=true", "model.widths=[4, 8]"])
    assert cfg.optim.lr == pytest.approx(3e-3)
    assert cfg.model.activation.negative_slope == pytest.approx(0.2)
    assert cfg.model.init.default.name == "normal"
    assert cfg.model.init.default.std == pytest.approx(0.01)
    assert cfg.train.epochs == 7
    assert cfg.data.augment.flip is True
    assert cfg.model.widths == [4, 8]


def test_amp_off_means_off_although_yaml_reads_a_bare_off_as_false(tmp_path):
    assert load_config({}, ["train.amp=off"]).train.amp == "off"
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  amp: off\n")
    assert load_config(path).train.amp == "off"
    with pytest.raises(UserError, match="train.amp: received True"):
        load_config({}, ["train.amp=on"])


def test_an_override_can_add_options_to_a_name_given_as_shorthand():
    raw = {"model": {"arch": "simple_cnn", "activation": "leaky_relu", "init": "kaiming_normal"}}
    apply_override(raw, "model.activation.negative_slope=0.3")
    apply_override(raw, "model.init.rules=[{match: classifier, init: zeros}]")
    cfg = load_config(raw)
    assert cfg.model.activation.negative_slope == pytest.approx(0.3)
    assert cfg.model.init.default.name == "kaiming_normal"
    assert cfg.model.init.rules[0].init.name == "zeros"


def test_every_problem_is_reported_at_once_with_its_path_value_and_accepted_values():
    raw = {"data": {"dataset": "digitz", "batch_size": "big", "colour": 1},
           "model": {"arch": "simple_cnn", "depth": 3, "activation": "rellu"},
           "optim": {"name": "adam", "momentum": 0.9},
           "schedule": {"name": "cosin"},
           "train": {"epochs": 0}}
    with pytest.raises(ConfigError) as error:
        load_config(raw)
    problems = error.value.problems
    text = "\n".join(problems)
    assert len(problems) == 8, text
    assert "data.dataset: received 'digitz' (did you mean 'digits'?)" in text
    assert "data.batch_size: received 'big'" in text
    assert "data.colour: unknown key" in text
    assert "model.depth: unknown key; model (with arch simple_cnn) accepts:" in text
    assert "model.activation.name: unknown name 'rellu' (did you mean 'relu'?)" in text
    assert "optim.momentum: unknown key; optim (with name adam) accepts:" in text and "betas" in text
    assert "schedule.name: unknown name 'cosin'" in text and "one_cycle" in text
    assert "train.epochs: received 0" in text


def test_a_dataset_that_needs_files_requires_data_root():
    with pytest.raises(ConfigError, match="data.root is required for dataset npz"):
        load_config({"data": {"dataset": "npz"}})


@pytest.mark.parametrize("override", ["optim.lr", "=3", "a.b={unclosed"])
def test_malformed_overrides_are_user_errors(override):
    with pytest.raises(UserError):
        load_config({}, [override])


def test_missing_and_non_mapping_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        load_config(listing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(broken)


def test_the_resolved_config_round_trips_through_yaml():
    cfg = load_config({}, ["model.activation=gelu", "schedule={name: one_cycle, pct_start: 0.2}"])
    text = dump_yaml(cfg)
    again = load_config(yaml.safe_load(text))
    assert to_dict(again) == to_dict(cfg)
    # The name of each component comes first, so the YAML reads naturally.
    assert list(to_dict(cfg)["schedule"])[0] == "name"
    assert list(to_dict(cfg)["model"])[0] == "arch"


def test_relative_paths_in_a_config_file_are_relative_to_that_file(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    path = folder / "own.yaml"
    path.write_text("data: {dataset: imagefolder, root: ../images, cache_dir: cache}\n")
    monkeypatch.chdir(tmp_path)  # anywhere but the config's folder
    cfg = load_config(path)
    assert cfg.data.root == str(tmp_path / "project" / "images")
    assert cfg.data.cache_dir == str(folder / "cache")
    # The resolved config (what a run folder stores) holds the absolute path.
    assert yaml.safe_load(dump_yaml(cfg))["data"]["root"] == str(tmp_path / "project" / "images")


def test_relative_paths_given_on_the_command_line_are_relative_to_the_current_folder(
        tmp_path, monkeypatch):
    path = tmp_path / "configs" / "own.yaml"
    path.parent.mkdir()
    path.write_text("data: {dataset: imagefolder, root: ../images}\n")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    cfg = load_config(path, ["data.root=mine"])
    assert cfg.data.root == str(tmp_path / "work" / "mine")
    assert load_config({"data": {"dataset": "npz", "root": "x.npz"}}).data.root == \
        str(tmp_path / "work" / "x.npz")
    assert load_config({"data": {"dataset": "npz", "root": "/abs/x.npz"}}).data.root == \
        "/abs/x.npz"
