"""Hints for the override mistakes users actually make (issue 15, item 14)."""

import pytest

from cnnlab.config import load_config
from cnnlab.errors import UserError, did_you_mean


def problems(*overrides: str) -> str:
    with pytest.raises(UserError) as caught:
        load_config(None, list(overrides))
    return str(caught.value)


def test_a_doubled_equals_sign_is_pointed_out():
    message = problems("optim.lr==1")
    assert "'=1'" in message
    assert "optim.lr=1" in message and "one '='" in message


def test_a_nested_key_given_at_the_top_level_suggests_its_full_path():
    message = problems("lr=0.1")
    assert "did you mean 'optim.lr'" in message


def test_a_name_in_the_wrong_case_suggests_the_same_name_not_a_lookalike():
    message = problems("model.activation=Relu")
    assert "did you mean 'relu'?" in message
    assert "'elu'" not in message.split("accepted")[0]


def test_did_you_mean_prefers_a_case_insensitive_match():
    assert did_you_mean("Relu", ["sigmoid", "relu", "elu"]) == " (did you mean 'relu'?)"
    assert did_you_mean("relux", ["relu", "elu"]) == " (did you mean 'relu'?)"
    assert did_you_mean("zzz", ["relu", "elu"]) == ""


def test_nproc_zero_is_refused_with_exit_2(capsys):
    from cnnlab.cli import main

    assert main(["train", "examples/quickstart.yaml", "--nproc", "0"]) == 2
    assert "--nproc must be at least 1, received 0" in capsys.readouterr().err
