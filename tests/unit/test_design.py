"""The experiment design, without training: how --vary and --baseline are read, which runs an
ablation has (every combination times the same seeds), their labels and folders, and the search
space file (issue 16, item 10)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from cnnlab.errors import ConfigError, UserError
from cnnlab.experiments.ablate import enqueue_missing
from cnnlab.experiments.design import Factor, base_config, choice_text, combinations, \
    folder_name, label, load_space, load_space_dict, overrides, parse_factors, run_dir, \
    split_values, validate_combinations


@pytest.mark.parametrize("text, values", [
    ("relu,gelu", ["relu", "gelu"]),
    (" relu , gelu ,", ["relu", "gelu"]),
    ("{name: normal, std: 0.01},zeros", ["{name: normal, std: 0.01}", "zeros"]),
    ("[8, 16],[16, 32]", ["[8, 16]", "[16, 32]"]),
    ("'a,b',c", ["'a,b'", "c"]),
])
def test_values_split_on_top_level_commas_only(text, values):
    assert split_values(text) == values


def test_the_baseline_is_the_first_value_unless_one_is_chosen():
    factors = parse_factors(["model.activation=relu,gelu", "optim.lr=0.1,0.05"],
                            ["optim.lr=0.05"])
    assert factors == [Factor("model.activation", ("relu", "gelu"), "relu"),
                       Factor("optim.lr", ("0.1", "0.05"), "0.05")]


@pytest.mark.parametrize("vary, baselines, says", [
    (["model.activation=relu"], [], "at least two values"),
    (["=relu,gelu"], [], "needs a key"),
    (["model.activation"], [], "needs a key and at least two values"),
    (["optim.lr=0.1,0.2", "optim.lr=0.3,0.4"], [], "names optim.lr twice"),
    (["optim.lr=0.1,0.1"], [], "repeats a value"),
    (["optim.lr=0.1,0.2"], ["optim.lr=0.3"], "is not among the values varied"),
    (["optim.lr=0.1,0.2"], ["model.activation=relu"], "which no --vary varies"),
    (["optim.lr=0.1,0.2"], ["optim.lr"], "is not KEY=VALUE"),
])
def test_a_bad_vary_or_baseline_is_a_user_error_that_says_what_is_wrong(vary, baselines, says):
    with pytest.raises(UserError, match=says):
        parse_factors(vary, baselines)


def test_combinations_are_every_product_in_order_with_the_first_factor_slowest():
    factors = parse_factors(["a.x=1,2", "b.y=p,q,r"], [])
    combos = combinations(factors)
    assert [label(c) for c in combos] == ["a.x=1,b.y=p", "a.x=1,b.y=q", "a.x=1,b.y=r",
                                          "a.x=2,b.y=p", "a.x=2,b.y=q", "a.x=2,b.y=r"]
    assert overrides(combos[4]) == ["a.x=2", "b.y=q"]


def test_no_factor_is_one_run_labelled_base():
    assert combinations([]) == [{}]
    assert label({}) == "base"


def test_run_folders_are_readable_safe_and_one_per_combination_and_seed():
    assert folder_name("model.init={name: normal, std: 0.01}") == "model.init=_name_normal_std_0.01"
    assert folder_name("///") == "base"
    assert len(folder_name("x" * 500)) == 120
    assert run_dir(Path("runs"), "my study", "optim.lr=0.1", 3) == \
        Path("runs/my_study/optim.lr=0.1/seed3")


def test_every_seed_is_paired_with_every_combination_and_queued_once():
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name="s")
    factors = parse_factors(["optim.lr=0.1,0.05", "model.activation=relu,gelu"], [])
    assert enqueue_missing(study, factors, [7, 8], Path("runs")) == 8
    queued = {(t.user_attrs["label"], t.user_attrs["seed"]) for t in study.get_trials()}
    assert queued == {(label(c), s) for c in combinations(factors) for s in (7, 8)}
    first = study.get_trials()[0]
    assert first.user_attrs["overrides"] == ["optim.lr=0.1", "model.activation=relu", "seed=7"]
    # A comma is no character for a folder name: it becomes "_".
    assert first.user_attrs["run_dir"] == str(Path("runs/s/optim.lr=0.1_model.activation=relu"
                                                   "/seed7"))
    assert enqueue_missing(study, factors, [7, 8], Path("runs")) == 0  # a resume adds nothing


def test_a_crashed_run_is_queued_again_and_a_diverged_one_is_not():
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name="s")
    factors = parse_factors(["optim.lr=0.1,0.05"], [])
    enqueue_missing(study, factors, [0], Path("runs"))
    crashed, diverged = study.ask(), study.ask()  # WAITING trials are asked in queue order
    diverged.set_user_attr("status", "diverged")
    study.tell(crashed, state=optuna.trial.TrialState.FAIL)
    study.tell(diverged, state=optuna.trial.TrialState.FAIL)
    assert enqueue_missing(study, factors, [0], Path("runs")) == 1
    assert study.get_trials()[-1].user_attrs["label"] == "optim.lr=0.1"


def test_every_bad_combination_is_reported_at_once_with_its_label(tiny):
    factors = parse_factors(["model.activation=relu,nope", "optim.name=sgd,nada"], [])
    with pytest.raises(ConfigError) as caught:
        validate_combinations(tiny, factors)
    text = str(caught.value)
    for bad in ("model.activation=relu,optim.name=nada", "model.activation=nope,optim.name=sgd",
                "model.activation=nope,optim.name=nada"):
        assert f"with {bad}:" in text
    assert "with model.activation=relu,optim.name=sgd:" not in text


def test_the_base_config_keeps_the_users_choices_unresolved_with_overrides_applied(tmp_path,
                                                                                  tiny):
    tiny["data"]["root"] = "data"
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny))
    base = base_config(str(config), ["optim.lr=0.02"])
    assert base["optim"] == {"name": "sgd", "lr": 0.02, "momentum": 0.9}  # no defaults filled
    assert base["data"]["root"] == str(tmp_path / "data")  # relative to the config's folder
    with pytest.raises(ConfigError, match="optim.lr"):
        base_config(str(config), ["optim.lr=fast"])


def test_a_space_file_reads_ranges_int_ranges_and_choices(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("optim.lr: {low: 1.0e-3, high: 1.0, log: true}\n"
                     "train.epochs: {low: 1, high: 3, type: int}\n"
                     "model.init: {choices: [kaiming_normal, {name: normal, std: 0.01}]}\n")
    raw = load_space(space)
    entries = load_space_dict(raw)
    assert (entries["optim.lr"].type, entries["optim.lr"].log) == ("float", True)
    assert (entries["train.epochs"].type, entries["train.epochs"].high) == ("int", 3)
    assert [choice_text(c) for c in entries["model.init"].choices] == \
        ["kaiming_normal", "{name: normal, std: 0.01}"]


def test_every_bad_space_entry_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_space_dict({"optim.lr": {"low": 1.0, "high": 0.1},
                         "optim.momentum": {"low": 0.0, "high": 0.9, "log": True},
                         "model.init": {"choices": []}})
    assert [p.split(":")[0] for p in caught.value.problems] == ["--space the search space"] * 3
    assert all(key in str(caught.value) for key in ("optim.lr", "optim.momentum", "model.init"))


def test_a_missing_or_empty_space_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_space(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(UserError, match="must map config keys"):
        load_space(tmp_path / "empty.yaml")


@pytest.mark.parametrize("value, text", [(None, None), (True, True), (3, 3), (0.5, 0.5),
                                         ("relu", "relu"), ([8, 16], "[8, 16]"),
                                         ({"name": "normal"}, "{name: normal}")])
def test_choices_that_optuna_cannot_hold_travel_as_yaml_text(value, text):
    assert choice_text(value) == text
