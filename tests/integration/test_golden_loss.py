"""A fixed config's training loss at steps 1, 10 and 50, bit for bit: it pins the numerics of the
whole path (data, augmentation, init, forward, loss, backward, optimizer, schedule) through
refactors. A refactor that changes a single bit fails here; one that means to change the numbers
must say so and update the constants.

The constants belong to torch 2.14 on CPU with one thread (this project's environment); another
torch version or BLAS may change the last bits."""

import json

from tests.conftest import cli, write_config

# One batch per epoch (64 training images, batch 64), so each epoch's train_loss in
# metrics.jsonl is exactly the loss of one optimizer step: epoch k's is the loss at step k. A
# power-of-two batch keeps the float64 mean of the float32 loss exact.
GOLDEN = {
    "name": "golden",
    "seed": 7,
    "data": {"dataset": "synthetic", "batch_size": 64, "val_split": 0.2,
             "augment": {"crop_padding": 2, "flip": True},
             "synthetic": {"num_classes": 4, "image_size": 12, "train_size": 80, "test_size": 16,
                           "noise": 0.3}},
    "model": {"arch": "simple_cnn", "widths": [8, 16], "fc": [32]},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "schedule": {"name": "cosine"},
    "train": {"epochs": 50, "threads": 1},
    "diagnostics": {"every": 0},
}

# float.hex() of the loss at optimizer steps 1, 10 and 50 (torch 2.14.1, CPU, 1 thread).
EXPECTED = {1: "0x1.c3d1ac0000000p+0", 10: "0x1.d1e0c00000000p-1", 50: "0x1.51b3740000000p-4"}


def test_the_loss_at_steps_1_10_and_50_is_bit_identical_to_the_recorded_one(tmp_path):
    config = write_config(tmp_path / "golden.yaml", GOLDEN)
    out = tmp_path / "run"
    cli("train", str(config), "--out", str(out), "--quiet", check=True)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 51))  # one step per epoch
    got = {m["step"]: float(m["train_loss"]).hex() for m in metrics if m["step"] in EXPECTED}
    assert got == EXPECTED
