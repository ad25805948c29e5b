"""Issue 20 item 8: a full disk is reported as such, the last checkpoint survives, and the run is
marked interrupted so that it can be resumed."""

from __future__ import annotations

import errno
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.reliability.runs import FullDisk, checkpoint_position, summary, tiny_config

# Run in a fresh interpreter: the files written after the first checkpoint fail as on a full disk.
FULL_DISK_CLI = """
import sys
import cnnlab.atomic
from cnnlab.cli import main
from tests.reliability.runs import FullDisk

cnnlab.atomic.open = FullDisk(checkpoints=1)
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_disk_during_a_checkpoint_says_so_through_the_cli(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-c", FULL_DISK_CLI, "train",
                             str(tiny_config(tmp_path, epochs=3)), "--out", str(out), "--quiet"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 1, result.stderr
    message = result.stderr.strip()
    assert "Traceback" not in message and message.count("\n") == 0
    assert f"the disk holding {out} is full" in message
    assert "last.pt, is intact" in message and "--resume" in message
    assert summary(out)["status"] == "interrupted"
    assert checkpoint_position(out / "checkpoints" / "last.pt")["epoch"] == 1
    assert not list((out / "checkpoints").glob("*.tmp"))  # the partial file is gone


def test_a_full_disk_then_free_space_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from cnnlab.config import load_config
    from cnnlab.errors import DiskFull
    from cnnlab.train import resume, train

    cfg = load_config(tiny_config(tmp_path, epochs=3))
    train(cfg, out=tmp_path / "reference", progress=False)
    import cnnlab.atomic

    # The checkpoint of epoch 1 is written, then the disk is full.
    monkeypatch.setattr(cnnlab.atomic, "open", FullDisk(checkpoints=1), raising=False)
    with pytest.raises(DiskFull, match="last.pt, is intact") as stop:
        train(cfg, out=tmp_path / "run", progress=False)
    assert "while writing" in str(stop.value) and ".tmp" in str(stop.value)
    assert not list((tmp_path / "run").rglob("*.tmp"))  # partial files do not take the space
    assert summary(tmp_path / "run")["status"] == "interrupted"
    monkeypatch.undo()  # space was freed
    resume(tmp_path / "run", progress=False)
    expected = load_file(str(tmp_path / "reference" / "model.safetensors"))
    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all((weights[k] == v).all() for k, v in expected.items())
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_a_full_disk_while_writing_the_summary_is_reported_too(tmp_path, monkeypatch):
    from cnnlab import rundir
    from cnnlab.config import load_config
    from cnnlab.errors import DiskFull
    from cnnlab.train import train

    real = rundir.replace_atomically
    written = []

    def full_on_the_third_summary(path, text):
        written.append(path.name)
        if path.name == "summary.json" and written.count("summary.json") == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, text)

    monkeypatch.setattr(rundir, "replace_atomically", full_on_the_third_summary)
    with pytest.raises(DiskFull, match="is full"):
        train(load_config(tiny_config(tmp_path, epochs=3)), out=tmp_path / "run", progress=False)
    assert summary(tmp_path / "run")["status"] == "interrupted"
