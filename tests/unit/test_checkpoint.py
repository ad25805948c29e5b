import torch

from cnnlab.checkpoint import LAST, PREVIOUS, load_latest, save_checkpoint


def test_each_save_keeps_the_previous_checkpoint(tmp_path):
    save_checkpoint({"step": 1, "w": torch.ones(2)}, tmp_path)
    save_checkpoint({"step": 2, "w": torch.zeros(2)}, tmp_path)
    assert (tmp_path / LAST).exists() and (tmp_path / PREVIOUS).exists()
    state, path = load_latest(tmp_path)
    assert state["step"] == 2 and path.name == LAST
    assert torch.load(tmp_path / PREVIOUS, weights_only=True)["step"] == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_a_torn_last_checkpoint_falls_back_to_the_previous_one(tmp_path):
    save_checkpoint({"step": 1}, tmp_path)
    save_checkpoint({"step": 2}, tmp_path)
    (tmp_path / LAST).write_bytes(b"\x80torn")
    state, path = load_latest(tmp_path)
    assert state["step"] == 1 and path.name == PREVIOUS


def test_a_kill_between_the_two_renames_leaves_the_previous_one(tmp_path):
    save_checkpoint({"step": 1}, tmp_path)
    save_checkpoint({"step": 2}, tmp_path)
    (tmp_path / LAST).unlink()  # as if killed after moving last -> previous
    state, _ = load_latest(tmp_path)
    assert state["step"] == 1


class Payload:
    """An arbitrary class: loading it would mean importing and running code."""


def test_checkpoints_never_unpickle_code(tmp_path):
    torch.save({"evil": Payload()}, tmp_path / LAST)
    state, _ = load_latest(tmp_path)
    assert state is None  # weights_only refuses the object; nothing is executed
