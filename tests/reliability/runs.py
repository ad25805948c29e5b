"""Small run folders the reliability tests damage: built once per module, copied per test."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch

from tests.conftest import TINY, write_config


class StopAfter(Exception):
    """Raised by the epoch observer: the run ends like a killed one, mid-way, summary 'running'."""


def tiny_config(folder: Path, optim: dict | None = None, **train) -> Path:
    config = copy.deepcopy(TINY)
    config["train"].update(train)
    config["optim"].update(optim or {})
    return write_config(folder / "tiny.yaml", config)


def interrupted_run(folder: Path, epochs: int = 4, stop_after: int = 3,
                    optim: dict | None = None) -> Path:
    """A run of `epochs` that died while ending epoch `stop_after` (its metrics line written, its
    checkpoint not): last.pt holds epoch stop_after - 1, previous.pt the epoch before."""
    from cnnlab.config import load_config
    from cnnlab.train import train

    cfg = load_config(tiny_config(folder, optim, epochs=epochs))
    out = folder / "run"

    def observe(record: dict) -> bool:
        if record["epoch"] == stop_after:
            raise StopAfter
        return False

    try:
        train(cfg, out=out, progress=False, on_epoch=observe)
    except StopAfter:
        pass
    return out


def copy_run(run: Path, folder: Path) -> Path:
    target = folder / "copy"
    shutil.copytree(run, target)
    return target


def metrics_lines(run: Path) -> list[str]:
    return (run / "metrics.jsonl").read_text().splitlines()


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def checkpoint_position(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["position"]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`cnnlab ARGS` in this process (much faster than a fresh interpreter): exit code, stdout,
    stderr. One test per behaviour still runs the real command in a subprocess."""
    import warnings

    from cnnlab.cli import main

    capsys.readouterr()
    with warnings.catch_warnings():  # main() installs its own warning printer
        warnings.simplefilter("always")
        code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class FullDisk:
    """Stands in for `open` in cnnlab.atomic: after `checkpoints` checkpoint files were written,
    every checkpoint or weights file opened for writing takes `partial` bytes and then fails with
    ENOSPC, as a disk that filled up (the run folder's small files still fit)."""

    def __init__(self, checkpoints: int, partial: int = 100):
        self.checkpoints, self.partial, self.seen = checkpoints, partial, 0

    def __call__(self, path, mode="r", *args, **kwargs):
        import builtins

        handle = builtins.open(path, mode, *args, **kwargs)
        if "w" not in mode or not Path(path).name.endswith((".pt.tmp", ".safetensors.tmp")):
            return handle
        if self.seen < self.checkpoints:
            self.seen += Path(path).name == "last.pt.tmp"
            return handle
        return _FillingFile(handle, self.partial)


class _FillingFile:
    def __init__(self, handle, partial: int):
        self.handle, self.partial = handle, partial

    def write(self, data) -> int:
        import errno

        self.handle.write(bytes(data)[:self.partial])
        self.handle.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()
