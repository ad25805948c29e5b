"""One run on two processes (torchrun, gloo, DistributedDataParallel) on the CPU."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from tests.conftest import cli, write_config


@pytest.fixture
def ddp_config(tmp_path, tiny):
    # Group norm and no dropout: nothing depends on how the global batch is split, so the
    # two-process run must follow the single-process one up to floating-point rounding.
    tiny["model"]["norm"] = "group"
    tiny["data"]["augment"] = {"crop_padding": 2, "flip": True}
    tiny["train"].update(epochs=3, threads=1, checkpoint_every=5)
    tiny["data"]["synthetic"]["train_size"] = 640
    return write_config(tmp_path / "ddp.yaml", tiny)


def close(a: dict, b: dict, atol: float = 1e-5) -> bool:
    return a.keys() == b.keys() and all(
        float((a[k].double() - b[k].double()).abs().max()) <= atol for k in a)


def test_two_processes_match_one_process_and_write_the_run_folder_once(tmp_path, ddp_config):
    cli("train", str(ddp_config), "--out", str(tmp_path / "one"), "--quiet", check=True)
    result = cli("train", str(ddp_config), "--nproc", "2", "--out", str(tmp_path / "two"),
                 check=True)
    assert result.stdout.count("run folder:") == 1  # one process reports
    one = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in two] == [1, 2, 3]
    for a, b in zip(one, two):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)
    assert close(load_file(str(tmp_path / "one" / "model.safetensors")),
                 load_file(str(tmp_path / "two" / "model.safetensors")))
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["processes"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.yaml", "one", "two"]


def test_a_killed_two_process_run_resumes(tmp_path, ddp_config):
    cli("train", str(ddp_config), "--out", str(tmp_path / "one"), "--quiet", check=True)
    out = tmp_path / "two"
    job = subprocess.Popen([sys.executable, "-m", "cnnlab", "train", str(ddp_config), "--nproc",
                            "2", "--out", str(out), "--quiet"], start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not (out / "checkpoints" / "last.pt").exists():
        assert job.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)  # torchrun and both training processes at once
    job.wait()
    assert not (out / "model.safetensors").exists()
    cli("train", "--resume", str(out), "--nproc", "2", "--quiet", check=True)
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"
    assert close(load_file(str(tmp_path / "one" / "model.safetensors")),
                 load_file(str(out / "model.safetensors")))


def test_synchronized_batch_norm_on_cpu_processes_is_a_clear_error(tmp_path, tiny):
    tiny["train"]["sync_bn"] = True
    config = write_config(tmp_path / "sync.yaml", tiny)
    result = cli("train", str(config), "--nproc", "2", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "train.sync_bn needs CUDA GPUs" in result.stderr
    assert "Traceback" not in result.stderr
