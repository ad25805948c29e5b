"""A run whose validation loss is NaN has diverged, whatever its training losses were: its own
summary says so, the CLI exits as for any divergence, and a study records it as diverged."""

from __future__ import annotations

import math
from importlib import import_module

from cnnlab.config import load_config
from cnnlab.train import train
from cnnlab.cli import main
from tests.conftest import write_config


# `import cnnlab.train as m` would give the function cnnlab.train, not its module.
training = import_module("cnnlab.train")


def nan_validation(monkeypatch) -> None:
    real = training.evaluate

    def evaluate(*args, **kwargs):
        result = dict(real(*args, **kwargs))
        result["loss"] = math.nan
        return result

    monkeypatch.setattr(training, "evaluate", evaluate)


def test_a_nan_validation_loss_makes_the_run_diverged(tmp_path, tiny, monkeypatch):
    nan_validation(monkeypatch)
    tiny["train"]["epochs"] = 1
    summary = train(load_config(tiny), out=tmp_path / "run", progress=False)
    assert summary["status"] == "diverged"
    assert "validation loss" in summary["diverged_reason"]


def test_the_cli_exits_3_for_a_run_whose_validation_loss_is_nan(tmp_path, tiny, monkeypatch,
                                                                  capsys):
    tiny["train"]["epochs"] = 1
    config = write_config(tmp_path / "tiny.yaml", tiny)
    nan_validation(monkeypatch)
    code = main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "Traceback" not in err and "diverged" in err
