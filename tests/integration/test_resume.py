"""Resume after SIGKILL at different moments gives bit-identical weights on CPU."""

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from cnnlab.sampling import FIRST_STEPS, MIN_SAMPLES, widest_interval
from tests.conftest import cli, same_tensors as same_weights, write_config


def slow_config(tmp_path: Path, tiny: dict) -> Path:
    # Big enough to be killed mid-epoch; checkpoints every few steps as well as at epoch ends.
    # Every stateful or random piece is on: augmentation, dropout, mixing, the weight average
    # and early stopping (with a patience it never reaches, keeping the average as the final
    # model), so resume must restore them all.
    tiny["data"]["synthetic"].update(train_size=1600, noise=0.5)
    tiny["data"]["augment"] = {"crop_padding": 2, "flip": True, "cutout": 3}
    tiny["model"].update(dropout=0.2, dropout2d=0.1)
    tiny["train"].update(epochs=3, checkpoint_every=9, mixup=0.2, cutmix=1.0,
                         ema={"decay": 0.9, "warmup_steps": 5},
                         early_stopping={"metric": "val_acc", "mode": "max", "patience": 10,
                                         "restore_best": False})
    tiny["schedule"] = {"name": "cosine", "warmup": {"epochs": 1}}
    tiny["diagnostics"] = {"every": 3}
    return write_config(tmp_path / "slow.yaml", tiny)


def weights(run: Path) -> dict:
    # The final (averaged) weights and the raw ones: both must match.
    averaged = load_file(str(run / "model.safetensors"))
    raw = load_file(str(run / "model_raw.safetensors"))
    return {**{f"ema.{k}": v for k, v in averaged.items()}, **raw}


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"training ended before {path} appeared")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.005)


def start(config: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cnnlab", "train", str(config), "--out",
                             str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    from tests.conftest import TINY
    import copy

    config = slow_config(tmp, copy.deepcopy(TINY))
    cli("train", str(config), "--out", str(tmp / "ref"), "--quiet", check=True)
    return config, weights(tmp / "ref"), json.loads((tmp / "ref" / "summary.json").read_text())


# Where to kill: as soon as the run folder has its config (before any checkpoint), right after
# the first mid-epoch checkpoint, and after the first epoch's metrics line.
MOMENTS = {"before_first_checkpoint": ("config.yaml", 0.0),
           "after_first_checkpoint": ("checkpoints/last.pt", 0.0),
           "after_first_epoch": ("checkpoints/best.safetensors", 0.05)}


def kill_then_resume(config: Path, out: Path, moment: str) -> subprocess.CompletedProcess:
    """Train into `out`, SIGKILL the run at `moment`, then resume it to the end."""
    process = start(config, out)
    marker, delay = MOMENTS[moment]
    wait_for(out / marker, process)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return cli("train", "--resume", str(out), "--quiet", check=True)


@pytest.mark.parametrize("moment", MOMENTS)
def test_sigkill_then_resume_gives_bit_identical_weights(tmp_path, reference, moment):
    config, expected, expected_summary = reference
    out = tmp_path / "run"
    result = kill_then_resume(config, out, moment)
    assert "run folder" in result.stdout
    assert same_weights(weights(out), expected)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["weights"] == "ema"  # the final weights compared above are the average
    for key in ("best_val_acc", "final_ema_val_acc", "early_stopping_best",
                "early_stopping_best_epoch"):
        assert summary[key] == expected_summary[key], key
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]  # no duplicated or missing epochs
    # Diagnostics samples resume too: the first steps, none twice, never a gap wider than the
    # widest interval. (Which steps is not fixed: the interval follows the cost measured in the
    # run, and sampling only reads the model, so the weights above match all the same.)
    steps = json.loads(cli("diagnose", str(out), "--json", check=True).stdout)["steps"]
    assert steps[:FIRST_STEPS] == list(range(FIRST_STEPS)) and steps == sorted(set(steps))
    widest = widest_interval(expected_summary["steps"])
    assert len(steps) >= MIN_SAMPLES and max(b - a for a, b in zip(steps, steps[1:])) <= widest


