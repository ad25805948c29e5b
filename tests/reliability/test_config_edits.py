"""Issue 20 item 6: a config.yaml edited between a checkpoint and its resume is detected."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.reliability.runs import copy_run, interrupted_run, run_cli, summary


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    return interrupted_run(tmp_path_factory.mktemp("stopped"))


def edit(run, key: str, value) -> None:
    config = yaml.safe_load((run / "config.yaml").read_text())
    section, name = key.split(".")
    config[section][name] = value
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def test_the_run_folder_records_the_resolved_config_hash(stopped):
    from cnnlab.config import load_config, to_dict
    from cnnlab.rundir import config_hash

    recorded = (stopped / "config.sha256").read_text().strip()
    assert recorded == config_hash(to_dict(load_config(stopped / "config.yaml")))


def test_a_changed_learning_rate_is_refused_with_old_and_new_values(tmp_path, stopped, capsys):
    run = copy_run(stopped, tmp_path)
    edit(run, "optim.lr", 0.5)
    code, _, err = run_cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 2, err
    assert "optim.lr 0.05 -> 0.5" in err and "--force" in err
    assert summary(run)["status"] == "running"  # nothing ran


def test_force_accepts_a_changed_learning_rate_and_records_it(tmp_path, stopped, capsys):
    run = copy_run(stopped, tmp_path)
    edit(run, "optim.lr", 0.5)
    edit(run, "train.epochs", 5)
    code, _, err = run_cli(capsys, "train", "--resume", run, "--quiet", "--force")
    assert code == 0, err
    assert "optim.lr 0.05 -> 0.5" in err  # warned, not silent
    result = summary(run)
    assert result["status"] == "completed" and result["epochs_completed"] == 5
    changes = {c["key"]: c for c in result["resume_changes"]}
    assert changes["optim.lr"]["old"] == 0.05 and changes["optim.lr"]["new"] == 0.5
    assert changes["train.epochs"]["step"] == result["steps"] // 5 * 2  # after epoch 2
    lrs = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(lrs[2:]) > 0.05  # the new learning rate was used


def test_a_changed_architecture_is_refused_even_with_force(tmp_path, stopped, capsys):
    run = copy_run(stopped, tmp_path)
    edit(run, "model.widths", [4, 16])
    edit(run, "optim.lr", 0.5)
    code, _, err = run_cli(capsys, "train", "--resume", run, "--quiet", "--force")
    assert code == 2, err
    assert "model.widths [8, 16] -> [4, 16]" in err and "start a new run" in err
    assert "optim.lr" in err  # the forceable one is named as such


def test_force_without_resume_is_refused(tmp_path, capsys):
    from tests.reliability.runs import tiny_config

    code, _, err = run_cli(capsys, "train", tiny_config(tmp_path), "--force")
    assert code == 2 and "--resume" in err



@pytest.fixture(scope="module")
def decayed(tmp_path_factory):
    return interrupted_run(tmp_path_factory.mktemp("decayed"), optim={"weight_decay": 0.001})


@pytest.mark.parametrize("key, group_key, old, new", [
    ("optim.weight_decay", "weight_decay", 0.001, 0.1), ("optim.momentum", "momentum", 0.9, 0.5)])
def test_force_gives_the_optimizer_a_changed_weight_decay_or_momentum(tmp_path, decayed, capsys,
                                                                     key, group_key, old, new):
    """torch's Optimizer.load_state_dict restores the saved groups' settings: without care, the
    checkpoint's old value would silently stay in force after the resume said it changed."""
    import torch

    from cnnlab.rundir import RunDir

    run = copy_run(decayed, tmp_path)
    edit(run, key, new)
    code, _, err = run_cli(capsys, "train", "--resume", run, "--quiet", "--force")
    assert code == 0, err
    assert f"{key} {old!r} -> {new!r}" in err
    saved = torch.load(RunDir.at(run).last_checkpoint, map_location="cpu", weights_only=True)
    groups = saved["optimizer"]["param_groups"]
    # Biases and norms keep their own no-decay group; the weights' group takes the new value.
    changed = [g for g in groups if g[group_key] != 0.0]
    assert changed and all(group[group_key] == new for group in changed)


def test_force_refuses_a_weight_decay_that_regroups_the_parameters(tmp_path, stopped, capsys):
    run = copy_run(stopped, tmp_path)
    edit(run, "optim.weight_decay", 0.1)
    code, _, err = run_cli(capsys, "train", "--resume", run, "--quiet", "--force")
    assert code == 2, err
    assert "optim.weight_decay 0.0 -> 0.1" in err and "start a new run" in err
    assert "Traceback" not in err and summary(run)["status"] == "running"
