"""TrainState: a component registered once travels through one save and one restore, under
the checkpoint keys of format 1."""

import pytest
import torch
from torch import nn

from cnnlab.errors import UserError
from cnnlab.train_state import (CHECKPOINT_FORMAT, GlobalRng, LoadsWith, Position, TrainState,
                                zero_sums)
from tests.conftest import same_tensors


class Counter:
    """A stateful component of the smallest kind: what a new one has to provide."""

    def __init__(self):
        self.count = 0

    def state_dict(self) -> dict:
        return {"count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.count = state["count"]


class NeedsFolder(Counter):
    def load_state_dict(self, state: dict, folder) -> None:
        self.count, self.folder = state["count"], folder


def registered(model, counter, needs_folder, position) -> TrainState:
    state = TrainState(config={"name": "tiny"})
    state.register("model", model)
    state.register("absent", None)
    state.register("counter", counter)
    state.register("needs_folder", LoadsWith(needs_folder, "the run folder"))
    state.register("position", LoadsWith(position, torch.device("cpu")))
    state.register("rng", GlobalRng())
    return state


def test_every_registered_component_round_trips_through_save_and_restore(tmp_path):
    torch.manual_seed(0)
    model, counter, needs_folder = nn.Linear(3, 2), Counter(), NeedsFolder()
    counter.count, needs_folder.count = 7, 3
    position = Position(epoch=2, micro=1, step=9, sums=zero_sums("cpu"))
    position.sums["count"] += 5
    path = registered(model, counter, needs_folder, position).save(tmp_path)
    expected_draw = torch.rand(4)

    torch.manual_seed(1)
    fresh = (nn.Linear(3, 2), Counter(), NeedsFolder(), Position())
    checkpoint = torch.load(path, weights_only=True)
    registered(*fresh).restore(checkpoint, path)
    model_2, counter_2, needs_folder_2, position_2 = fresh
    assert same_tensors(model_2.state_dict(), model.state_dict())
    assert counter_2.count == 7 and needs_folder_2.count == 3
    assert needs_folder_2.folder == "the run folder"
    assert (position_2.epoch, position_2.micro, position_2.step) == (2, 1, 9)
    assert int(position_2.sums["count"]) == 5
    assert torch.equal(torch.rand(4), expected_draw)  # the RNG continues where it was saved
    assert list(checkpoint) == ["format", "model", "absent", "counter", "needs_folder",
                                "position", "rng", "config"]
    assert checkpoint["format"] == CHECKPOINT_FORMAT and checkpoint["absent"] is None
    assert checkpoint["config"] == {"name": "tiny"}


def test_a_checkpoint_of_another_format_is_refused_before_anything_is_loaded(tmp_path):
    counter = Counter()
    state = TrainState(config={})
    state.register("counter", counter)
    with pytest.raises(UserError, match="format 2"):
        state.restore({"format": 2, "counter": {"count": 5}}, tmp_path / "last.pt")
    assert counter.count == 0


def test_a_position_from_an_older_checkpoint_keeps_the_defaults_of_what_it_lacks():
    position = Position()
    position.load_state_dict({"epoch": 1, "micro": 0, "step": 4, "history": [], "best": {},
                              "elapsed": 2.0, "sums": zero_sums("cpu"), "order": None,
                              "stopped_early": None, "pruned": False}, torch.device("cpu"))
    assert position.step == 4 and position.resume_changes == []


def test_a_run_s_checkpoint_keeps_the_keys_of_format_1(tmp_path, tiny):
    import cnnlab

    tiny["train"]["epochs"] = 1
    tiny["data"]["synthetic"].update(train_size=64, test_size=16)
    cnnlab.train(cnnlab.load_config(tiny, ["train.ema={decay: 0.9}"]), out=tmp_path / "run",
                 progress=False)
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert list(checkpoint) == ["format", "model", "optimizer", "schedule", "scaler", "ema", "swa",
                                "early_stopping", "diagnostics", "position", "rng", "config"]
    assert checkpoint["ema"]["updates"] > 0
    assert checkpoint["scaler"] is None and checkpoint["swa"] is None
    assert checkpoint["early_stopping"] is None
    assert checkpoint["position"]["epoch"] == 1 and checkpoint["config"]["name"] == tiny["name"]
