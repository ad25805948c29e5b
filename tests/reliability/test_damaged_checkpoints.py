"""Issue 20 items 1 and 9: a resume never silently starts over from damaged checkpoints, and
damaged checkpoints or weight files are named in one sentence, never a traceback."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.conftest import TINY, cli
from tests.reliability.runs import (checkpoint_position, copy_run, interrupted_run,
                                    metrics_lines, run_cli, summary)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    return interrupted_run(tmp_path_factory.mktemp("stopped"))


def test_both_checkpoints_unreadable_refuses_naming_both_and_changes_nothing(tmp_path, stopped):
    run = copy_run(stopped, tmp_path)
    (run / "checkpoints" / "last.pt").write_bytes(b"\x80torn")
    (run / "checkpoints" / "previous.pt").write_bytes(b"")
    before = metrics_lines(run)
    result = cli("train", "--resume", str(run), "--quiet")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.count("\n") == 0
    assert "last.pt" in message and "previous.pt" in message and "cannot resume" in message
    assert metrics_lines(run) == before  # the evidence is not rewritten
    assert summary(run)["status"] == "running"


def test_a_damaged_last_checkpoint_warns_and_is_kept_aside(tmp_path, stopped, capsys):
    run = copy_run(stopped, tmp_path)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # torn in the middle of the tensors
    torn = last.read_bytes()
    code, _, err = run_cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 0, err
    assert "warning:" in err and str(last) in err and "previous.pt" in err
    kept = run / "checkpoints" / "last.pt.damaged"
    assert kept.read_bytes() == torn  # still there after the resume's own saves
    assert summary(run)["status"] == "completed"
    assert len(metrics_lines(run)) == 4


def without(path, key: str) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    del state[key]
    torch.save(state, path)


def test_a_checkpoint_without_rng_state_falls_back_then_refuses(tmp_path, stopped, capsys):
    run = copy_run(stopped, tmp_path)
    without(run / "checkpoints" / "last.pt", "rng")
    code, _, err = run_cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 0, err
    assert "missing rng" in err

    run = copy_run(stopped, tmp_path / "both")
    for name in ("last.pt", "previous.pt"):
        without(run / "checkpoints" / name, "rng")
    code, _, err = run_cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 2
    assert err.count("missing rng") == 2


def test_fallback_in_the_library_sets_the_file_aside_and_resumes_one_checkpoint_earlier(
        tmp_path, stopped):
    from cnnlab.checkpoint import load_for_resume

    run = copy_run(stopped, tmp_path)
    (run / "checkpoints" / "last.pt").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="last.pt is damaged"):
        state, path = load_for_resume(run / "checkpoints")
    assert path.name == "previous.pt" and state["position"]["epoch"] == 1
    assert not (run / "checkpoints" / "last.pt").exists()
    assert (run / "checkpoints" / "last.pt.damaged").read_bytes() == b"junk"
    assert checkpoint_position(run / "checkpoints" / "previous.pt")["epoch"] == 1


def eval_error(run, weights: str = "final") -> str:
    result = cli("eval", str(run), "--weights", weights)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


def eval_error_here(capsys, run, weights: str = "final") -> str:
    code, _, err = run_cli(capsys, "eval", run, "--weights", weights)
    assert code == 2, err
    return err.strip()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from cnnlab.config import load_config
    from cnnlab.train import train

    folder = tmp_path_factory.mktemp("finished")
    config = copy.deepcopy(TINY)
    config["train"]["epochs"] = 1
    train(load_config(config), out=folder / "run", progress=False)
    return folder / "run"


def test_eval_of_a_truncated_safetensors_file_names_it(tmp_path, finished):
    run = copy_run(finished, tmp_path)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    message = eval_error(run)
    assert str(weights) in message and "not a readable safetensors file" in message


def test_eval_of_weights_from_another_model_names_the_file_and_the_shapes(tmp_path, finished,
                                                                          capsys):
    from safetensors.torch import load_file, save_file

    run = copy_run(finished, tmp_path)
    weights = run / "checkpoints" / "best.safetensors"
    state = load_file(str(weights))
    first = next(k for k, v in state.items() if v.dim() == 4)
    state[first] = torch.zeros(3, *state[first].shape[1:])
    save_file(state, str(weights))
    message = eval_error_here(capsys, run, "best")
    assert str(weights) in message and first in message and "another shape" in message
