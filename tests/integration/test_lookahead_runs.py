"""train.lookahead in real (tiny) runs: a no-op setting is bit-identical to no lookahead, the
slow weights travel in the checkpoint and are the final weights, and a digits run learns."""

import torch
from safetensors.torch import load_file

import cnnlab
from tests.conftest import same_tensors as same


def run(tmp_path, config, name, overrides=()):
    cfg = cnnlab.load_config(config, list(overrides))
    summary = cnnlab.train(cfg, out=tmp_path / name, progress=False)
    return summary, tmp_path / name


def final(out):
    return load_file(str(out / "model.safetensors"))


def test_every_one_with_decay_zero_is_bit_identical_to_no_lookahead(tmp_path, tiny):
    tiny["model"]["norm"] = "batch"  # float buffers take part in the sync too
    _, plain = run(tmp_path, tiny, "plain")
    _, noop = run(tmp_path, tiny, "noop", ["train.lookahead={every: 1, decay: 0.0}"])
    assert same(final(plain), final(noop))
    _, on = run(tmp_path, tiny, "on", ["train.lookahead={every: 2, decay: 0.5}"])
    assert not same(final(plain), final(on))


def test_the_checkpoint_holds_the_slow_weights_and_the_run_ends_on_them(tmp_path, tiny):
    # 2 epochs of 8 steps, every 3: the last sync is at step 15, so step 16's progress is
    # replaced by the slow weights at the end.
    tiny["data"]["synthetic"].update(train_size=320)
    summary, out = run(tmp_path, tiny, "la", ["train.lookahead={every: 3, decay: 0.7}"])
    assert summary["steps"] % 3 != 0
    checkpoint = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert list(checkpoint)[:8] == ["format", "model", "optimizer", "schedule", "scaler", "ema",
                                    "swa", "lookahead"]
    slow = checkpoint["lookahead"]["slow"]
    weights = final(out)
    assert same({k: v for k, v in weights.items() if k in slow}, slow)
    assert set(weights) - set(slow) == {k for k in weights if "num_batches_tracked" in k}
    assert same({k: v for k, v in checkpoint["model"].items() if k in slow}, slow)


def test_a_digits_run_with_lookahead_learns(tmp_path):
    config = {"name": "digits-la", "seed": 0,
              "data": {"dataset": "digits", "batch_size": 64},
              "model": {"arch": "simple_cnn", "widths": [8, 16], "fc": [32]},
              "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
              "schedule": "cosine",
              "train": {"epochs": 2, "threads": 1,
                        "lookahead": {"every": 5, "decay": 0.774, "ramp": "cubic"}},
              "diagnostics": {"every": 0}}
    summary, _ = run(tmp_path, config, "digits")
    assert summary["status"] == "completed"
    assert summary["final_val_acc"] > 0.5  # 10 classes: chance is 0.1