def test_sigint_checkpoints_and_resume_finishes_identically(tmp_path, reference):
    config, expected, _ = reference
    out = tmp_path / "run"
    process = start(config, out)
    wait_for(out / "checkpoints" / "last.pt", process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "--resume" in stderr.decode() and "Traceback" not in stderr.decode()
    assert f"resume with: cnnlab train --resume {out}" in stderr.decode()
    assert "error" not in stderr.decode()  # a stop on request is not an error
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    cli("train", "--resume", str(out), "--quiet", check=True)
    assert same_weights(weights(out), expected)


def digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resuming_a_finished_run_says_so_and_changes_nothing(tmp_path, tiny):
    config = write_config(tmp_path / "c.yaml", tiny)
    out = tmp_path / "done"
    cli("train", str(config), "--out", str(out), "--quiet", check=True)
    before = digest(out)
    result = cli("train", "--resume", str(out), check=True)
    assert "already finished" in result.stdout
    assert digest(out) == before


def test_resume_refuses_extra_arguments_and_non_run_folders(tmp_path, tiny):
    result = cli("train", "--resume", str(tmp_path), "-o", "train.epochs=9")
    assert result.returncode == 2 and "give only the run folder" in result.stderr
    result = cli("train", "--resume", str(tmp_path))
    assert result.returncode == 2 and "is not a run folder" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def swa_reference(tmp_path_factory):
    # Weight averaging from the first epoch, its LR annealed in, batch norm to recompute, and
    # early stopping that keeps the average: a resume must restore the average and its count.
    tmp = tmp_path_factory.mktemp("swa-reference")
    from tests.conftest import TINY
    import copy

    tiny = copy.deepcopy(TINY)
    tiny["model"]["norm"] = "batch"
    config = slow_config(tmp, tiny)
    raw = yaml.safe_load(config.read_text())
    raw["train"].pop("ema")
    raw["train"]["swa"] = {"start_epoch": 1, "lr": 0.02, "anneal_epochs": 0.5}
    config = write_config(tmp / "swa.yaml", raw)
    cli("train", str(config), "--out", str(tmp / "ref"), "--quiet", check=True)
    return config, weights(tmp / "ref")


@pytest.mark.parametrize("moment", ["after_first_checkpoint", "after_first_epoch"])
def test_weight_averaging_survives_sigkill_and_resumes_bit_identically(tmp_path, swa_reference,
                                                                        moment):
    config, expected = swa_reference
    out = tmp_path / "run"
    kill_then_resume(config, out, moment)
    assert same_weights(weights(out), expected)
    assert json.loads((out / "summary.json").read_text())["swa_epochs"] == 3


@pytest.fixture(scope="module")
def lookahead_reference(tmp_path_factory):
    # Slow weights synced every 4 steps with airbench's cubic ramp; checkpoints every 9 steps, so
    # a kill lands between syncs, where the slow and the trained weights differ: a resume must
    # restore both. Batch norm, so the averaged running statistics are checked too.
    tmp = tmp_path_factory.mktemp("lookahead-reference")
    from tests.conftest import TINY
    import copy

    tiny = copy.deepcopy(TINY)
    tiny["model"]["norm"] = "batch"
    config = slow_config(tmp, tiny)
    raw = yaml.safe_load(config.read_text())
    raw["train"].pop("ema")
    raw["train"]["lookahead"] = {"every": 4, "decay": 0.6, "ramp": "cubic"}
    # The rest of the airbench recipe's techniques (examples/cifar10_airbench.yaml) on top, so a
    # resume is checked with all of them at once: alternating flips (a function of the epoch and
    # the image), parameter roles with a group frozen after the first epoch, the decoupled
    # convention, dirac init with noise, and the weighted flip + translate TTA.
    raw["data"]["augment"] = {"crop_padding": 2, "crop_mode": "reflect", "flip": "alternate"}
    # lr 20 per 1024 examples is 0.057 for torch at batch 32 and momentum 0.9.
    raw["optim"].update(convention="decoupled", lr=20.0, nesterov=True, groups=[
        {"role": "bias", "freeze": {"after_epoch": 1}}, {"role": "norm_scale", "frozen": True},
        {"role": "norm_shift", "lr_mult": 4.0}])
    raw["model"]["init"] = {"default": "kaiming_normal", "rules": [
        {"match": "conv", "init": {"name": "dirac", "noise": 0.1}}]}
    raw["train"]["tta"] = "flip_translate"
    config = write_config(tmp / "lookahead.yaml", raw)
    cli("train", str(config), "--out", str(tmp / "ref"), "--quiet", check=True)
    return (config, load_file(str(tmp / "ref" / "model.safetensors")),
            json.loads((tmp / "ref" / "summary.json").read_text()))


@pytest.mark.parametrize("moment", ["after_first_checkpoint", "after_first_epoch"])
def test_lookahead_survives_sigkill_and_resumes_bit_identically(tmp_path, lookahead_reference,
                                                                 moment):
    config, expected, expected_summary = lookahead_reference
    out = tmp_path / "run"
    kill_then_resume(config, out, moment)
    assert same_weights(load_file(str(out / "model.safetensors")), expected)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_val_acc"] == expected_summary["best_val_acc"]
    assert summary["final_val_acc"] == expected_summary["final_val_acc"]
